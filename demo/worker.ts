/// <reference lib="webworker" />
// The model's thread. The page (main.ts) sends load / generate / inspect / stop; this worker owns
// the DecoderModel and its wasm memory. Running here rather than on the page's main thread is what
// allows threads: the pool waits for its helpers with Atomics.wait, which a page's main thread may
// not call, and the page stays responsive while a layer runs. The helpers themselves are Web
// Workers the library starts on the same shared memory (the page is cross-origin isolated).
import {
  DecoderModel,
  SyntheticSource,
  Tokenizer,
  inspectPrompt,
  loadModelFromUrl,
  openModelFiles,
  openTokenizer,
  pickedFiles,
  streamGenerate,
  syntheticConfig,
  urlFiles,
  type Candidate,
  type FetchProgress,
  type LoadOptions,
  type ModelFiles,
} from "../src/index.js";
import type { FromWorker, Inspection, LensCell, ModelInfo, ToWorker } from "./messages.js";

declare const self: DedicatedWorkerGlobalScope;

const post = (m: FromWorker, transfer: Transferable[] = []) => self.postMessage(m, transfer);

let model: DecoderModel | null = null;
let tokenizer: Tokenizer | null = null;
let generation: AbortController | null = null;

// ---- Reading a model: the library's loader (src/web.ts) fetches, caches and opens the files ----

/** Download progress to the page, and one "file" message per file once it is complete. */
function downloadReporter(): (p: FetchProgress) => void {
  const complete = new Set<string>();
  return (p) => {
    post({ type: "progress", phase: "download", file: p.file, done: p.done, total: p.total, cached: p.cached });
    if (p.done === p.total && !complete.has(p.file)) {
      complete.add(p.file);
      post({ type: "file", file: p.file, bytes: p.done, cached: p.cached });
    }
  };
}

/** Picked files, with a "file" message for each one read. */
function reportingFiles(files: ModelFiles): ModelFiles {
  const read: ModelFiles = async (file) => {
    const bytes = await files(file);
    if (bytes) post({ type: "file", file, bytes: bytes.length, cached: false });
    return bytes;
  };
  // A safetensors checkpoint is read in pieces as it loads (never whole in memory): listed once.
  const listed = new Set<string>();
  const { ranges } = files;
  if (ranges) {
    read.ranges = async (file) => {
      const r = await ranges(file);
      if (r && !listed.has(file)) post({ type: "file", file, bytes: r.size ?? 0, cached: false });
      if (r) listed.add(file);
      return r;
    };
  }
  return read;
}

/** The OPT tokenizer shipped with the package (tokenizers/opt/), served next to the bundle. */
const defaultTokenizer = () =>
  openTokenizer(urlFiles(new URL("../tokenizers/opt/", import.meta.url).href, { onDownload: downloadReporter() }), "tokenizers/opt");

// ---- Commands ----

async function load({ spec, dtype, threads }: Extract<ToWorker, { type: "load" }>): Promise<void> {
  model?.dispose();
  model = null;
  const t0 = performance.now();
  let lastReport = 0;
  const opts: LoadOptions = {
    dtype,
    threads,
    onProgress(done, total) {
      if (done === total || performance.now() - lastReport > 100) {
        lastReport = performance.now();
        post({ type: "progress", phase: "load", file: "weights → wasm memory", done, total });
      }
    },
  };
  let label: string;
  let tok: Tokenizer | null = null;
  if (spec.kind === "synthetic") {
    // Every family's synthetic model reads text through OPT's tokenizer (as the CLI's synthetic: models do).
    label = `synthetic:${spec.preset} (seed ${spec.seed})`;
    const config = syntheticConfig(spec.preset);
    model = await DecoderModel.load(config, new SyntheticSource(config, spec.seed), { ...opts, label });
  } else if (spec.kind === "url") {
    label = spec.base;
    ({ model, tokenizer: tok } = await loadModelFromUrl(spec.base, { ...opts, onDownload: downloadReporter() }));
  } else {
    label = "local files";
    const { config, source, tokenizer: own } = await openModelFiles(reportingFiles(pickedFiles(spec.files)), label);
    tok = own;
    model = await DecoderModel.load(config, source, { ...opts, label });
  }
  // A model directory without tokenizer files (the tiny LLaMA and GPT-2 fixtures, say) gets OPT's
  // too: its labels are then OPT's pieces for those ids, and token ids are the way to prompt it.
  tokenizer = tok ?? (await defaultTokenizer());
  if (!tokenizer) throw new Error("the default tokenizer files (tokenizers/opt/) could not be read");
  const d = model.dims;
  const info: ModelInfo = {
    label,
    family: model.family.title,
    layers: d.L,
    heads: d.H,
    kvHeads: d.Hkv,
    hidden: d.C,
    vocab: d.V,
    maxPositions: d.maxPositions,
    tokenizer: tok
      ? "the model's tokenizer"
      : spec.kind === "synthetic" || d.family === "opt"
        ? "OPT's tokenizer"
        : "OPT's tokenizer, for labels only (the model has none: prompt with token ids)",
    dtype: model.dtype,
    build: model.build,
    threads: model.threads,
    memoryBytes: model.wasm.memory.buffer.byteLength,
    loadMs: performance.now() - t0,
  };
  post({ type: "loaded", info });
}

function ready(): { model: DecoderModel; tokenizer: Tokenizer } {
  if (!model || !tokenizer) throw new Error("load a model first");
  return { model, tokenizer };
}

/** A token as text, for labels. */
const tokenText = (t: Tokenizer, id: number) => (id < t.vocabSize ? t.decode([id]) : `<${id}>`);

async function generateText({ prompt, maxNewTokens, ignoreEos, inspect: look }: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  const { model, tokenizer } = ready();
  const ids = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
  post({ type: "prompt", ids, tokens: ids.map((id) => tokenText(tokenizer, id)) });
  if (look) await postInspection(ids); // before generation: one pass at a time on the model
  generation = new AbortController();
  const newTokens: number[] = [];
  const t0 = performance.now();
  const rate = () => (newTokens.length * 1000) / (performance.now() - t0);
  const it = streamGenerate(model, tokenizer, ids, { maxNewTokens, ignoreEos, signal: generation.signal });
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) {
        const t = r.value.timings;
        post({
          type: "done",
          newTokens,
          finishReason: r.value.finish_reason,
          tokensPerSecond: t.tokens_per_second,
          prefillMs: t.prefill_ms,
        });
        return;
      }
      if (r.value.id >= 0) newTokens.push(r.value.id);
      post({ type: "token", id: r.value.id, text: r.value.text, n: newTokens.length, tokensPerSecond: rate() });
    }
  } catch (e) {
    if (!generation.signal.aborted) throw e;
    post({ type: "done", newTokens, finishReason: "stopped", tokensPerSecond: rate(), prefillMs: 0 });
  } finally {
    generation = null;
  }
}

/** The logit lens is read at the last LENS_POSITIONS tokens only: each costs a pass through lm_head per layer. */
const LENS_POSITIONS = 32;

/**
 * The prompt through the model layer by layer (the library's inspectPrompt): after the embeddings
 * and after each layer every token's hidden-state norm, the logit lens at the last positions, and
 * every head's whole attention pattern for the heatmaps.
 */
async function inspect(ids: number[]): Promise<Inspection> {
  const { model, tokenizer } = ready();
  const t0 = performance.now();
  const r = await inspectPrompt(model, tokenizer, ids, { lensPositions: LENS_POSITIONS, attentions: true, top: 5 });
  const cell = (c: Candidate[] | null): LensCell | null =>
    c && { ids: c.map((x) => x.id), tokens: c.map((x) => x.token), probs: c.map((x) => x.prob) };
  return {
    ids,
    tokens: r.tokens,
    norms: r.layers.map((v) => v.norms),
    lens: r.layers.map((v) => v.lens.map(cell)),
    attentions: r.layers.slice(1).map((v) => v.attention!.slice()),
    ms: performance.now() - t0,
  };
}

async function postInspection(ids: number[]): Promise<void> {
  const inspection = await inspect(ids);
  post(
    { type: "inspection", inspection },
    inspection.attentions.map((a) => a.buffer as ArrayBuffer),
  );
}

// ---- Messages: one command at a time, except "stop", which must reach a running generation ----

let queue: Promise<void> = Promise.resolve();

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "stop") {
    generation?.abort();
    return;
  }
  queue = queue.then(async () => {
    try {
      if (m.type === "load") await load(m);
      else if (m.type === "generate") await generateText(m);
      else if (m.type === "inspect") await postInspection(m.ids);
    } catch (err) {
      post({ type: "error", message: err instanceof Error ? err.message : String(err) });
    }
  });
};
