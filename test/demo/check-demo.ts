// npm run test:demo — the demo page (demo/) in headless Chromium, driven like a user would:
//   1. load the tiny fixture model from a URL in the hub layout (/fixtures/opt-tiny), threads on;
//   2. generate from reference.json's prompt ids: the streamed greedy tokens must be transformers';
//   3. the inspector must have drawn: attention heatmaps (pixels read back from the canvases),
//      the hidden-state norm chart, and a logit-lens row for every layer whose last row is the
//      model's own argmax at every position;
//   4. a second visit reads the model from the Cache API instead of the network (the loader is
//      the library's: loadModelFromUrl, src/web.ts);
//   5. the same model picked as a local directory (webkitdirectory) generates the same tokens;
//   6. the default synthetic OPT-125M (int8) loads and generates in the page;
//   7. the other families' tiny fixtures (/fixtures/llama-tiny: grouped-query attention, 4 query heads
//      over 2 KV heads; /fixtures/gpt2-tiny) from a URL: transformers' 32 greedy tokens, a heatmap per
//      query head labelled with the KV head it reads, the lens's last row = the argmax;
//   8. synthetic SmolLM2-135M (int8, 9 query heads over 3 KV heads) and GPT-2 (int8) load and generate
//      in the page (the picker's presets);
//   9. the demo's TypeScript type-checks (demo/tsconfig.json: DOM for the page, the library's types).
// A screenshot of step 3 is saved to test/demo/out/demo.png. Prints `demo: N passed, M failed`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { bundleDemo, ensureWasm, startDemoServer } from "../../demo/serve.js";
import { CHROMIUM_ARGS } from "../browser/chromium.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURE = join(ROOT, "test", "fixtures", "opt-tiny");
const OUT = join(ROOT, "test", "demo", "out");
interface Reference {
  input_ids: number[];
  argmax: number[];
  generation: { new_tokens: number[] };
  config: { num_hidden_layers?: number; n_layer?: number; num_attention_heads?: number; n_head?: number; num_key_value_heads?: number };
}
const readRef = (name: string) => JSON.parse(readFileSync(join(ROOT, "test", "fixtures", name, "reference.json"), "utf8")) as Reference;
const ref = readRef("opt-tiny");
const L = ref.config.num_hidden_layers!;
const H = ref.config.num_attention_heads!;

/** Files a hub-layout directory may lack (the worker tries them in order and goes on). */
const OPTIONAL = new Set([
  "tokenizer.json",
  "vocab.json",
  "merges.txt",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
]);

let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail = ""): boolean {
  if (ok) passed++;
  else failed++;
  const shown = detail && (!ok || detail.length <= 160) ? ` — ${detail}` : "";
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${shown}`);
  return ok;
}

/** Wait until body[data-<key>] is one of `values` or an error shows; returns which, or "timeout". */
async function waitFor(page: Page, key: string, values: string[], timeout: number): Promise<string> {
  try {
    const h = await page.waitForFunction(
      ([k, vs]) => {
        const d = document.body.dataset;
        if (d.error) return `error: ${d.error}`;
        return vs.includes(d[k] ?? "") ? d[k] : null;
      },
      [key, values] as const,
      { timeout, polling: 100 },
    );
    return (await h.jsonValue()) as string;
  } catch {
    return "timeout";
  }
}

async function loadModel(page: Page, how: () => Promise<void>, timeout = 30_000): Promise<string> {
  await how();
  await page.click("#load");
  return waitFor(page, "model", ["loaded"], timeout);
}

async function generateIds(
  page: Page,
  ids: number[] | null,
  text: string,
  n: number,
  timeout = 60_000,
): Promise<{ state: string; ids: number[] }> {
  await page.fill("#ids", ids ? ids.join(",") : "");
  await page.fill("#prompt", text);
  await page.fill("#max-new", String(n));
  await page.setChecked("#ignore-eos", true);
  await page.evaluate(() => {
    delete document.body.dataset.state;
    delete document.body.dataset.inspected;
  });
  await page.click("#generate");
  const state = await waitFor(page, "state", ["done", "error"], timeout);
  const out = await page.getAttribute("#output", "data-ids");
  return { state, ids: out ? out.split(",").map(Number) : [] };
}

const sameIds = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
const firstDiff = (a: number[], b: number[]) => `got [${a.join(",")}], expected [${b.join(",")}]`;

/**
 * Pixel statistics of a canvas: ink (bluish heatmap cells), orange (the norm chart's highlight),
 * colours, and the corner pixels. (No named functions inside: tsx would wrap them in a helper
 * that does not exist in the page.)
 */
async function canvasStats(page: Page, selector: string) {
  return page.$eval(selector, (c) => {
    const canvas = c as HTMLCanvasElement;
    const d = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    // Only the heatmap's cells count as ink, not its labels (data-left/top: where drawHeatmap put the grid).
    const x0 = Number(canvas.dataset.left ?? 0),
      y0 = Number(canvas.dataset.top ?? 0);
    let blue = 0,
      orange = 0;
    const colours = new Set<number>();
    for (let i = 0; i < d.length; i += 4) {
      const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
      if ((i / 4) % canvas.width < x0 || i / 4 / canvas.width < y0) continue;
      if (b - r > 12) blue++;
      if (r > 200 && g > 60 && g < 120 && b < 60) orange++;
      colours.add((r << 16) | (g << 8) | b);
    }
    const right = (canvas.width - 1) * 4;
    return {
      width: canvas.width,
      height: canvas.height,
      cell: Number(canvas.dataset.cell ?? 1),
      blue,
      orange,
      colours: colours.size,
      topLeft: Array.from(d.slice(0, 3)),
      topRight: Array.from(d.slice(right, right + 3)),
    };
  });
}

/** The heatmap thumbnails: one per query head, labelled with the KV head it reads (kv = h / (H / Hkv)) when Hkv < H, a row per KV head. */
async function checkHeads(page: Page, what: string, heads: number, kvHeads: number): Promise<void> {
  const figs = await page.$$eval("#heads figure", (fs) =>
    fs.map((f) => ({
      text: f.textContent ?? "",
      kv: (f as HTMLElement).dataset.kv ?? null,
      first: f.classList.contains("kv-first"),
    })),
  );
  const group = heads / kvHeads;
  const want = Array.from({ length: heads }, (_, h) => (group > 1 ? `head ${h} · kv ${Math.floor(h / group)}` : `head ${h}`));
  check(
    `${what}: a heatmap for each of the ${heads} query heads, labelled ${group > 1 ? "with its KV head" : "by head"}`,
    figs.length === heads && figs.every((f, h) => f.text === want[h]),
    figs.map((f) => f.text).join(" | "),
  );
  if (group > 1) {
    check(
      `${what}: one row per KV head (${kvHeads} rows of ${group})`,
      figs.filter((f) => f.first).length === kvHeads &&
        figs.every((f, h) => f.kv === String(Math.floor(h / group)) && f.first === (h % group === 0)),
      JSON.stringify(figs.map((f) => [f.kv, f.first])),
    );
    const note = await page.isVisible("#gqa-note");
    check(`${what}: the grouped-query attention note is shown`, note && (await page.textContent("#gqa-g")) === String(group));
    await page.click(`#heads figure:nth-child(${heads})`);
    const caption = (await page.textContent("#heatmap-caption")) ?? "";
    check(`${what}: the big heatmap's caption names the KV head`, caption.includes(want[heads - 1]), caption);
  } else {
    check(`${what}: no grouped-query attention note`, !(await page.isVisible("#gqa-note")));
  }
  for (let h = 0; h < figs.length; h++) {
    const s = await canvasStats(page, `#heads figure:nth-child(${h + 1}) canvas`);
    if (!(s.blue > 0 && sameIds(s.topLeft, [8, 48, 107]) && sameIds(s.topRight, [230, 232, 238]))) {
      check(`${what} head ${h}: first token attends to itself, future masked`, false, JSON.stringify(s));
      return;
    }
  }
  check(`${what}: in every head the first token attends to itself, the future is masked`, true);
}

/** A tiny fixture of another family, from a URL: transformers' tokens, its heads, the lens. */
async function checkFixture(page: Page, name: string): Promise<void> {
  const r = readRef(name);
  const layers = r.config.num_hidden_layers ?? r.config.n_layer!;
  const heads = r.config.num_attention_heads ?? r.config.n_head!;
  const kvHeads = r.config.num_key_value_heads ?? heads;
  await page.reload();
  const state = await loadModel(page, () => page.fill("#url", `/fixtures/${name}`).then(() => page.check("input[name=source][value=url]")));
  check(`loads /fixtures/${name} from a URL`, state === "loaded", state);
  if (state !== "loaded") return;
  const infoText = (await page.textContent("#model-info")) ?? "";
  check(
    `${name}: the info line says how many heads${kvHeads < heads ? " share each KV head" : ""}`,
    infoText.includes(kvHeads < heads ? `${heads} query heads over ${kvHeads} key/value heads` : `${heads} heads`),
    infoText,
  );
  const n = r.generation.new_tokens.length;
  const gen = await generateIds(page, r.input_ids, "", n);
  check(
    `${name}: streams transformers' ${n} greedy tokens`,
    gen.state === "done" && sameIds(gen.ids, r.generation.new_tokens),
    firstDiff(gen.ids, r.generation.new_tokens),
  );
  const inspected = await waitFor(page, "inspected", [String(r.input_ids.length)], 10_000);
  check(`${name}: inspector ran on the prompt`, inspected === String(r.input_ids.length), inspected);
  await checkHeads(page, name, heads, kvHeads);
  const lastRow = await page.$$eval(`#lens tbody tr[data-layer="${layers - 1}"] td`, (tds) =>
    tds.map((td) => Number((td as HTMLElement).dataset.id)),
  );
  check(
    `${name}: the lens after the last layer is the model's argmax at every position`,
    sameIds(lastRow, r.argmax),
    firstDiff(lastRow, r.argmax),
  );
  await page.screenshot({ path: join(OUT, `demo-${name}.png`), fullPage: true });
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(chromiumPath)) {
    check("Chromium is installed", false, `${chromiumPath} is missing: apt-get update && apt-get install -y chromium (or set CHROMIUM)`);
    return;
  }
  const tsc = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(ROOT, "demo", "tsconfig.json")],
    { encoding: "utf8" },
  );
  check(
    "demo type-checks (tsc -p demo/tsconfig.json)",
    tsc.status === 0,
    (tsc.stdout + tsc.stderr).trim().split("\n").slice(0, 5).join(" | "),
  );
  ensureWasm();
  await bundleDemo();
  const server = await startDemoServer({ port: 0 });
  const profile = mkdtempSync(join(tmpdir(), "wasm-lm-demo-"));
  let context: BrowserContext | null = null;
  const problems: string[] = [];
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1200, height: 900 },
      args: CHROMIUM_ARGS,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // A directory in the hub layout may lack optional files (tokenizer.json, an index, …): those
    // 404s are expected (Chromium logs each one to the console); any other failed response is not.
    const failedUrls: string[] = [];
    page.on("response", (r) => {
      if (r.status() >= 400) failedUrls.push(r.url());
    });
    // Requests for the fixture's files (the worker's fetches are reported on the page too).
    const fixtureRequests: string[] = [];
    page.on("request", (r) => {
      if (r.url().includes("/fixtures/opt-tiny/")) fixtureRequests.push(new URL(r.url()).pathname.split("/").pop()!);
    });
    page.on("console", (m) => {
      if (m.type() === "error" && !/Failed to load resource: .*404/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(server.url);
    check("page is cross-origin isolated (COOP/COEP)", await page.evaluate(() => crossOriginIsolated));

    // 1. The tiny fixture from a URL in the hub layout.
    const fromUrl = () => page.fill("#url", "/fixtures/opt-tiny").then(() => page.check("input[name=source][value=url]"));
    const loadedState = await loadModel(page, fromUrl);
    check("loads /fixtures/opt-tiny from a URL", loadedState === "loaded", loadedState);
    const files = await page.$$eval("#files li", (lis) =>
      lis.map((li) => `${(li as HTMLElement).dataset.file}:${(li as HTMLElement).dataset.cached}`),
    );
    check(
      "the first visit fetches model.safetensors from the server",
      fixtureRequests.includes("model.safetensors"),
      fixtureRequests.join(" "),
    );
    check(
      "downloads config.json and model.safetensors, tokenizer from tokenizers/opt/",
      ["config.json:false", "model.safetensors:false", "vocab.json:false", "merges.txt:false"].every((f) => files.includes(f)),
      files.join(" "),
    );
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const infoText = (await page.textContent("#model-info")) ?? "";
    if (cores > 1) check("the worker runs the model on several threads", /\b([2-9]|\d\d+) threads\b/.test(infoText), infoText);

    // 2. Greedy generation from the reference prompt.
    const gen = await generateIds(page, ref.input_ids, "", ref.generation.new_tokens.length);
    check("generation finishes", gen.state === "done", gen.state);
    check(
      `streams transformers' ${ref.generation.new_tokens.length} greedy tokens`,
      sameIds(gen.ids, ref.generation.new_tokens),
      firstDiff(gen.ids, ref.generation.new_tokens),
    );
    const streamed = await page.$$eval("#output span.gen", (s) => s.length);
    check("tokens were streamed one by one", streamed >= ref.generation.new_tokens.length, `${streamed} pieces`);
    const speed = (await page.textContent("#speed")) ?? "";
    check("shows tokens/s", /\d+(\.\d+)? tokens\/s/.test(speed), speed);

    // 3. The inspector.
    const inspected = await waitFor(page, "inspected", [String(ref.input_ids.length)], 10_000);
    check("inspector ran on the prompt", inspected === String(ref.input_ids.length), inspected);
    const big = await canvasStats(page, "#heatmap");
    // Ink on at least a tenth of the cells a token can see (the lower triangle, diagonal included).
    const T = ref.input_ids.length;
    const visible = ((T * (T + 1)) / 2) * big.cell ** 2;
    check(
      "attention heatmap has ink in its cells",
      big.blue > visible / 10 && big.colours > 8,
      `${big.width}×${big.height}, ${big.blue} of ${visible} visible-cell pixels bluish, ${big.colours} colours`,
    );
    const thumbs = await page.$$("#heads canvas");
    check(`a heatmap for each of the ${H} heads`, thumbs.length === H, `${thumbs.length}`);
    for (let h = 0; h < thumbs.length; h++) {
      const s = await canvasStats(page, `#heads figure:nth-child(${h + 1}) canvas`);
      // Row 0 (the first token) can only attend to itself: weight 1, the darkest ink; the future is masked grey.
      check(
        `head ${h}: first token attends to itself, future masked`,
        s.blue > 0 && sameIds(s.topLeft, [8, 48, 107]) && sameIds(s.topRight, [230, 232, 238]),
        JSON.stringify(s),
      );
    }
    await page.selectOption("#layer", String(L - 1));
    check(
      `layer selector switches to layer ${L - 1}`,
      (await page.textContent("#heatmap-caption"))?.startsWith(`layer ${L - 1}, head`) ?? false,
    );
    const norms = await canvasStats(page, "#norms");
    check(
      "hidden-state norm chart drawn",
      norms.orange > 50 && norms.colours > 4,
      `${norms.orange} highlight pixels, ${norms.colours} colours`,
    );
    const lensRows = await page.$$eval("#lens tbody tr", (rows) => rows.map((r) => (r as HTMLElement).dataset.layer));
    const everyLayer = ["-1", ...Array.from({ length: L }, (_, i) => String(i))];
    check("logit lens lists the embeddings and every layer", sameIds(lensRows.map(Number), everyLayer.map(Number)), lensRows.join(","));
    const detail = await page.$$eval("#lens-detail li", (lis) => lis.map((li) => (li as HTMLElement).dataset.layer));
    check("logit-lens detail lists every layer", sameIds(detail.map(Number), everyLayer.map(Number)), detail.join(","));
    const lastRow = await page.$$eval(`#lens tbody tr[data-layer="${L - 1}"] td`, (tds) =>
      tds.map((td) => Number((td as HTMLElement).dataset.id)),
    );
    check(
      "the lens after the last layer is the model's argmax at every position",
      sameIds(lastRow, ref.argmax),
      firstDiff(lastRow, ref.argmax),
    );
    mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: join(OUT, "demo.png"), fullPage: true });

    // 4. A second visit: the Cache API serves the files.
    await page.reload();
    fixtureRequests.length = 0;
    const again = await loadModel(page, fromUrl);
    const cached = await page.$$eval("#files li", (lis) =>
      lis.map((li) => `${(li as HTMLElement).dataset.file}:${(li as HTMLElement).dataset.cached}`),
    );
    check(
      "second visit reads config.json and model.safetensors from the Cache API",
      again === "loaded" && cached.includes("config.json:true") && cached.includes("model.safetensors:true"),
      cached.join(" "),
    );
    const refetched = fixtureRequests.filter((f) => !OPTIONAL.has(f));
    check("the second visit asks the server for none of the model's files", refetched.length === 0, refetched.join(" "));

    // 5. The same model as a local directory.
    await page.reload();
    const local = await loadModel(page, () => page.setInputFiles("#dir", FIXTURE));
    const localFiles = await page.$$eval("#files li", (lis) => lis.map((li) => (li as HTMLElement).dataset.file));
    check(
      "loads a local directory (webkitdirectory)",
      local === "loaded" && localFiles.includes("model.safetensors"),
      `${local}: ${localFiles.join(" ")}`,
    );
    const localGen = await generateIds(page, ref.input_ids, "", 8);
    check(
      "local directory generates the same tokens",
      sameIds(localGen.ids, ref.generation.new_tokens.slice(0, 8)),
      firstDiff(localGen.ids, ref.generation.new_tokens.slice(0, 8)),
    );

    // 6. The default model: synthetic OPT-125M, int8 to keep it light.
    await page.reload();
    const synth = await loadModel(
      page,
      async () => {
        await page.check("input[name=source][value=synthetic]");
        await page.selectOption("#dtype", "int8");
      },
      60_000,
    );
    check("synthetic OPT-125M (int8) loads in the page", synth === "loaded", synth);
    const synthGen = await generateIds(page, null, "The meaning of life is", 4);
    check(
      "synthetic OPT-125M generates",
      synthGen.state === "done" && synthGen.ids.length === 4,
      `${synthGen.state} [${synthGen.ids.join(",")}]`,
    );
    const synthRows = await page.$$eval("#lens tbody tr", (rows) => rows.length);
    check("its logit lens lists 12 layers + embeddings", synthRows === 13, `${synthRows}`);
    await page.screenshot({ path: join(OUT, "demo-synthetic.png"), fullPage: true });

    // 7. The other families' tiny fixtures, from a URL (no tokenizer files: prompted with ids).
    for (const name of ["llama-tiny", "gpt2-tiny"]) await checkFixture(page, name);

    // 8. Synthetic SmolLM2-135M (LLaMA family, grouped-query attention), int8.
    await page.reload();
    const smol = await loadModel(
      page,
      async () => {
        await page.selectOption("#preset", "smollm2-135m");
        check("choosing a preset selects the synthetic source", await page.isChecked("input[name=source][value=synthetic]"));
        await page.selectOption("#dtype", "int8");
      },
      90_000,
    );
    check("synthetic SmolLM2-135M (int8) loads in the page", smol === "loaded", smol);
    const smolInfo = (await page.textContent("#model-info")) ?? "";
    check(
      "its info names the family and the 9 query heads over 3 KV heads",
      /^LLaMA: 30 layers × 9 query heads over 3 key\/value heads/.test(smolInfo),
      smolInfo,
    );
    const smolGen = await generateIds(page, null, "The meaning of life is", 4, 120_000);
    check(
      "synthetic SmolLM2-135M generates",
      smolGen.state === "done" && smolGen.ids.length === 4 && smolGen.ids.every((id) => id < 49152),
      `${smolGen.state} [${smolGen.ids.join(",")}]`,
    );
    await checkHeads(page, "SmolLM2-135M", 9, 3);
    const smolRows = await page.$$eval("#lens tbody tr", (rows) => rows.length);
    check("its logit lens lists 30 layers + embeddings", smolRows === 31, `${smolRows}`);
    await page.screenshot({ path: join(OUT, "demo-smollm2.png"), fullPage: true });

    // 8 (continued). Synthetic GPT-2 (124M), int8: the picker's third family.
    await page.reload();
    const gpt2 = await loadModel(
      page,
      async () => {
        await page.selectOption("#preset", "gpt2");
        await page.selectOption("#dtype", "int8");
      },
      90_000,
    );
    const gpt2Info = (await page.textContent("#model-info")) ?? "";
    check(
      "synthetic GPT-2 (int8) loads in the page",
      gpt2 === "loaded" && gpt2Info.startsWith("GPT-2: 12 layers × 12 heads"),
      `${gpt2}: ${gpt2Info}`,
    );
    const gpt2Gen = await generateIds(page, null, "The meaning of life is", 4, 120_000);
    check("synthetic GPT-2 generates", gpt2Gen.state === "done" && gpt2Gen.ids.length === 4, `${gpt2Gen.state} [${gpt2Gen.ids.join(",")}]`);

    check("no errors in the page or its console", problems.length === 0, problems.slice(0, 5).join(" | "));
    const unexpected = failedUrls.filter((u) => !OPTIONAL.has(new URL(u).pathname.split("/").pop()!));
    check("only optional files of the hub layout were missing", unexpected.length === 0, unexpected.join(" "));
  } catch (e) {
    check("test run", false, (e as Error).stack ?? String(e));
  } finally {
    await context?.close().catch(() => undefined);
    await server.close();
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s; screenshots in test/demo/out/)`);
}

try {
  await main();
} catch (e) {
  check("test run", false, (e as Error).stack ?? String(e));
}
console.log(`demo: ${passed} passed, ${failed} failed`);
process.exitCode = failed || !passed ? 1 : 0;
