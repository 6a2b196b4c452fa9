// npm run bench:kernels [-- --json] [--only linear] [--repeats 7] ...
//
// Our kernels (both wasm builds) against ONNX Runtime Web's WASM backend on OPT-125M's shapes,
// one thread each, in the same run. See bench/README.md for how to read the output.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { Arena } from "../src/arena.js";
import { type Build, type KernelExports, loadWasm, type Wasm, wasmUrl } from "../src/wasm.js";
import {
  allCases,
  type CaseSpec,
  type Ctx,
  type Kernel,
  LINEAR_SHAPES,
  type Ours,
  type OursMissing,
  type OursRun,
  PREFILL_T,
  ROTATE_BYTES,
  STREAMS_ALONE_BYTES,
} from "./cases.js";
import { compare, randomF32, type Tolerance } from "./data.js";
import { machineInfo, measure, runMain, type MeasureOptions } from "./measure.js";
import { createSession, describeOrt, f32Tensor, initOrt, runOne, tinyAddGraph } from "./ort.js";
import { detailTable, jsonLines, progressLine, summaryTable } from "./report.js";
import { type CaseResult, runCase } from "./runner.js";

type DotKernel = "linearQ4" | "linearI8Dot";
type BenchKernel = Kernel | DotKernel;
const KERNELS: BenchKernel[] = ["linear", "linearF16", "linearI8", "linearQ4", "linearI8Dot", "layerNorm", "softmax"];
const BUILDS: Build[] = ["simd", "relaxed"];

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const positive = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError("must be a positive number");
  return n;
};
const listOf =
  <T extends string>(allowed: readonly T[]) =>
  (v: string): T[] =>
    v.split(",").map((s) => {
      const hit = allowed.find((a) => a.toLowerCase() === s.trim().toLowerCase());
      if (!hit) throw new InvalidArgumentError(`'${s}' is not one of ${allowed.join(", ")}`);
      return hit;
    });

const program = new Command("bench:kernels")
  .description("wasm-lm kernels vs onnxruntime-web (wasm, 1 thread) on OPT-125M shapes")
  .option("--json", "one JSON object per line per (case, build) on stdout", false)
  .option("--only <kernels>", `comma list of ${KERNELS.join(", ")}`, listOf(KERNELS))
  .option("--filter <text>", "only cases whose shape contains this text (e.g. 50272, T=1)")
  .addOption(new Option("--builds <list>", "our builds to run").argParser(listOf(BUILDS)).default(BUILDS, "simd,relaxed"))
  .option("--no-peer", "skip onnxruntime-web")
  .option("--repeats <n>", "samples per contender, at least", int("--repeats", 1), 7)
  .option("--warmup <n>", "warm-up calls per contender", int("--warmup", 1), 2)
  .option("--max-seconds <s>", "time budget per case; stops after 3 samples once spent", positive, 20)
  .option("--sample-ms <ms>", "one sample batches calls up to about this long", positive, 20)
  .option("--build-dir <dir>", "read wasm-lm.{simd,relaxed}.wasm from here instead of build/")
  .option("--seed <n>", "seed of every input", int("--seed", 0), 1);

interface Opts {
  json: boolean;
  only?: BenchKernel[];
  filter?: string;
  builds: Build[];
  peer: boolean;
  repeats: number;
  warmup: number;
  maxSeconds: number;
  sampleMs: number;
  buildDir?: string;
  seed: number;
}

/** A build without heapBase (the kernels not landed yet) still gets an arena, far above its data. */
const FALLBACK_HEAP_BASE = 1 << 20;

/**
 * Load one build from its file. The bytes are validated here rather than through detectFeatures():
 * "can this runtime compile this very file" is the question, and loadWasm skips its own probe when
 * handed the bytes. Null (with a note) when the runtime cannot run the build.
 */
async function loadOurs(build: Build, buildDir: string | undefined, log: (m: string) => void): Promise<Ours | null> {
  const file = buildDir ? path.join(buildDir, `wasm-lm.${build}.wasm`) : fileURLToPath(wasmUrl(build));
  const bytes = readFileSync(file);
  if (!WebAssembly.validate(bytes)) {
    log(
      `note: this runtime cannot compile ${file}` +
        (build === "relaxed"
          ? " (relaxed SIMD: Node 20 needs --experimental-wasm-relaxed-simd, which `npm run bench:kernels` passes)"
          : "") +
        `: skipping the ${build} build`,
    );
    return null;
  }
  let wasm: Wasm = await loadWasm({ build, bytes });
  if (typeof wasm.k.heapBase !== "function") {
    log(`note: ${file} exports no heapBase; the arena starts at ${FALLBACK_HEAP_BASE} instead`);
    wasm = { ...wasm, k: { ...wasm.k, heapBase: () => FALLBACK_HEAP_BASE } };
  }
  return { build, file: path.relative(process.cwd(), file) || file, k: wasm.k, arena: new Arena(wasm) };
}

// ---------------------------------------------------------------------------------------------
// linearQ4 / linearI8Dot (assembly/kernels/linear_dot.ts): int8 activations (quantizeActI8, 8 bits,
// blocks of 32, done once before timing: ~1 % of a T = 128 call, ~0.1 % at T = 1) against q4 weights
// (quantizeQ4: 4 bits + bf16 scale and min per 32) or int8 weights (quantizeI8, group 64, the model's
// default). OPT-125M's four matrices at T = 1 (GB/s of weight bytes, scales included; the matrix is
// quantized once and copied until ROTATE_BYTES, so every call streams from DRAM) and T = 128
// (GFLOP/s). No peer. Checked against float64 on exactly the stored values (rows 0 and T−1).

const DOT_TOL: Tolerance = { atol: 1e-4, rtol: 1e-4 };
const DOT_GROUP = 64;

interface Packed {
  q: Uint8Array;
  s: Uint8Array;
  xq: Int8Array;
  xs: Float32Array;
}

/** float64 y rows of a dot kernel on the stored values. */
function dotRef(kernel: DotKernel, p: Packed, b: Float32Array | null, K: number, N: number, rows: readonly number[]): Float64Array {
  const nb = K / 32,
    y = new Float64Array(rows.length * N);
  const s16 = new Uint16Array(p.s.buffer, p.s.byteOffset, p.s.byteLength >> 1);
  const s32 = new Float32Array(p.s.buffer, p.s.byteOffset, p.s.byteLength >> 2);
  const q8 = new Int8Array(p.q.buffer, p.q.byteOffset, p.q.byteLength);
  const bf16 = new Float32Array(1),
    bits = new Uint32Array(bf16.buffer);
  const f = (h: number) => ((bits[0] = h << 16), bf16[0]);
  rows.forEach((t, r) => {
    for (let o = 0; o < N; o++) {
      let acc = b ? b[o] : 0;
      for (let blk = 0; blk < nb; blk++) {
        const xsb = p.xs[t * 2 * nb + blk];
        let D = 0,
          S = 0;
        for (let i = 0; i < 32; i++) {
          const xv = p.xq[t * K + blk * 32 + i];
          if (kernel === "linearQ4") {
            const byte = p.q[o * (K / 2) + blk * 16 + (i & 15)];
            D += (i < 16 ? byte & 15 : byte >> 4) * xv;
            S += xv;
          } else D += q8[o * K + blk * 32 + i] * xv;
        }
        acc +=
          kernel === "linearQ4"
            ? f(s16[o * 2 * nb + blk]) * xsb * D + f(s16[o * 2 * nb + nb + blk]) * xsb * S
            : s32[o * (K / DOT_GROUP) + Math.floor((blk * 32) / DOT_GROUP)] * xsb * D;
      }
      y[r * N + o] = acc;
    }
  });
  return y;
}

async function* dotLinearGroup(ctx: Ctx, kernel: DotKernel, what: string, K: number, N: number, bias: boolean): AsyncGenerator<CaseSpec> {
  const nb = K / 32;
  const qBytes = kernel === "linearQ4" ? (N * K) / 2 : N * K;
  const sBytes = kernel === "linearQ4" ? N * nb * 4 : N * (K / DOT_GROUP) * 4;
  const wBytes = qBytes + sBytes;
  const rotate = wBytes < STREAMS_ALONE_BYTES ? Math.ceil(ROTATE_BYTES / wBytes) : 1;
  const prefillShape = `T=${PREFILL_T} ${K}→${N}`;
  const decodeShape =
    `T=1 ${K}→${N} ` + (rotate > 1 ? `×${rotate} (${Math.round((rotate * wBytes) / 1e6)} MB)` : `(${Math.round(wBytes / 1e6)} MB)`);
  const wants = (shape: string) => ctx.wants(kernel as unknown as Kernel, shape);
  const wantPrefill = wants(prefillShape),
    wantDecode = wants(decodeShape);
  if (!wantPrefill && !wantDecode) return;
  const R = wantDecode ? rotate : 1;
  const seed = ctx.seed * 7919 + K * 31 + N + (kernel === "linearQ4" ? 4 : 8);
  const W = randomF32(K * N, seed + 1000, 1 / Math.sqrt(K));
  const X = randomF32(PREFILL_T * K, seed + 1);
  const B = bias ? randomF32(N, seed + 2, 0.5) : null;
  const marks = ctx.ours.map((o) => [o.arena, o.arena.mark()] as const);
  try {
    ctx.log(
      `${kernel} ${K}→${N} (${what}): quantizing, ${R} cop${R > 1 ? "ies" : "y"} (${Math.round((R * wBytes) / 1e6)} MB per contender)`,
    );
    let packed: Packed | null = null;
    const ptrs = new Map<Ours, { q: number[]; s: number[]; xq: number; xs: number; b: number; y: number }>();
    for (const o of ctx.ours) {
      if (typeof o.k[kernel] !== "function") continue;
      const a = o.arena,
        k: KernelExports = o.k;
      a.reserve(K * N * 4 + R * (wBytes + 128) + PREFILL_T * (K * 5 + N * 4) + nb * PREFILL_T * 8 + 8192);
      const m0 = a.mark();
      const src = a.put(W),
        q0 = a.alloc(qBytes),
        s0 = a.alloc(sBytes);
      if (kernel === "linearQ4") k.quantizeQ4(q0, s0, src, N, K);
      else k.quantizeI8(q0, s0, src, N, K, DOT_GROUP);
      const qCopy = a.u8(q0, qBytes).slice(),
        sCopy = a.u8(s0, sBytes).slice();
      a.reset(m0); // drop the f32 source
      const p = { q: [] as number[], s: [] as number[], xq: 0, xs: 0, b: B ? a.put(B) : 0, y: 0 };
      for (let i = 0; i < R; i++) {
        p.q.push(a.alloc(qBytes));
        a.u8(p.q[i], qBytes).set(qCopy);
        p.s.push(a.alloc(sBytes));
        a.u8(p.s[i], sBytes).set(sCopy);
      }
      const x = a.put(X);
      p.xq = a.alloc(PREFILL_T * K);
      p.xs = a.alloc(PREFILL_T * nb * 8);
      p.y = a.alloc(PREFILL_T * N * 4);
      k.quantizeActI8(p.xq, p.xs, x, PREFILL_T, K, 8);
      packed ??= { q: qCopy, s: sCopy, xq: a.i8(p.xq, PREFILL_T * K).slice(), xs: a.f32(p.xs, PREFILL_T * nb * 2).slice() };
      ptrs.set(o, p);
    }
    const spec = (T: number, matrices: number, shape: string, decode: boolean): CaseSpec => {
      const rows = T === 1 ? [0] : [0, T - 1];
      const ref = packed ? dotRef(kernel, packed, B, K, N, rows) : null;
      return {
        kernel: kernel as unknown as Kernel,
        shape,
        dims: { T, K, N, matrices },
        unit: decode ? "GB/s" : "GFLOP/s",
        work: decode ? wBytes : 2 * T * K * N,
        workNote: decode ? "weight bytes streamed per call (scales included)" : "2·T·K·N FLOPs per call",
        ours: ctx.ours.map((o): OursRun | OursMissing => {
          const p = ptrs.get(o);
          if (!p) return { build: o.build, missing: `no '${kernel}' export in ${o.file}` };
          const run =
            kernel === "linearQ4"
              ? (i: number) => o.k.linearQ4(p.y, p.xq, p.xs, p.q[i % matrices], p.s[i % matrices], p.b, T, K, N, 0, N)
              : (i: number) => o.k.linearI8Dot(p.y, p.xq, p.xs, p.q[i % matrices], p.s[i % matrices], p.b, T, K, N, 0, N, DOT_GROUP);
          return { build: o.build, run, output: () => o.arena.f32(p.y, T * N).slice() };
        }),
        peers: [],
        checkCalls: matrices > 1 ? [0, matrices - 1] : [0],
        reference: (_i, y) => {
          const got = new Float32Array(rows.length * N);
          rows.forEach((t, r) => got.set(y.subarray(t * N, (t + 1) * N), r * N));
          return compare(got, ref!, DOT_TOL);
        },
        tol: DOT_TOL,
      };
    };
    if (wantPrefill) yield spec(PREFILL_T, 1, prefillShape, false);
    if (wantDecode) yield spec(1, R, decodeShape, true);
  } finally {
    for (const [a, m] of marks) a.reset(m);
  }
}

/** Every case: cases.ts's suite, then the int8-activation kernels on the four OPT-125M matrices. */
async function* benchCases(ctx: Ctx): AsyncGenerator<CaseSpec> {
  yield* allCases(ctx);
  for (const kernel of ["linearQ4", "linearI8Dot"] as const) {
    for (const s of LINEAR_SHAPES) yield* dotLinearGroup(ctx, kernel, s.what, s.K, s.N, s.bias);
  }
}

async function main(): Promise<number> {
  const o = program.parse().opts<Opts>();
  const out = (s: string) => process.stdout.write(s + "\n");
  const log = (s: string) => process.stderr.write(s + "\n");

  const ours: Ours[] = [];
  for (const b of o.builds) {
    const loaded = await loadOurs(b, o.buildDir, log);
    if (loaded) ours.push(loaded);
  }
  const builds = ours.map((x) => x.build);

  let peerName = "none";
  if (o.peer) {
    await initOrt();
    peerName = describeOrt();
  }
  const m = machineInfo();
  const mopts: MeasureOptions = { repeats: o.repeats, warmup: o.warmup, maxSeconds: o.maxSeconds, sampleMs: o.sampleMs };
  const header = [
    `wasm-lm kernel bench — ${m.date}`,
    `machine: ${m.nproc} cores, ${m.cpu}, node ${m.node} (V8 ${m.v8}), ${m.platform}, load average ${m.loadavg}`,
    `ours: builds ${builds.join(", ") || "none"} (${o.buildDir ?? "build/"}), 1 thread`,
    `peer: ${peerName}`,
    `timing: medians over >= ${o.repeats} samples per contender (>= 3 once ${o.maxSeconds} s per case are spent), ` +
      `${o.warmup} warm-up calls, samples of ~${o.sampleMs} ms, contenders interleaved; seed ${o.seed}`,
  ];
  (o.json ? log : out)(header.join("\n"));

  if (o.peer) {
    // What one session.run costs with nothing to compute: part of every peer time below.
    const s = await createSession(tinyAddGraph());
    const x = f32Tensor(new Float32Array([1]), [1]);
    const [t] = await measure([{ name: "overhead", run: () => runOne(s, { x }) }], mopts);
    await s.release();
    (o.json ? log : out)(`peer call overhead (1-element Add graph): ${(t.ms * 1000).toFixed(1)} µs median per session.run`);
  }

  const ctx: Ctx = {
    ours,
    peer: o.peer,
    seed: o.seed,
    wants: (kernel, shape) => (!o.only || o.only.includes(kernel)) && (!o.filter || shape.includes(o.filter)),
    log,
  };
  const results: CaseResult[] = [];
  let failed = false;
  for await (const spec of benchCases(ctx)) {
    const r = await runCase(spec, mopts);
    results.push(r);
    log(progressLine(r));
    for (const x of r.ours.filter((x) => x.status === "wrong")) {
      failed = true;
      const c = x.vsRef && !x.vsRef.ok ? (["f64 reference", x.vsRef] as const) : (["ORT", x.vsPeer!] as const);
      log(
        `  WRONG: ${x.build} ${r.kernel} ${r.shape} vs ${c[0]}: max|Δ| ${c[1].maxAbs}, worst at ${c[1].at}: ` +
          `got ${c[1].got}, want ${c[1].want} (atol ${r.tol.atol}, rtol ${r.tol.rtol}); not timed`,
      );
    }
    for (const p of r.peers.filter((p) => !p.vsRef.ok)) {
      failed = true;
      log(
        `  WRONG: ORT ${p.variant} ${r.kernel} ${r.shape} vs f64 reference: max|Δ| ${p.vsRef.maxAbs} ` +
          `at ${p.vsRef.at} (the ONNX graph is wrong); not timed`,
      );
    }
    if (o.json) for (const line of jsonLines(r, peerName)) out(line);
  }
  if (results.length === 0) log("no case matches --only/--filter");

  if (!o.json && results.length) {
    out("\nThroughput, medians (GFLOP/s or GB/s; ratio = ours / ORT's fastest variant, > 1: we are faster)\n");
    out(summaryTable(results, builds));
    out(
      "\nEvery contender: ms per kernel call (median, min), samples × runs per sample, rate in the case's unit," +
        "\nmax |Δ| of the output vs ORT's single-node output and vs a float64 reference (* = ORT's fastest variant)\n",
    );
    out(detailTable(results));
    const missing = [...new Set(results.flatMap((r) => r.ours.filter((x) => x.status === "missing").map((x) => x.note)))];
    if (missing.length) out(`\nmissing kernels (not timed): ${missing.join("; ")}`);
  }
  return failed ? 1 : 0;
}

runMain("bench:kernels", main);
