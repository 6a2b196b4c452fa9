// npm run bench [-- --json] [--dtype f32] [--threads 1] [--build simd] [--no-peer] [--quick] ...
//
// The whole model — OPT-125M, GPT-2 or SmolLM2-135M shaped (`--model`, synthetic seeded weights) —
// against ONNX Runtime Web's WASM backend on the same weights, in one run: time to first token,
// prefill with every row's logits, decode ms/token with the KV cache, and each configuration's
// peak RSS. ORT runs the graphs transformers.js users download: f32, q8 (quantize_dynamic) and q4
// (MatMulNBits), all exported here from the same weights. The machine's memory bandwidth is measured
// too (bench/bandwidth.ts) for the decode roofline. Every configuration runs in its own child process
// (bench/model-worker.ts); this process only schedules, checks and reports. See bench/README.md
// ("Whole model") for how to read the output.
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { modelDims, SYNTHETIC_PRESETS, syntheticConfig } from "../src/models/families/index.js";
import { wasmUrl } from "../src/wasm.js";
import { describeBandwidth, measureBandwidth } from "./bandwidth.js";
import { GRAPH_VARIANTS, GRAPH_WEIGHTS, graphVariants, type GraphVariant } from "./decoder-onnx.js";
import { readLoadOptions } from "./load-options.js";
import {
  type ExitInfo,
  type GraphQuant,
  METRICS,
  type Metric,
  type ParityResult,
  QUANT_PEER,
  type ReadyInfo,
  type Reply,
  type Request,
  type Sample,
  type WorkerSpec,
} from "./model-common.js";
import { type Config, type ParityRow, report, type RunReport } from "./model-report.js";
import { machineInfo, runMain } from "./measure.js";

const WORKER = fileURLToPath(new URL("./model-worker.ts", import.meta.url));
const EXEC_ARGV = ["--experimental-wasm-relaxed-simd", "--expose-gc", "--import", "tsx"];
const DTYPES = ["f32", "f16", "int8", "q4"] as const;
/** The default: f16 is opt-in (no faster than f32 at decode, see README) to keep ~12 GB alive at once. */
const DEFAULT_DTYPES = ["f32", "int8", "q4"];
const EMBED_DTYPES = ["f32", "f16", "int8", "q4"] as const;
const BUILDS = ["simd", "relaxed"] as const;
const GRAPHS = GRAPH_VARIANTS;
const LM_HEADS = ["gemm", "matmul"] as const;
/** Parity: f32 logits must agree with ORT's within this (max |Δ|); other dtypes are reported only. */
const PARITY_ATOL = 1e-3;
/** Teacher-forced decode ids of the parity check (the last one: the vocabulary's last id). */
const parityDecodeIds = (V: number) => [2, 1000, 31414, V - 1];
const MODELS = Object.keys(SYNTHETIC_PRESETS);

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const listOf =
  <T extends string>(allowed: readonly T[]) =>
  (v: string): T[] =>
    v.split(",").map((s) => {
      const hit = allowed.find((a) => a === s.trim().toLowerCase());
      if (!hit) throw new InvalidArgumentError(`'${s}' is not one of ${allowed.join(", ")}`);
      return hit;
    });
const threadList = (v: string) => v.split(",").map((s) => int("--threads", 1)(s.trim()));

const program = new Command("bench")
  .description("a whole model (synthetic weights): wasm-lm vs onnxruntime-web (wasm) — TTFT, prefill, decode, peak RSS")
  .addOption(new Option("--model <preset>", "synthetic model: its shape and family").choices(MODELS).default("opt-125m"))
  .option("--json", "one JSON object per line per measurement on stdout", false)
  .addOption(
    new Option("--dtype <list>", `our weight dtypes (${DTYPES.join(", ")})`)
      .argParser(listOf(DTYPES))
      .default(DEFAULT_DTYPES, DEFAULT_DTYPES.join(",")),
  )
  .addOption(
    new Option(
      "--embed-dtype <dtype>",
      "our token embedding's (= tied lm_head's) dtype (LoadOptions.embedDType; " + "default: the model's own, f16 under int8 and q4)",
    ).choices(EMBED_DTYPES),
  )
  .addOption(new Option("--threads <list>", "thread counts (ours and ORT's)").argParser(threadList).default([1, 2], "1,2"))
  .addOption(new Option("--build <list>", "our builds").argParser(listOf(BUILDS)).default([...BUILDS], "simd,relaxed"))
  .option("--no-peer", "skip onnxruntime-web (no ratios, no parity check)")
  .option("--no-ours", "only onnxruntime-web (e.g. to compare its graph variants)")
  .addOption(
    new Option("--peer-graph <list>", "ORT graph variants (ratios use the fastest per row)")
      .argParser(listOf(GRAPHS))
      .default(undefined, "every variant the family has: standard,fused (+ mixed for rotary models)"),
  )
  .addOption(
    new Option("--peer-lm-head <list>", "ORT f32 lm_head: Gemm on embed_tokens (transB) or MatMul on a transposed copy")
      .argParser(listOf(LM_HEADS))
      .default(["gemm"], "gemm"),
  )
  .addOption(
    new Option(
      "--peer-dtype <list>",
      "ORT graph weights: f32 (every --peer-graph variant), q8 (quantize_dynamic: MatMulInteger) and q4 (MatMulNBits), " +
        "the quantized ones on the standard variant",
    )
      .argParser(listOf(GRAPH_WEIGHTS))
      .default([...GRAPH_WEIGHTS], GRAPH_WEIGHTS.join(",")),
  )
  .option("--q8-per-channel", "ORT q8: one weight scale per output column (quantize_dynamic per_channel) instead of per tensor", false)
  .option("--q4-zero-points", "ORT q4: asymmetric with packed zero points (MatMul4BitsQuantizer is_symmetric=False)", false)
  .option(
    "--q4-accuracy-level <n>",
    "ORT q4: MatMulNBits accuracy_level (default: absent, as transformers.js writes it)",
    int("--q4-accuracy-level", 0),
  )
  .option("--no-bandwidth", "skip the memory bandwidth measurement (and the roofline table)")
  .addOption(new Option("--metrics <list>", "what to time").argParser(listOf(METRICS)).default([...METRICS], "ttft,prefill,decode"))
  .option("--repeats <n>", "samples per configuration for ttft and prefill (default 7)", int("--repeats", 1))
  .option("--decode-repeats <n>", "decode loops per configuration (default 5)", int("--decode-repeats", 1))
  .option("--prompt <n>", "prompt length T", int("--prompt", 2), 128)
  .option("--decode-tokens <n>", "tokens per decode loop (default 64)", int("--decode-tokens", 1))
  .option("--quick", "a smoke run: 3 samples, 1 decode loop of 16 tokens (below the bench's own standard)", false)
  .option(
    "--low-memory",
    "one thread count at a time (~7 GB instead of ~13 GB alive at once; 2t vs 1t then " + "compares different moments)",
    false,
  )
  .option("--onnx-dir <dir>", "write ORT's graphs (.onnx + .onnx.json) here and keep them (default: a temp dir, deleted)")
  .option("--seed <n>", "seed of the weights and the prompt", int("--seed", 0), 1);

interface Opts {
  model: string;
  json: boolean;
  dtype: string[];
  embedDtype?: string;
  threads: number[];
  build: ("simd" | "relaxed")[];
  peer: boolean;
  ours: boolean;
  peerGraph?: string[];
  peerLmHead: string[];
  peerDtype: GraphQuant["weights"][];
  q8PerChannel: boolean;
  q4ZeroPoints: boolean;
  q4AccuracyLevel?: number;
  bandwidth: boolean;
  metrics: Metric[];
  repeats?: number;
  decodeRepeats?: number;
  prompt: number;
  decodeTokens?: number;
  quick: boolean;
  onnxDir?: string;
  lowMemory: boolean;
  seed: number;
}

const log = (s: string) => process.stderr.write(s + "\n");

/** One child process, one request at a time. */
class Worker {
  private child: ChildProcess;
  private pending: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private exited = false;
  ready: Promise<ReadyInfo>;

  constructor(
    readonly name: string,
    spec: WorkerSpec,
    private decodeIds: number[],
  ) {
    this.child = fork(WORKER, [JSON.stringify(spec)], {
      execArgv: EXEC_ARGV,
      serialization: "advanced", // typed arrays (the parity logits) cross as binary
      stdio: ["ignore", 2, 2, "ipc"], // a worker's prints go to our stderr: stdout stays the report
    });
    this.child.on("message", (m: Reply) => {
      const p = this.pending;
      this.pending = null;
      if (!p) return;
      if (m.type === "error") p.reject(new Error(`${this.name}: ${m.message}`));
      else p.resolve(m);
    });
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      const p = this.pending;
      this.pending = null;
      p?.reject(new Error(`${this.name}: worker exited (${signal ?? `code ${code}`})`));
    });
    this.ready = this.next().then((m) => {
      if (m.type !== "ready") throw new Error(`${this.name}: expected ready, got ${m.type}`);
      return m.info;
    });
  }

  private next(): Promise<Reply> {
    if (this.exited) return Promise.reject(new Error(`${this.name}: worker is gone`));
    return new Promise((resolve, reject) => (this.pending = { resolve, reject }));
  }

  async call(req: Request): Promise<Reply> {
    const reply = this.next();
    this.child.send(req);
    return reply;
  }

  async time(metric: Metric, tokens: number): Promise<Sample> {
    const r = await this.call({ cmd: metric, tokens });
    if (r.type !== "result" || !r.sample) throw new Error(`${this.name}: no time for ${metric}`);
    return r.sample;
  }

  async parity(T: number, V: number): Promise<ParityResult> {
    const r = await this.call({ cmd: "parity", decodeIds: this.decodeIds });
    if (r.type !== "result" || !r.parityFile) throw new Error(`${this.name}: no parity result`);
    const bytes = readFileSync(r.parityFile);
    rmSync(r.parityFile, { force: true });
    const f = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const K = this.decodeIds.length;
    if (f.length !== (T + 1 + K) * V) throw new Error(`${this.name}: parity file has ${f.length} floats, expected ${(T + 1 + K) * V}`);
    return {
      all: f.subarray(0, T * V),
      last: f.subarray(T * V, (T + 1) * V),
      decode: Array.from({ length: K }, (_, i) => f.subarray((T + 1 + i) * V, (T + 2 + i) * V)),
    };
  }

  async exit(): Promise<ExitInfo | null> {
    if (this.exited) return null;
    try {
      const r = await this.call({ cmd: "exit" });
      return r.type === "exit" ? r.info : null;
    } catch {
      return null;
    } finally {
      setTimeout(() => this.kill(), 2000).unref();
    }
  }

  /** The child's own pid only (never by name). */
  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

/** Run the exporter in a child: its ~1.5 GB of JS arrays are no configuration's RSS. */
function exportGraph(spec: Extract<WorkerSpec, { kind: "export" }>): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [JSON.stringify(spec)], { execArgv: EXEC_ARGV, serialization: "advanced", stdio: ["ignore", 2, 2, "ipc"] });
    let ok = false;
    child.on("message", (m: Reply) => {
      if (m.type === "exit") ok = true;
      else if (m.type === "error") reject(new Error(`export ${spec.variant}/${spec.lmHead}: ${m.message}`));
    });
    child.on("exit", (code) => (ok ? resolve(performance.now() - t0) : reject(new Error(`export ${spec.variant}: exited with ${code}`))));
  });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

/** Rows (of V logits) whose argmax agrees, over the total. */
function top1(a: Float32Array, b: Float32Array, V: number): [number, number] {
  let same = 0;
  const rows = a.length / V;
  for (let r = 0; r < rows; r++) {
    let ia = 0;
    let ib = 0;
    for (let i = 1; i < V; i++) {
      if (a[r * V + i] > a[r * V + ia]) ia = i;
      if (b[r * V + i] > b[r * V + ib]) ib = i;
    }
    if (ia === ib) same++;
  }
  return [same, rows];
}

/** Σ(a − b)² and Σb², to make ‖a − b‖ / ‖b‖ over several arrays. */
function sq(a: Float32Array, b: Float32Array): [number, number] {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return [d, n];
}

function compareParity(ours: ParityResult, peer: ParityResult, V: number): Omit<ParityRow, "config" | "peer" | "ok" | "checked"> {
  const dec = ours.decode.map((x, i) => maxAbsDiff(x, peer.decode[i]));
  const agree = [
    top1(ours.all, peer.all, V),
    top1(ours.last, peer.last, V),
    ...ours.decode.map((x, i) => top1(x, peer.decode[i], V)),
  ].reduce((a, b) => [a[0] + b[0], a[1] + b[1]]);
  const rms = [sq(ours.all, peer.all), sq(ours.last, peer.last), ...ours.decode.map((x, i) => sq(x, peer.decode[i]))].reduce((a, b) => [
    a[0] + b[0],
    a[1] + b[1],
  ]);
  return {
    prefillAll: maxAbsDiff(ours.all, peer.all),
    last: maxAbsDiff(ours.last, peer.last),
    decode: Math.max(...dec),
    top1: `${agree[0]}/${agree[1]}`,
    relRms: Math.sqrt(rms[0] / rms[1]),
  };
}

/** RSS of a bare `node -e` (no tsx): what the workers' baseline would be without the TypeScript loader. */
function plainNodeRss(): number | null {
  try {
    return Number(execFileSync(process.execPath, ["-e", "process.stdout.write(String(process.memoryUsage().rss))"])) / 2 ** 20;
  } catch {
    return null;
  }
}

/** Which code ran: HEAD, whether src/ or assembly/ had uncommitted changes, when the .wasm were built. */
function codeState(): string {
  try {
    const git = (...a: string[]) => execFileSync("git", a, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = git("status", "--porcelain", "--", "src", "assembly").split("\n").filter(Boolean).length;
    const built = statSync(fileURLToPath(wasmUrl("simd"))).mtime.toISOString();
    return (
      `code: git ${git("rev-parse", "--short", "HEAD")}` +
      (dirty ? ` + ${dirty} uncommitted file(s) in src/ assembly/` : "") +
      `; build/*.wasm from ${built}`
    );
  } catch {
    return "code: (git not available)";
  }
}

async function main(): Promise<number> {
  const o = program.parse().opts<Opts>();
  const repeats = o.repeats ?? (o.quick ? 3 : 7);
  const decodeRepeats = o.decodeRepeats ?? (o.quick ? 1 : 5);
  const decodeTokens = o.decodeTokens ?? (o.quick ? 16 : 64);
  const dims = modelDims(syntheticConfig(o.model));
  const V = dims.V;
  const peerGraphs = o.peerGraph ?? graphVariants(dims);
  const noGraph = peerGraphs.find((v) => !graphVariants(dims).includes(v as GraphVariant));
  if (noGraph) throw new InvalidArgumentError(`--peer-graph: ${o.model} has no '${noGraph}' graph (${graphVariants(dims).join(", ")})`);
  const decodeIds = parityDecodeIds(V);
  const maxCtx = o.prompt + Math.max(decodeTokens, decodeIds.length);
  const t0 = performance.now();
  const m = machineInfo();

  // What our model can be asked for, read from its LoadOptions type.
  const lo = readLoadOptions();
  const dtypeOk = (dt: string) => (lo.dtypes ? lo.dtypes.includes(dt) : dt === "f32");
  const relaxedOk = WebAssembly.validate(readFileSync(wasmUrl("relaxed")));
  const notes: string[] = [
    codeState(),
    `LoadOptions (${lo.source}): ${lo.properties.join(", ")}`,
    `  dtype: ${lo.dtypes ? lo.dtypes.join(", ") : "no such option (f32 only)"}; threads: ${lo.threads ? "yes" : "no such option (1 only)"}`,
  ];

  if (o.embedDtype && !lo.properties.includes("embedDType")) throw new InvalidArgumentError("--embed-dtype: LoadOptions has no embedDType");
  if (o.embedDtype) notes.push(`our token embedding / tied lm_head: ${o.embedDtype} (--embed-dtype)`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "wasm-lm-bench-"));
  if (o.onnxDir) mkdirSync(o.onnxDir, { recursive: true });
  const workers: Worker[] = [];
  const cleanup = () => {
    for (const w of workers) w.kill();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });

  const rep: RunReport = {
    model: o.model,
    machine: m,
    notes,
    repeats,
    decodeRepeats,
    decodeTokens,
    prompt: o.prompt,
    seed: o.seed,
    configs: [],
    parity: [],
    peerGraphs: [],
    wallSeconds: 0,
    metrics: o.metrics,
    loadavg: [],
    plainNodeRssMiB: plainNodeRss(),
    bandwidth: [],
    embedDtype: o.embedDtype,
  };
  let failed = false;
  try {
    // The machine's read bandwidth, before anything else runs (again after the timing, below).
    if (o.bandwidth) {
      const b = await measureBandwidth();
      rep.bandwidth.push({ when: "start", ...b });
      log(`memory bandwidth (start): ${describeBandwidth(b)}`);
    }

    // The peer's graphs, one file each: f32 per variant and lm_head; q8 and q4 on the standard variant.
    const graphs: { variant: string; file: string; weights: GraphQuant["weights"] }[] = [];
    if (o.peer) {
      const quant = {
        q8PerChannel: o.q8PerChannel,
        q4Symmetric: !o.q4ZeroPoints,
        q4AccuracyLevel: o.q4AccuracyLevel,
      };
      const todo = o.peerDtype.flatMap((weights): { weights: GraphQuant["weights"]; variant: string; lmHead: string }[] =>
        weights === "f32"
          ? peerGraphs.flatMap((variant) => o.peerLmHead.map((lmHead) => ({ weights, variant, lmHead })))
          : [{ weights, variant: "standard", lmHead: "matmul" }],
      );
      for (const { weights, variant, lmHead } of todo) {
        const file = path.join(o.onnxDir ?? tmp, `${o.model}-seed${o.seed}-${variant}-${lmHead}-${weights}.onnx`);
        const ms = await exportGraph({ kind: "export", model: o.model, seed: o.seed, variant, lmHead, onnxPath: file, weights, ...quant });
        const meta = JSON.parse(readFileSync(file + ".json", "utf8")) as { ops: string };
        const name =
          weights === "f32"
            ? `${variant}/${lmHead}`
            : weights === "q8"
              ? `q8 ${variant}${o.q8PerChannel ? " per-channel" : ""}`
              : `q4 ${variant}${o.q4ZeroPoints ? " zero-points" : ""}${o.q4AccuracyLevel !== undefined ? ` acc${o.q4AccuracyLevel}` : ""}`;
        graphs.push({ variant: name, file, weights });
        rep.peerGraphs.push({ name, ops: meta.ops, mib: statSync(file).size / 2 ** 20 });
        log(`exported ORT graph ${name} in ${(ms / 1000).toFixed(1)} s (${(statSync(file).size / 2 ** 20).toFixed(0)} MiB): ${meta.ops}`);
      }
    }

    // By default every configuration is alive at once (~13 GB with two ORT graphs at 1 and 2 threads) and
    // timed in the same rounds, so that 2 threads vs 1 is measured under the same load as ours
    // vs ORT; --low-memory runs one thread count at a time.
    const groups = o.lowMemory ? o.threads.map((t) => [t]) : [o.threads];
    for (const groupThreads of groups) {
      // This group's configurations: alive together, timed in interleaved rounds.
      const group: { cfg: Config; w: Worker }[] = [];
      const spawn = (cfg: Config, spec: WorkerSpec) => {
        const w = new Worker(cfg.name, spec, decodeIds);
        workers.push(w);
        group.push({ cfg, w });
      };
      for (const threads of groupThreads)
        for (const dtype of o.ours ? o.dtype : []) {
          for (const build of o.build) {
            const emb = o.embedDtype ? ` emb-${o.embedDtype}` : "";
            const cfg: Config = { name: `ours ${dtype}${emb} ${build} ${threads}t`, kind: "ours", dtype, build, threads, samples: {} };
            rep.configs.push(cfg);
            const why = !dtypeOk(dtype)
              ? `dtype ${dtype}: not available (LoadOptions ${lo.dtypes ? `dtype is ${lo.dtypes.join(" | ")}` : "has no dtype"})`
              : threads > 1 && !lo.threads
                ? `threads ${threads}: not available (LoadOptions has no threads)`
                : build === "relaxed" && !relaxedOk
                  ? "build relaxed: not available (this runtime does not validate relaxed SIMD)"
                  : null;
            if (why) {
              cfg.status = why;
              log(`${cfg.name}: ${why}`);
              continue;
            }
            spawn(cfg, {
              kind: "ours",
              model: o.model,
              build,
              dtype,
              threads,
              seed: o.seed,
              promptLen: o.prompt,
              maxCtx,
              tmpDir: tmp,
              passDtype: lo.dtypes !== null,
              passThreads: lo.threads,
              embedDType: o.embedDtype,
            });
          }
        }
      for (const threads of groupThreads)
        for (const g of graphs) {
          const cfg: Config = {
            name: `ORT ${g.variant} ${threads}t`,
            kind: "peer",
            dtype: g.weights,
            build: g.variant,
            threads,
            samples: {},
          };
          rep.configs.push(cfg);
          spawn(cfg, {
            kind: "peer",
            model: o.model,
            onnxPath: g.file,
            variant: g.variant,
            threads,
            seed: o.seed,
            promptLen: o.prompt,
            maxCtx,
            tmpDir: tmp,
          });
        }

      // Load (concurrently: nothing is timed yet).
      await Promise.all(
        group.map(async ({ cfg, w }) => {
          try {
            cfg.ready = await w.ready;
            log(`${cfg.name}: loaded in ${(cfg.ready.loadMs / 1000).toFixed(1)} s — ${cfg.ready.describe}`);
          } catch (e) {
            cfg.status = `failed to load: ${(e as Error).message.split("\n")[0]}`;
            log(`${cfg.name}: ${(e as Error).message}`);
            failed = true;
          }
        }),
      );
      let live = group.filter((x) => x.cfg.ready);

      // Parity before timing (same thread count): ours against every f32 graph and against the ORT
      // graph of the matching quantization (int8 ~ q8, q4 ~ q4); each quantized ORT graph against the
      // first f32 graph. Only ours f32 vs ORT f32 is held to PARITY_ATOL; the rest is reported.
      const peerParity = new Map<Config, ParityResult>();
      for (const { cfg, w } of live.filter((x) => x.cfg.kind === "peer")) {
        try {
          peerParity.set(cfg, await w.parity(o.prompt, V));
        } catch (e) {
          cfg.status = `failed: ${(e as Error).message.split("\n")[0]}`;
          failed = true;
        }
      }
      const compare = (cfg: Config, res: ParityResult, peer: Config, pr: ParityResult) => {
        const cmp = compareParity(res, pr, V);
        const worst = Math.max(cmp.prefillAll, cmp.last, cmp.decode);
        const checked = cfg.dtype === "f32" && peer.dtype === "f32";
        const ok = !Number.isNaN(worst) && (!checked || worst <= PARITY_ATOL);
        rep.parity.push({ config: cfg.name, peer: peer.name, ...cmp, ok, checked });
        log(
          `parity ${cfg.name} vs ${peer.name}: max|Δ| prefill-all ${cmp.prefillAll.toExponential(2)}, last ` +
            `${cmp.last.toExponential(2)}, decode ${cmp.decode.toExponential(2)}; rel RMS ${(100 * cmp.relRms).toFixed(2)} %; ` +
            `top-1 ${cmp.top1}` +
            (ok ? "" : checked ? ` — FAIL (> ${PARITY_ATOL})` : " — NaN"),
        );
        if (!ok) {
          cfg.status = `parity failed vs ${peer.name} (max |Δ| ${worst.toExponential(2)})`;
          failed = true;
        }
      };
      for (const [peer, pr] of peerParity) {
        if (peer.dtype === "f32") continue;
        const ref = [...peerParity].find(([p]) => p.dtype === "f32" && p.threads === peer.threads);
        if (ref) compare(peer, pr, ref[0], ref[1]);
      }
      for (const { cfg, w } of live.filter((x) => x.cfg.kind === "ours")) {
        let res: ParityResult;
        try {
          res = await w.parity(o.prompt, V);
        } catch (e) {
          cfg.status = `failed: ${(e as Error).message.split("\n")[0]}`;
          failed = true;
          continue;
        }
        for (const [peer, pr] of peerParity) {
          if (peer.threads !== cfg.threads) continue; // against ORT at the same thread count
          if (peer.dtype !== "f32" && peer.dtype !== QUANT_PEER[cfg.dtype]) continue;
          compare(cfg, res, peer, pr);
        }
      }
      peerParity.clear();
      live = live.filter((x) => !x.cfg.status);

      // Timing: round r runs every live configuration once, in alternating order.
      for (const metric of o.metrics) {
        const n = metric === "decode" ? decodeRepeats : repeats;
        for (let r = 0; r < n; r++) {
          const order = r % 2 ? [...live].reverse() : live;
          const line: string[] = [];
          for (const { cfg, w } of order) {
            if (cfg.status) continue;
            try {
              const sample = await w.time(metric, decodeTokens);
              (cfg.samples[metric] ??= []).push(sample);
              line.push(
                `${cfg.name} ${sample.ms.toFixed(metric === "decode" ? 2 : 0)}` +
                  (sample.others !== null && sample.others > 0.25 ? ` (others ${sample.others.toFixed(1)} cores)` : ""),
              );
            } catch (e) {
              cfg.status = `failed: ${(e as Error).message.split("\n")[0]}`;
              failed = true;
            }
          }
          log(`${metric} ${r + 1}/${n}: ${line.join(", ")}`);
          rep.loadavg.push(os.loadavg()[0]);
        }
      }

      for (const { cfg, w } of group) {
        const exit = await w.exit();
        if (exit) cfg.exit = exit;
      }
    }
    if (o.bandwidth) {
      const b = await measureBandwidth();
      rep.bandwidth.push({ when: "end", ...b });
      log(`memory bandwidth (end): ${describeBandwidth(b)}`);
    }
  } finally {
    cleanup();
  }
  rep.wallSeconds = (performance.now() - t0) / 1000;
  const out = report(rep, o.json);
  process.stdout.write(out);
  return failed ? 1 : 0;
}

runMain("bench", main);
