// The demo page: choose and load a model, stream a generation, and draw what the inspector saw —
// attention heatmaps per layer and head, hidden-state norms, and the logit lens.
//
// The model runs in a Web Worker (worker.ts), not on this page's thread: its thread pool waits
// with Atomics.wait, which a page's main thread may not call, and a worker keeps the page
// responsive while a layer runs. serve.ts sends COOP/COEP, so the page is cross-origin isolated
// and the worker can share its wasm memory with the library's helper threads.
import type { FromWorker, Inspection, ModelInfo, ModelSpec, ToWorker } from "./messages.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const send = (m: ToWorker) => worker.postMessage(m);

let info: ModelInfo | null = null;
let promptIds: number[] = [];
let newIds: number[] = [];
let seen: Inspection | null = null;
let layer = 0;
let head = 0;
let position = 0;
let localFiles: Record<string, File> = {};

/** A token as a label: a leading space shown as ␣, a newline as ↵. */
const show = (t: string) => (t === "" ? "∅" : t.replace(/^ /, "␣").replace(/\n/g, "↵"));
const pct = (p: number) => `${p >= 0.001 ? (p * 100).toFixed(1) : (p * 100).toPrecision(2)}%`;
const mb = (n: number) => (n < 1 << 20 ? `${(n / 1024).toFixed(1)} KB` : `${(n / (1 << 20)).toFixed(1)} MB`);

function setBusy(b: boolean): void {
  $<HTMLButtonElement>("load").disabled = b;
  $<HTMLButtonElement>("generate").disabled = b || !info;
  $<HTMLButtonElement>("inspect-all").disabled = b || !info || newIds.length === 0;
  $<HTMLButtonElement>("stop").disabled = !b || !info;
  document.body.dataset.busy = String(b);
}

function status(text: string, error = false): void {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

// ---- 1. Choosing and loading a model ----

function modelSpec(): ModelSpec {
  const source = (document.querySelector("input[name=source]:checked") as HTMLInputElement).value;
  if (source === "url") return { kind: "url", base: $<HTMLInputElement>("url").value.trim() };
  if (source === "files") {
    if (!Object.keys(localFiles).some((path) => path.split("/").pop() === "config.json")) {
      throw new Error("pick a directory (or drop files) with config.json and the weights first");
    }
    return { kind: "files", files: localFiles };
  }
  return { kind: "synthetic", preset: $<HTMLSelectElement>("preset").value, seed: Number($<HTMLInputElement>("seed").value) || 0 };
}

/** Files by their path in the picked or dropped directory; the worker matches them by base name (pickedFiles). */
function useFiles(files: Record<string, File>): void {
  localFiles = files;
  $<HTMLInputElement>("dir").closest("label")!.querySelector<HTMLInputElement>("input[type=radio]")!.checked = true;
  $("drop").textContent = `${Object.keys(localFiles).length} files: ${Object.keys(localFiles).sort().join(", ")}`;
}

/** Picked files (<input webkitdirectory>) by relative path. */
const pickedByPath = (files: Iterable<File>) => Object.fromEntries([...files].map((f) => [f.webkitRelativePath || f.name, f]));

/** Files dropped on the page by path, walking into dropped directories. */
async function droppedFiles(dt: DataTransfer): Promise<Record<string, File>> {
  const out: Record<string, File> = {};
  const walk = async (e: FileSystemEntry): Promise<void> => {
    if (e.isFile) out[e.fullPath.replace(/^\//, "")] = await new Promise<File>((ok, fail) => (e as FileSystemFileEntry).file(ok, fail));
    else if (e.isDirectory) {
      const reader = (e as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
        if (!batch.length) break;
        for (const c of batch) await walk(c);
      }
    }
  };
  // Entries must be taken while the drop event is being dispatched; reading them may come later.
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => !!e);
  for (const e of entries) await walk(e);
  return out;
}

function load(): void {
  let spec: ModelSpec;
  try {
    spec = modelSpec();
  } catch (e) {
    status((e as Error).message, true);
    return;
  }
  info = null;
  $("files").replaceChildren();
  $("model-info").textContent = "";
  delete document.body.dataset.model;
  status("Loading…");
  setBusy(true);
  const threads = $<HTMLSelectElement>("threads").value;
  send({ type: "load", spec, dtype: $<HTMLSelectElement>("dtype").value as "f32", threads: threads ? Number(threads) : undefined });
}

function loaded(i: ModelInfo): void {
  info = i;
  status(`Loaded ${i.label}.`);
  const heads =
    i.kvHeads < i.heads
      ? `${i.heads} query heads over ${i.kvHeads} key/value head${i.kvHeads > 1 ? "s" : ""} (grouped-query attention)`
      : `${i.heads} heads`;
  $("model-info").textContent =
    `${i.family}: ${i.layers} layers × ${heads}, hidden size ${i.hidden}, vocabulary ${i.vocab}, ` +
    `context ${i.maxPositions} · ${i.tokenizer} · ${i.dtype} weights, ${i.build} build, ${i.threads} thread${i.threads > 1 ? "s" : ""} · ` +
    `wasm memory ${mb(i.memoryBytes)} · loaded in ${(i.loadMs / 1000).toFixed(1)} s` +
    (crossOriginIsolated ? "" : " · not cross-origin isolated: one thread only");
  $("hidden-size").textContent = String(i.hidden);
  // The tiny test models' vocabularies (512) are smaller than the tokenizer's: prompt them with ids.
  $<HTMLInputElement>("ids").placeholder =
    i.vocab > 31414 ? "2,31414,232 (overrides the text)" : `ids below ${i.vocab} (overrides the text)`;
  const group = i.heads / i.kvHeads;
  $("gqa-note").hidden = group === 1;
  $("gqa-h").textContent = String(i.heads);
  $("gqa-kv").textContent = String(i.kvHeads);
  $("gqa-g").textContent = $("gqa-g2").textContent = String(group);
  $("layer").replaceChildren(...Array.from({ length: i.layers }, (_, l) => new Option(`layer ${l}`, String(l))));
  document.body.dataset.model = "loaded";
}

// ---- 2. Generating ----

function parseIds(s: string): number[] {
  const ids = s
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (!ids.every((n) => Number.isInteger(n) && n >= 0)) throw new Error(`token ids must be non-negative integers: ${s}`);
  return ids;
}

function generate(): void {
  let prompt: string | number[];
  try {
    const ids = $<HTMLInputElement>("ids").value.trim();
    prompt = ids ? parseIds(ids) : $<HTMLTextAreaElement>("prompt").value;
  } catch (e) {
    status((e as Error).message, true);
    return;
  }
  newIds = [];
  $("output").replaceChildren();
  delete $("output").dataset.ids;
  $("speed").textContent = "";
  document.body.dataset.state = "generating";
  setBusy(true);
  const maxNewTokens = Math.max(0, Math.floor(Number($<HTMLInputElement>("max-new").value) || 0));
  send({ type: "generate", prompt, maxNewTokens, ignoreEos: $<HTMLInputElement>("ignore-eos").checked, inspect: true });
}

function appendOutput(cls: string, text: string): void {
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  $("output").append(span);
}

// ---- Messages from the model's worker ----

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case "progress": {
      const p = $<HTMLProgressElement>("progress");
      p.max = m.total || 1;
      p.value = m.done;
      const of = m.total ? ` / ${mb(m.total)}` : "";
      status(
        m.phase === "download"
          ? `${m.cached ? "Reading from cache" : "Downloading"} ${m.file}: ${mb(m.done)}${of}`
          : `Copying weights into wasm memory: ${Math.round((100 * m.done) / (m.total || 1))}%`,
      );
      break;
    }
    case "file": {
      const li = document.createElement("li");
      li.textContent = `${m.file} — ${mb(m.bytes)} ${m.cached ? "(from the browser's cache)" : ""}`;
      li.dataset.file = m.file;
      li.dataset.cached = String(m.cached);
      $("files").append(li);
      break;
    }
    case "loaded":
      loaded(m.info);
      setBusy(false);
      if (new URLSearchParams(location.search).get("run") === "1") generate();
      break;
    case "prompt":
      promptIds = m.ids;
      appendOutput("prompt", m.tokens.join(""));
      $("output").dataset.promptIds = m.ids.join(",");
      break;
    case "token":
      if (m.id >= 0) newIds.push(m.id);
      appendOutput("gen", m.text);
      $("speed").textContent = `${m.n} tokens · ${m.tokensPerSecond.toFixed(1)} tokens/s`;
      break;
    case "done":
      newIds = m.newTokens;
      $("output").dataset.ids = m.newTokens.join(",");
      $("speed").textContent =
        `${m.newTokens.length} tokens · ${m.tokensPerSecond.toFixed(1)} tokens/s ` +
        (m.prefillMs ? `(prompt ${m.prefillMs.toFixed(0)} ms) ` : "") +
        `· stopped by: ${m.finishReason}`;
      document.body.dataset.state = "done";
      setBusy(false);
      break;
    case "inspection":
      seen = m.inspection;
      layer = Math.min(layer, seen.attentions.length - 1);
      head = Math.min(head, (info?.heads ?? 1) - 1);
      position = seen.ids.length - 1;
      $("inspect-status").textContent = `(Inspected ${seen.ids.length} tokens in ${m.inspection.ms.toFixed(0)} ms.)`;
      drawInspection();
      document.body.dataset.inspected = String(seen.ids.length);
      break;
    case "error":
      status(m.message, true);
      document.body.dataset.error = m.message;
      if (document.body.dataset.state === "generating") document.body.dataset.state = "error";
      setBusy(false);
      break;
  }
};
worker.onerror = (e) => {
  status(`worker failed: ${e.message}`, true);
  document.body.dataset.error = e.message;
  setBusy(false);
};

// ---- 3. Drawing the inspection ----

// White → dark blue: ink shows where attention goes.
const RAMP = [
  [255, 255, 255],
  [198, 219, 239],
  [107, 174, 214],
  [33, 113, 181],
  [8, 48, 107],
];
function ramp(w: number): string {
  const x = Math.max(0, Math.min(1, w)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const c = RAMP[i].map((v, j) => Math.round(v + (RAMP[i + 1][j] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
const MASKED = "#e6e8ee";

/** One head's (T, T) pattern; with labels, the tokens along both axes. */
function drawHeatmap(
  canvas: HTMLCanvasElement,
  att: Float32Array,
  h: number,
  T: number,
  tokens: string[] | null,
): { left: number; top: number; cell: number } {
  const ctx = canvas.getContext("2d")!;
  const cell = tokens ? Math.max(4, Math.min(28, Math.floor(520 / T))) : 1;
  ctx.font = "11px ui-monospace, monospace";
  const labelW = tokens ? Math.min(110, Math.max(...tokens.map((t) => ctx.measureText(show(t)).width)) + 8) : 0;
  const left = labelW,
    top = tokens ? Math.round(labelW * 0.87) + 6 : 0;
  canvas.width = left + T * cell;
  canvas.height = top + T * cell;
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const off = h * T * T;
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      ctx.fillStyle = k > q ? MASKED : ramp(att[off + q * T + k]);
      ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
    }
  }
  if (tokens && cell >= 8) {
    ctx.font = "11px ui-monospace, monospace";
    ctx.fillStyle = "#1d2433";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    tokens.forEach((t, i) => ctx.fillText(show(t), left - 4, top + i * cell + cell / 2, labelW - 6));
    ctx.textAlign = "left";
    tokens.forEach((t, i) => {
      ctx.save();
      ctx.translate(left + i * cell + cell / 2, top - 4);
      ctx.rotate(-Math.PI / 3);
      ctx.fillText(show(t), 0, 0, labelW - 6);
      ctx.restore();
    });
  }
  // Where the grid is, for hover lookups (and for the demo's test, which reads the cells' pixels).
  Object.assign(canvas.dataset, { left, top, cell, tokens: T });
  return { left, top, cell };
}

let heatmapGeometry = { left: 0, top: 0, cell: 1 };

/**
 * A query head's name. With grouped-query attention (kvHeads < heads) it also names the key/value
 * head it reads: query head h reads kv head h / (heads / kvHeads), as in the kernel and transformers.
 */
function headName(i: ModelInfo, h: number): string {
  const group = i.heads / i.kvHeads;
  if (group === 1) return `head ${h}`;
  const kv = Math.floor(h / group);
  return `head ${h} · kv ${kv}`;
}

function drawAttention(): void {
  if (!seen || !info) return;
  const T = seen.ids.length;
  const att = seen.attentions[layer];
  const group = info.heads / info.kvHeads;
  // The thumbnails stay one flat list in query-head order; with grouped-query attention each key/value
  // head's query heads form a row (kv-first starts it), shaded alternately.
  const figures = Array.from({ length: info.heads }, (_, h) => {
    const fig = document.createElement("figure");
    const c = document.createElement("canvas");
    drawHeatmap(c, att, h, T, null);
    fig.append(c, headName(info!, h));
    fig.classList.toggle("on", h === head);
    if (group > 1) {
      const kv = Math.floor(h / group);
      fig.dataset.kv = String(kv);
      if (kv % 2) fig.dataset.kvOdd = "";
      fig.classList.toggle("kv-first", h % group === 0);
      fig.title = `query head ${h} reads key/value head ${kv}, shared by query heads ${kv * group}–${kv * group + group - 1}`;
    }
    fig.onclick = () => {
      head = h;
      drawAttention();
    };
    return fig;
  });
  $("heads").replaceChildren(...figures);
  heatmapGeometry = drawHeatmap($<HTMLCanvasElement>("heatmap"), att, head, T, seen.tokens);
  $("heatmap-caption").textContent = `layer ${layer}, ${headName(info, head)} — hover a cell to read its weight`;
}

$("heatmap").onmousemove = (e) => {
  if (!seen) return;
  const c = e.currentTarget as HTMLCanvasElement;
  const x = (e.offsetX * c.width) / c.clientWidth,
    y = (e.offsetY * c.height) / c.clientHeight;
  const { left, top, cell } = heatmapGeometry;
  const T = seen.ids.length;
  const q = Math.floor((y - top) / cell),
    k = Math.floor((x - left) / cell);
  if (q < 0 || k < 0 || q >= T || k >= T) return;
  const w = k > q ? "masked (a token cannot see later tokens)" : seen.attentions[layer][head * T * T + q * T + k].toFixed(3);
  $("heatmap-caption").textContent =
    `layer ${layer}, ${info ? headName(info, head) : `head ${head}`}: ${q}:«${show(seen.tokens[q])}» looks at ${k}:«${show(seen.tokens[k])}» with weight ${w}`;
};

function drawNorms(): void {
  if (!seen) return;
  const canvas = $<HTMLCanvasElement>("norms");
  const ctx = canvas.getContext("2d")!;
  const { norms } = seen;
  const points = norms.length,
    T = seen.ids.length;
  const W = canvas.width,
    H = canvas.height,
    left = 48,
    right = 12,
    top = 12,
    bottom = 28;
  const max = Math.max(...norms.flat()) * 1.05 || 1;
  const X = (l: number) => left + (points === 1 ? 0 : (l * (W - left - right)) / (points - 1));
  const Y = (v: number) => top + (1 - v / max) * (H - top - bottom);
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5b6577";
  ctx.strokeStyle = "#d8dde6";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of [0, max / 2, max]) {
    ctx.beginPath();
    ctx.moveTo(left, Y(v));
    ctx.lineTo(W - right, Y(v));
    ctx.stroke();
    ctx.fillText(v.toFixed(v < 10 ? 1 : 0), left - 6, Y(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let l = 0; l < points; l++) ctx.fillText(l === 0 ? "embed" : `${l - 1}`, X(l), H - bottom + 6);
  const line = (values: number[], color: string, width: number) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    values.forEach((v, l) => (l ? ctx.lineTo(X(l), Y(v)) : ctx.moveTo(X(l), Y(v))));
    ctx.stroke();
  };
  for (let t = 0; t < T; t++)
    line(
      norms.map((n) => n[t]),
      "rgba(91,101,119,0.25)",
      1,
    );
  line(
    norms.map((n) => n.reduce((a, b) => a + b, 0) / T),
    "#1d2433",
    2,
  );
  line(
    norms.map((n) => n[position]),
    "#e8590c",
    2.5,
  );
  ctx.lineWidth = 1;
  ctx.textAlign = "left";
  ctx.fillStyle = "#5b6577";
  ctx.fillText("|hidden state| after layer →", left + 6, top);
  ctx.fillStyle = "#e8590c";
  ctx.fillText(`«${show(seen.tokens[position])}» (token ${position})`, left + 6, top + 14);
}

function drawLens(): void {
  if (!seen) return;
  const { tokens, lens, ids } = seen;
  const T = ids.length;
  const table = $<HTMLTableElement>("lens");
  const thead = table.createTHead();
  thead.replaceChildren();
  const hr = thead.insertRow();
  hr.append(Object.assign(document.createElement("th"), { className: "layer", textContent: "input token →" }));
  // The worker reads the lens at the last tokens only (it costs a pass through lm_head each).
  const cols = Array.from({ length: T }, (_, t) => t).filter((t) => lens[0][t]);
  for (const t of cols) {
    const th = document.createElement("th");
    th.textContent = show(tokens[t]);
    th.classList.toggle("sel", t === position);
    th.onclick = () => select(t);
    hr.append(th);
  }
  const body = table.tBodies[0] ?? table.createTBody();
  body.replaceChildren();
  lens.forEach((row, l) => {
    const tr = body.insertRow();
    tr.dataset.layer = String(l - 1);
    tr.append(
      Object.assign(document.createElement("th"), { className: "layer", textContent: l === 0 ? "embeddings" : `after layer ${l - 1}` }),
    );
    for (const t of cols) {
      const td = tr.insertCell();
      const c = row[t]!;
      td.onclick = () => select(t);
      td.classList.toggle("sel", t === position);
      const p = c.probs[0];
      td.textContent = show(c.tokens[0]);
      td.dataset.id = String(c.ids[0]);
      td.title = c.tokens.map((s, j) => `${show(s)} ${pct(c.probs[j])}`).join("\n");
      td.style.background = `rgba(31,95,191,${Math.min(1, p * 1.2).toFixed(3)})`;
      td.style.color = p > 0.45 ? "white" : "";
      td.classList.toggle("hit", t + 1 < T && c.ids[0] === ids[t + 1]);
    }
  });
  const items = lens.map((row, l) => {
    const li = document.createElement("li");
    li.dataset.layer = String(l - 1);
    const c = row[position];
    li.append(
      Object.assign(document.createElement("span"), { className: "name", textContent: l === 0 ? "embeddings" : `after layer ${l - 1}` }),
    );
    for (let j = 0; c && j < c.ids.length; j++) {
      li.append(
        Object.assign(document.createElement("span"), { className: "cand", textContent: `${show(c.tokens[j])} ${pct(c.probs[j])}` }),
      );
    }
    return li;
  });
  $("lens-detail").replaceChildren(...items);
}

function select(t: number): void {
  position = t;
  drawNorms();
  drawLens();
}

function drawInspection(): void {
  $<HTMLSelectElement>("layer").value = String(layer);
  drawAttention();
  drawNorms();
  drawLens();
}

// ---- Wiring ----

$("load").onclick = load;
$("generate").onclick = generate;
$("stop").onclick = () => send({ type: "stop" });
$("inspect-all").onclick = () => send({ type: "inspect", ids: [...promptIds, ...newIds] });
$<HTMLSelectElement>("layer").onchange = (e) => {
  layer = Number((e.target as HTMLSelectElement).value);
  drawAttention();
};
$<HTMLInputElement>("dir").onchange = (e) => useFiles(pickedByPath((e.target as HTMLInputElement).files ?? []));
$<HTMLSelectElement>("preset").onchange = () => {
  (document.querySelector("input[name=source][value=synthetic]") as HTMLInputElement).checked = true;
};
$<HTMLInputElement>("url").oninput = () => {
  (document.querySelector("input[name=source][value=url]") as HTMLInputElement).checked = true;
};
const drop = $("drop");
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
document.addEventListener("dragleave", () => drop.classList.remove("over"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer) void droppedFiles(e.dataTransfer).then(useFiles);
});

// Settings from the address: ?model=/fixtures/opt-tiny&dtype=f32&ids=2,307,215&n=8&ignoreEos=1&run=1
// (or ?model=synthetic&preset=smollm2-135m&dtype=int8)
const q = new URLSearchParams(location.search);
const model = q.get("model");
if (model) {
  const source = model === "synthetic" ? "synthetic" : "url";
  (document.querySelector(`input[name=source][value=${source}]`) as HTMLInputElement).checked = true;
  if (source === "url") $<HTMLInputElement>("url").value = model;
}
for (const [param, id] of [
  ["preset", "preset"],
  ["dtype", "dtype"],
  ["threads", "threads"],
  ["ids", "ids"],
  ["prompt", "prompt"],
  ["n", "max-new"],
  ["seed", "seed"],
]) {
  const v = q.get(param);
  if (v !== null) $<HTMLInputElement>(id).value = v;
}
if (q.get("ignoreEos") === "1") $<HTMLInputElement>("ignore-eos").checked = true;
setBusy(false);
if (q.get("run") === "1") load();
