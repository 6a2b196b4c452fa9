// The library's fetch loader (loadModelFromUrl, src/web.ts) on the test page, with the Cache API.
// run.mjs calls loaderVisit twice, reloading the page in between: the first visit downloads the
// tiny fixture from this server's hub layout (/test/opt-tiny/resolve/main/) with progress events,
// the second must read every file from the cache (run.mjs checks the server saw no such request).
// Both check the logits against transformers' and the directory's tokenizer. streamVisit loads a
// tiny fixture of each family (OPT, LLaMA, GPT-2) with stream: true (the checkpoint read by Range
// requests as the model runs, through Chromium's fetch and its BYOB byte streams) and
// residentEmbeddings: false.
export const LOADER_CACHE = "wasm-lm-browser-test";
const FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"];

export async function loaderVisit(lib, first) {
  const failures = [];
  if (typeof caches === "undefined") return { failures: ["no Cache API on this page (not a secure context?)"], keys: [] };
  if (first) await caches.delete(LOADER_CACHE);
  const events = [];
  const t0 = performance.now();
  const { model, tokenizer } = await lib.loadModelFromUrl("test/opt-tiny", {
    endpoint: location.origin,
    cache: LOADER_CACHE,
    threads: 1,
    onDownload: (p) => events.push(p),
  });
  const ms = performance.now() - t0;
  let logits = Infinity;
  try {
    const ref = await (await fetch("/fixtures/opt-tiny/reference.json")).json();
    const got = model.forward([ref.input_ids]).logits;
    const want = ref.logits.flat();
    logits = got.length === want.length ? Math.max(...want.map((v, i) => Math.abs(got[i] - v))) : Infinity;
    if (!(logits <= 1e-4)) failures.push(`logits max|Δ| ${logits} > 1e-4`);
  } finally {
    model.dispose();
  }
  const ids = tokenizer?.encode("Hello world!") ?? [];
  if (ids.join(",") !== "2,31414,232,328") failures.push(`the directory's tokenizer encodes "Hello world!" as [${ids}]`);
  for (const file of FILES) {
    const mine = events.filter((e) => e.file === file);
    const last = mine.at(-1);
    if (!last) {
      failures.push(`no progress event for ${file}`);
      continue;
    }
    if (last.done === 0 || last.done !== last.total) failures.push(`${file}: last progress event ${last.done}/${last.total}`);
    if (mine.some((e) => e.cached === first)) failures.push(`${file}: progress says cached ${first}, expected ${!first}`);
  }
  const keys = (await (await caches.open(LOADER_CACHE)).keys()).map((r) => new URL(r.url).pathname).sort();
  return { failures, logits, keys, events: events.length, ms };
}

/** One tiny fixture (opt-tiny, llama-tiny, gpt2-tiny) streamed from /test/<name>/resolve/main/. */
export async function streamVisit(lib, name) {
  const failures = [];
  const t0 = performance.now();
  const { model, tokenizer } = await lib.loadModelFromUrl(`test/${name}`, {
    endpoint: location.origin,
    cache: false,
    stream: true,
    residentEmbeddings: false,
    threads: 1,
  });
  const ms = performance.now() - t0;
  let logits = Infinity;
  let tokens = [];
  try {
    const ref = await (await fetch(`/fixtures/${name}/reference.json`)).json();
    const got = (await model.forwardAsync([ref.input_ids])).logits;
    const want = ref.logits.flat();
    logits = got.length === want.length ? Math.max(...want.map((v, i) => Math.abs(got[i] - v))) : Infinity;
    if (!(logits <= 1e-4)) failures.push(`streamed ${name}: logits max|Δ| ${logits} > 1e-4`);
    tokens = (await lib.generate(model, tokenizer ?? undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true })).new_tokens;
    const want8 = ref.generation.new_tokens.slice(0, 8);
    if (tokens.join(",") !== want8.join(",")) failures.push(`streamed ${name}: tokens [${tokens}], transformers [${want8}]`);
    if (!model.streamsLayers || !model.streamsEmbeddings) failures.push(`streamed ${name}: the model holds its weights`);
  } finally {
    model.dispose();
  }
  return { failures, logits, ms };
}
