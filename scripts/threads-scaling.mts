// How decode scales from one thread to two (issue #12): every number below is measured in one run,
// configurations interleaved round by round, and reported as medians with ratios.
//
//   npx tsx scripts/threads-scaling.mts [--rounds 9] [--tokens 32] [--prompt 32] [--model opt-125m]
//       [--spin 0,200,1000]   2-thread runs with each of these spin budgets (pool.spinMicros, µs)
//       [--baseline DIR]      the same runs from another checkout of wasm-lm, side by side
//       [--clean 0.1]         also report the rounds in which other processes used less of the cores
//       [--json FILE]         every round's ms/token and the other processes' share, as JSON
//       [--dtypes f32,int8,q4] which weight dtypes to run
//       [--embed-dtype DTYPE]  the token embedding's (= tied lm_head's) dtype for every run (LoadOptions.embedDType)
//
// 1. memory bandwidth of a pure streaming read (tiny SIMD kernels compiled here: one stream, and
//    four a quarter apart as the matvecs read rows), one thread against two: what two cores can
//    share before any model code runs;
// 2. the wake-up round trip (wake the workers, wait until each has picked the region up), back to
//    back (workers still spinning) and after a pause (workers asleep in Atomics.wait);
// 3. parallel regions per decoded token (the pool's counter);
// 4. decode ms/token of the synthetic model at 1 and 2 threads for f32, int8 and q4;
// 5. the split linears alone (--kernels 0 skips them), 1 vs 2 threads: how far the kernels scale
//    apart from the serial work between them.
import asc from "assemblyscript/asc";
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { DecoderModel, type KVCache } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { splitJob, type SplitJob, type ThreadPool } from "../src/threads.js";
import type { Mat } from "../src/models/weights.js";

const arg = (name: string, dflt: number | string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : String(dflt);
};
const ROUNDS = Number(arg("rounds", 9));
const TOKENS = Number(arg("tokens", 32));
const PROMPT = Number(arg("prompt", 32));
const PRESET = arg("model", "opt-125m");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Other processes on the machine: the CPU time all cores were busy (/proc/stat, Linux) minus this
// process's own (every thread of it), as a share of the cores over an interval. A round in which
// others took more than CLEAN of the machine is reported apart: two threads need two free cores.
const CLEAN = Number(arg("clean", 0.1));
const CORES = availableParallelism();
function machineBusy(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / 100; // seconds (USER_HZ = 100); idle, iowait out
  } catch {
    return NaN;
  }
}
/** Runs f; returns its result and the share of the machine other processes used meanwhile. */
function measured<T>(f: () => T): [T, number] {
  const [b0, c0, t0] = [machineBusy(), process.cpuUsage(), performance.now()];
  const out = f();
  const c = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  return [out, (machineBusy() - b0 - (c.user + c.system) / 1e6) / (wall * CORES)];
}

// ---- 1. streaming-read bandwidth -------------------------------------------------------------

const READ_SRC = `
// One sequential stream.
export function readSum(p: usize, n: usize): f32 {
  let a = f32x4.splat(0), b = a, c = a, d = a;
  for (let i: usize = 0; i < n; i += 64) {
    a = f32x4.add(a, v128.load(p + i));
    b = f32x4.add(b, v128.load(p + i, 16));
    c = f32x4.add(c, v128.load(p + i, 32));
    d = f32x4.add(d, v128.load(p + i, 48));
  }
  const s = f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}
// Four streams a quarter apart, 16 bytes from each per step: the matvec kernels' access pattern.
export function readSum4(p: usize, n: usize): f32 {
  const q = n >> 2;
  let a = f32x4.splat(0), b = a, c = a, d = a;
  for (let i: usize = 0; i < q; i += 16) {
    a = f32x4.add(a, v128.load(p + i));
    b = f32x4.add(b, v128.load(p + q + i));
    c = f32x4.add(c, v128.load(p + 2 * q + i));
    d = f32x4.add(d, v128.load(p + 3 * q + i));
  }
  const s = f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}`;

/** GB/s of a read of 256 MiB by one thread, and by two (a worker reads the second half). */
async function bandwidth(): Promise<string> {
  const { binary, stderr, error } = await asc.compileString(READ_SRC, {
    optimizeLevel: 3,
    runtime: "stub",
    enable: ["simd", "threads"],
    sharedMemory: true,
    importMemory: true,
    initialMemory: 4097,
    maximumMemory: 4097,
  });
  if (error || !binary) throw new Error(`asc: ${error?.message} ${stderr.toString()}`);
  const module = new WebAssembly.Module(binary as Uint8Array<ArrayBuffer>);
  const memory = new WebAssembly.Memory({ initial: 4097, maximum: 4097, shared: true });
  const BYTES = 256 << 20; // far beyond the 8 MiB L3
  const base = 65536;
  new Float32Array(memory.buffer, base, BYTES / 4).fill(1.5);
  type Read = (p: number, n: number) => number;
  const ex = new WebAssembly.Instance(module, { env: { memory } }).exports as { readSum: Read; readSum4: Read };
  const reads: Read[] = [ex.readSum, ex.readSum4];
  // One worker reading the second half on command: ctrl[0] job number, ctrl[1] done count, ctrl[2] which read.
  const ctrl = new Int32Array(new SharedArrayBuffer(12));
  const w = new Worker(
    `const { workerData: d } = require("node:worker_threads");
     const ex = new WebAssembly.Instance(d.module, { env: { memory: d.memory } }).exports;
     const fs = [ex.readSum, ex.readSum4];
     const c = new Int32Array(d.ctrl); let seq = 0;
     for (;;) { Atomics.wait(c, 0, seq); seq = Atomics.load(c, 0); if (seq < 0) break; fs[c[2]](d.p, d.n); Atomics.add(c, 1, 1); Atomics.notify(c, 1); }`,
    { eval: true, workerData: { module, memory, ctrl: ctrl.buffer, p: base + BYTES / 2, n: BYTES / 2 } },
  );
  let seq = 0;
  const cells: string[] = [];
  const others: number[] = [];
  for (let f = 0; f < reads.length; f++) {
    const one: number[] = [];
    const two: number[] = [];
    for (let r = 0; r < ROUNDS + 1; r++) {
      const [t1, o1] = measured(() => {
        const t0 = performance.now();
        reads[f](base, BYTES);
        return performance.now() - t0;
      });
      const [t2, o2] = measured(() => {
        const t0 = performance.now();
        Atomics.store(ctrl, 1, 0);
        Atomics.store(ctrl, 2, f);
        Atomics.store(ctrl, 0, ++seq);
        Atomics.notify(ctrl, 0);
        reads[f](base, BYTES / 2);
        while (Atomics.load(ctrl, 1) < 1) Atomics.wait(ctrl, 1, 0, 1);
        return performance.now() - t0;
      });
      if (r > 0) {
        one.push(BYTES / 1e6 / t1); // GB/s
        two.push(BYTES / 1e6 / t2);
        others.push(o1, o2);
      }
    }
    const [a, b] = [median(one), median(two)];
    cells.push(`${f ? "4 streams" : "1 stream"}: 1 thread ${a.toFixed(2)} GB/s, 2 threads ${b.toFixed(2)} GB/s (${(b / a).toFixed(2)}×)`);
  }
  Atomics.store(ctrl, 0, -1);
  Atomics.notify(ctrl, 0);
  await w.terminate();
  return `streaming read of 256 MiB, ${cells.join("; ")}; others ${Math.round(100 * median(others))}%`;
}

// ---- 2. wake-up cost ---------------------------------------------------------------------------

/** Medians (µs) of the pool's wake-up round trip and of an empty region, hot and after a pause. */
async function wakeups(pool: ThreadPool): Promise<string> {
  const time = (f: () => void) => {
    const t0 = performance.now();
    f();
    return (performance.now() - t0) * 1000;
  };
  const ping = () => pool.ping();
  const empty = () => pool.split("linear", [0, 0, 0, 0, 0, 0, 0, 0, 64]); // T = 0: the kernel returns at once
  for (let i = 0; i < 2000; i++) ping();
  const hot = Array.from({ length: 5000 }, () => time(ping));
  const hotEmpty = Array.from({ length: 5000 }, () => time(empty));
  const cold: number[] = [];
  for (let i = 0; i < 200; i++) {
    await sleep(5); // longer than the workers spin: they are asleep in Atomics.wait
    cold.push(time(ping));
  }
  return (
    `wake-up round trip (wake every worker, wait until each has picked the region up; spin ${pool.spinMicros} µs): ` +
    `${median(hot).toFixed(1)} µs back to back, ${median(cold).toFixed(1)} µs after 5 ms idle; ` +
    `an empty region on the calling thread: ${median(hotEmpty).toFixed(1)} µs`
  );
}

// ---- 3, 4. decode -----------------------------------------------------------------------------

type DType = "f32" | "int8" | "q4";
interface Run {
  label: string;
  dtype: DType;
  model: DecoderModel;
  cache: KVCache;
  spin?: number;
  msPerToken: number[];
  /** Per round: the share of the machine other processes used meanwhile. */
  others: number[];
}
type Loader = typeof DecoderModel.load;

const config = syntheticConfig(PRESET);
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 3) % config.vocab_size);
const next = (i: number) => (i * 104729 + 17) % config.vocab_size;
const SPINS = arg("spin", "").split(",").filter(Boolean).map(Number);
const BASELINE = arg("baseline", "");
const DTYPES = arg("dtypes", "f32,int8,q4").split(",") as ("f32" | "int8" | "q4")[];
const EMBED = arg("embed-dtype", "");

/** TOKENS decode steps from the same cached prompt each round (the cache rewound to it). */
function decode(r: Run): number {
  if (r.spin !== undefined) r.model.pool!.spinMicros = r.spin;
  r.cache.length = PROMPT;
  r.cache.seen[0] = PROMPT;
  const t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) r.model.forward([[next(i)]], { cache: r.cache, logits: "last" });
  return (performance.now() - t0) / TOKENS;
}

console.log(
  `node ${process.version}, ${PRESET}${EMBED ? ` (embedDType ${EMBED})` : ""}, prompt ${PROMPT}, ${TOKENS} decoded tokens per round, ${ROUNDS} rounds`,
);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
console.log(`load average at start: ${load()} (other processes share the cores: compare within this run only)`);
console.log(await bandwidth());

// --baseline DIR: the same configurations from another checkout too (e.g. the commit before a
// change: git archive <commit> | tar -x -C DIR, then build/ and node_modules linked into DIR).
const loaders: [string, Loader][] = [["", DecoderModel.load.bind(DecoderModel)]];
if (BASELINE) {
  const url = pathToFileURL(resolve(BASELINE, "src/models/decoder.ts")).href;
  const base = (await import(url)) as { DecoderModel: typeof DecoderModel };
  loaders.push([" (baseline)", base.DecoderModel.load.bind(base.DecoderModel)]);
}
const runs: Run[] = [];
for (const dtype of DTYPES) {
  for (const [tag, loadModel] of loaders) {
    for (const threads of [1, 2]) {
      const model = await loadModel(config, new SyntheticSource(config, 0), {
        dtype,
        threads,
        ...(EMBED ? { embedDType: EMBED as "q4" } : {}),
      });
      const cache = model.createCache(1, PROMPT + TOKENS + 1);
      model.forward([prompt], { cache, logits: "none" });
      const label = `${threads} thread${threads > 1 ? "s" : ""}${tag}`;
      if (threads === 1 || tag || SPINS.length === 0) runs.push({ label, dtype, model, cache, msPerToken: [], others: [] });
      else
        for (const spin of SPINS) runs.push({ label: `${label}, spin ${spin} µs`, dtype, model, cache, spin, msPerToken: [], others: [] });
    }
  }
}
const DEFAULT_SPIN = runs.find((r) => r.model.threads === 2 && !r.label.includes("baseline"))!.model.pool!.spinMicros;
const pool2 = runs.find((r) => r.model.threads === 2 && !r.label.includes("baseline"))!.model.pool!;
console.log(await wakeups(pool2));

const regionLine: string[] = [];
for (const r of runs.filter((r) => r.model.threads === 2 && r.spin === SPINS[0])) {
  decode(r); // warm-up
  const before = r.model.pool!.regions;
  decode(r);
  regionLine.push(`${r.dtype}${r.label.includes("baseline") ? " (baseline)" : ""} ${(r.model.pool!.regions - before) / TOKENS}`);
}
console.log(`parallel regions per decoded token (lm_head included): ${regionLine.join(", ")}`);

for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order every round so no configuration always follows the same one.
  for (let j = 0; j < runs.length; j++) {
    const r = runs[(j + round) % runs.length];
    const [ms, others] = measured(() => decode(r));
    r.msPerToken.push(ms);
    r.others.push(others);
  }
}

const pct = (x: number) => `${Math.round(100 * x)}%`;
const JSON_OUT = arg("json", "");
if (JSON_OUT) {
  const rows = runs.map((r) => ({ dtype: r.dtype, label: r.label, msPerToken: r.msPerToken, others: r.others }));
  writeFileSync(JSON_OUT, JSON.stringify({ load: loadavg(), rounds: ROUNDS, tokens: TOKENS, runs: rows }, null, 1));
}
console.log(
  `\ndecode ms/token, median over rounds; ratio = tokens/s against 1 thread of this tree, and the same over the rounds ` +
    `in which other processes used < ${pct(CLEAN)} of the ${CORES} cores (with the 1-thread round of the same index)`,
);
for (const dtype of DTYPES) {
  const mine = runs.filter((r) => r.dtype === dtype);
  const one = mine[0];
  for (const r of mine) {
    const per = one.msPerToken.map((x, i) => x / r.msPerToken[i]).sort((x, y) => x - y);
    const ratio = median(one.msPerToken) / median(r.msPerToken);
    const clean = r.msPerToken.map((_, i) => i).filter((i) => r.others[i] < CLEAN && one.others[i] < CLEAN);
    const cleanCell = clean.length
      ? `${median(clean.map((i) => r.msPerToken[i])).toFixed(2)} ms ` +
        `${(median(clean.map((i) => one.msPerToken[i])) / median(clean.map((i) => r.msPerToken[i]))).toFixed(2)}× (${clean.length} rounds)`
      : "no clean round";
    console.log(
      `${dtype.padEnd(5)} ${r.label.padEnd(30)} ${median(r.msPerToken).toFixed(2).padStart(7)} ms  ` +
        `${ratio.toFixed(2)}× (${per[0].toFixed(2)}…${per[per.length - 1].toFixed(2)}), others ${pct(median(r.others))}; ` +
        `clean: ${cleanCell}`,
    );
  }
}

// ---- 5. the kernels alone ---------------------------------------------------------------------
// Each split linear of a token on its own, every layer's matrix in turn (as decode streams them),
// one thread (direct calls on the 1-thread model) against two (the pool): how far the kernels
// themselves scale — memory bandwidth included — apart from the serial work between them.

/** The kernel call of y = x·Wᵀ for one matrix at T = 1 (q4, int8: x already quantized). */
function linearCall(m: Mat, y: number, x: number, [xq, xs, x16, s16]: number[], K: number, N: number): SplitJob {
  const rows = { y, b: 0, T: 1, K, N, n0: 0, n1: N };
  switch (m.dtype) {
    case "f32":
      return splitJob("linear", { ...rows, x, w: m.w });
    case "f16":
      return splitJob("linearF16", { ...rows, x, w: m.w, scratch: 0 });
    case "int8": // as decode runs it: x quantized to int16 once (x16, s16), then row pieces
      return splitJob("matvecI8A16", { y, xq: x16, xs: s16, q: m.w, s: m.s, b: 0, K, n0: 0, n1: N, G: m.g });
    case "q4":
      return splitJob("linearQ4", { ...rows, xq, xs, q: m.w, s: m.s });
  }
}

/** Per kernel class, the regions of one token: [name, jobs per region]. */
function tokenKernels(model: DecoderModel): [string, SplitJob[][]][] {
  const { C, F, V, E, KV } = model.dims;
  const a = model.arena;
  const x = a.alloc(Math.max(C, F, E) * 4);
  const y = a.alloc(Math.max(C, F, V) * 4 * 3);
  const maxK = Math.max(C, F, E);
  const act = [a.alloc(maxK), a.alloc(Math.ceil(maxK / 32) * 8), a.alloc(2 * maxK), a.alloc(4)];
  const xv = a.f32(x, maxK);
  for (let i = 0; i < xv.length; i++) xv[i] = Math.sin(i * 0.37);
  // (One input for every K: the kernels' speed does not depend on the values.)
  model.k.quantizeActI8(act[0], act[1], x, 1, maxK, 8);
  model.k.quantizeActI16(act[2], act[3], x, maxK);
  const L = model.weights.layers;
  const lin = (m: Mat, K: number, N: number, out = y) => linearCall(m, out, x, act, K, N);
  return [
    ["q, k, v", L.map((w) => [lin(w.q, C, C), lin(w.k, C, KV, y + C * 4), lin(w.v, C, KV, y + (C + KV) * 4)])],
    ["o", L.map((w) => [lin(w.o, C, C)])],
    ["up", L.map((w) => (model.dims.mlp === "gated" ? [lin(w.gate, C, F), lin(w.up, C, F, y + F * 4)] : [lin(w.up, C, F)]))],
    ["down", L.map((w) => [lin(w.down, F, C)])],
    ["lm_head", [[lin(model.weights.lmHead, E, V)]]],
  ];
}

/** A job on the calling thread, as the model calls it (no spread call: V8's slow path into wasm). */
function callDirect(m: DecoderModel, { kernel, args: a }: SplitJob): void {
  (m.k[kernel] as (...a: number[]) => void)(
    a[0],
    a[1],
    a[2],
    a[3],
    a[4],
    a[5],
    a[6],
    a[7],
    a[8],
    a[9],
    a[10],
    a[11],
    a[12],
    a[13],
    a[14],
    a[15],
  );
}

const KERNEL_ROUNDS = Number(arg("kernels", 15));
console.log(
  `\nthe split linears alone, ms per token (median of ${KERNEL_ROUNDS}; every layer's matrices in turn; spin ${DEFAULT_SPIN} µs)`,
);
for (const dtype of KERNEL_ROUNDS > 0 ? DTYPES : []) {
  const [m1, m2] = [1, 2].map((t) => runs.find((r) => r.dtype === dtype && r.model.threads === t && !r.label.includes("baseline"))!.model);
  m2.pool!.spinMicros = DEFAULT_SPIN; // (the decode rounds left it at their last spin)
  const k1 = tokenKernels(m1);
  const k2 = tokenKernels(m2);
  const cells: string[] = [];
  let s1 = 0;
  let s2 = 0;
  // (Other processes measured over the whole block: /proc/stat counts in 10 ms ticks.)
  const [, others] = measured(() => {
    for (let c = 0; c < k1.length; c++) {
      const t1: number[] = [];
      const t2: number[] = [];
      for (let r = 0; r < KERNEL_ROUNDS + 1; r++) {
        let t0 = performance.now();
        for (const jobs of k1[c][1]) for (const j of jobs) callDirect(m1, j);
        const a = performance.now() - t0;
        t0 = performance.now();
        for (const jobs of k2[c][1]) m2.pool!.run(jobs);
        const b = performance.now() - t0;
        if (r > 0) {
          t1.push(a);
          t2.push(b);
        }
      }
      s1 += median(t1);
      s2 += median(t2);
      cells.push(`${k1[c][0]} ${median(t1).toFixed(2)}/${median(t2).toFixed(2)} (${(median(t1) / median(t2)).toFixed(2)}×)`);
    }
  });
  console.log(
    `${dtype.padEnd(5)} 1/2 threads: ${cells.join(", ")}; all ${s1.toFixed(2)}/${s2.toFixed(2)} (${(s1 / s2).toFixed(2)}×); ` +
      `others ${pct(others)}`,
  );
}
console.log(`load average at end: ${load()}`);
for (const r of runs) r.model.dispose();
