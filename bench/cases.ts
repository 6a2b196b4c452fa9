// The OPT-125M kernel shapes, and how each is set up for our builds and for the peer.
//
// Each group is an async generator: it allocates (our arenas, the peer's sessions) once, yields
// its cases, and frees everything in `finally`, so the next group starts from the same memory.
import type { Arena } from "../src/arena.js";
import { f16ToF32 } from "../src/formats/dtype.js";
import type { Build, KernelExports } from "../src/wasm.js";
import { type Check, compare, layerNormRef, linearRef, pickRows, randomF32, repeat, softmaxRef, type Tolerance } from "./data.js";
import {
  createSession,
  f32Tensor,
  layerNormGraph,
  type LinearVariant,
  linearGraph,
  linearParallelGraph,
  ort,
  runOne,
  softmaxGraph,
} from "./ort.js";

/** One of our builds: its kernels and the arena over its memory. */
export interface Ours {
  build: Build;
  /** The .wasm file it was loaded from. */
  file: string;
  k: KernelExports;
  arena: Arena;
}

export interface Ctx {
  ours: Ours[];
  peer: boolean;
  seed: number;
  wants(kernel: Kernel, shape: string): boolean;
  log(msg: string): void;
}

export type Kernel = "linear" | "linearF16" | "linearI8" | "layerNorm" | "softmax";
export type Unit = "GFLOP/s" | "GB/s";

export interface OursRun {
  build: Build;
  /** Run the kernel for call i (i picks the weight matrix when weights rotate). */
  run(i: number): void;
  /** A copy of the output of the last run. */
  output(): Float32Array;
}
export interface OursMissing {
  build: Build;
  missing: string;
}
export interface PeerRun {
  variant: string;
  /** Kernel calls one run makes (R side-by-side nodes, or an L-node chain); timings are divided by it. */
  opsPerRun: number;
  /** Run for call i; returns the output that `reference(i, ·)` (or this peer's own) checks. */
  run(i: number): Promise<Float32Array>;
  /** For graphs whose output is not one call's (a chain): their own check. */
  reference?(i: number, y: Float32Array): Check;
}

export interface CaseSpec {
  kernel: Kernel;
  shape: string;
  dims: Record<string, number>;
  unit: Unit;
  /** FLOPs (GFLOP/s) or bytes (GB/s) per call. */
  work: number;
  workNote: string;
  ours: (OursRun | OursMissing)[];
  peers: PeerRun[];
  /** Call indices whose outputs are checked (first and last weight matrix when they rotate). */
  checkCalls: number[];
  /** Check the output of call i against a float64 reference (on the rows the reference covers). */
  reference(i: number, y: Float32Array): Check;
  tol: Tolerance;
}

const MB = 1e6;
/** Weights at T = 1 rotate through at least this many distinct bytes, well past any cache. */
export const ROTATE_BYTES = 256 * 2 ** 20;
/**
 * A matrix this big streams from DRAM on its own (last-level caches are 32–96 MiB per CCD on
 * current x86 parts): the 154 MB LM head is not rotated.
 */
export const STREAMS_ALONE_BYTES = 128 * 2 ** 20;

const has = (k: KernelExports, name: string) => typeof k[name] === "function";
const missingKernel = (o: Ours, name: string): OursMissing => ({ build: o.build, missing: `no '${name}' export in ${o.file}` });

function oursRun(o: Ours, yPtr: number, yLen: number, run: (i: number) => void): OursRun {
  return { build: o.build, run, output: () => o.arena.f32(yPtr, yLen).slice() };
}

/** Release sessions and reset arenas whatever happens in between. */
class Scope {
  private readonly marks: [Arena, number][] = [];
  readonly sessions: ort.InferenceSession[] = [];
  constructor(ours: Ours[]) {
    for (const o of ours) this.marks.push([o.arena, o.arena.mark()]);
  }
  async session(model: Uint8Array): Promise<ort.InferenceSession> {
    const s = await createSession(model);
    this.sessions.push(s);
    return s;
  }
  async close(): Promise<void> {
    for (const s of this.sessions) await s.release();
    for (const [a, m] of this.marks) a.reset(m);
  }
}

// ---------------------------------------------------------------------------------------------
// linear: y (T, N) = x (T, K) · Wᵀ + b, W (N, K)

export interface LinearShape {
  what: string;
  K: number;
  N: number;
  bias: boolean;
  /** Also time T = 1 (decode: weights stream from DRAM). */
  decode: boolean;
}

export const LINEAR_SHAPES: LinearShape[] = [
  { what: "q/k/v/out_proj", K: 768, N: 768, bias: true, decode: false },
  { what: "fc1", K: 768, N: 3072, bias: true, decode: true },
  { what: "fc2", K: 3072, N: 768, bias: true, decode: true },
  { what: "lm_head (no bias)", K: 768, N: 50272, bias: false, decode: true },
];
export const PREFILL_T = 128;
/**
 * Small kernels are also timed as a chain of this many nodes in one graph: session.run's own cost
 * (~0.1 ms: copying inputs in and outputs out, a promise) then counts 1/CHAIN per kernel call.
 */
export const CHAIN = 16;

const LINEAR_TOL: Tolerance = { atol: 1e-4, rtol: 1e-4 };

export async function* linearGroup(ctx: Ctx, s: LinearShape): AsyncGenerator<CaseSpec> {
  const { K, N } = s;
  const wBytes = K * N * 4;
  const rotate = s.decode && wBytes < STREAMS_ALONE_BYTES ? Math.ceil(ROTATE_BYTES / wBytes) : 1;
  const prefillShape = `T=${PREFILL_T} ${K}→${N}`;
  const decodeShape =
    `T=1 ${K}→${N} ` + (rotate > 1 ? `×${rotate} (${Math.round((rotate * wBytes) / MB)} MB)` : `(${Math.round(wBytes / MB)} MB)`);
  const wantPrefill = ctx.wants("linear", prefillShape);
  const wantDecode = s.decode && ctx.wants("linear", decodeShape);
  if (!wantPrefill && !wantDecode) return;
  const R = wantDecode ? rotate : 1; // matrices to fill: prefill alone needs one

  const seed = ctx.seed * 7919 + K * 31 + N;
  const weights = (i: number) => randomF32(K * N, seed + 1000 + i, 1 / Math.sqrt(K));
  const x = randomF32(PREFILL_T * K, seed + 1);
  const b = s.bias ? randomF32(N, seed + 2, 0.5) : null;

  const scope = new Scope(ctx.ours);
  try {
    ctx.log(
      `linear ${K}→${N} (${s.what}): filling ${R} weight matri${R > 1 ? "ces" : "x"} (${Math.round((R * wBytes) / MB)} MB per contender)`,
    );
    const ready = ctx.ours.filter((o) => has(o.k, "linear"));
    const ptrs = new Map<Ours, { w: number[]; b: number; x: number; y: number }>();
    for (const o of ready) {
      o.arena.reserve(R * wBytes + (PREFILL_T * (K + N) + N) * 4 + 4096);
      ptrs.set(o, { w: [], b: b ? o.arena.put(b) : 0, x: o.arena.put(x), y: o.arena.alloc(PREFILL_T * N * 4) });
    }
    const variants: LinearVariant[] = ["Gemm", "MatMul+Add"];
    const sessions = new Map<LinearVariant, ort.InferenceSession[]>(variants.map((v) => [v, []]));
    const all: Float32Array[] = [];
    for (let i = 0; i < R; i++) {
      const w = weights(i);
      for (const o of ready) ptrs.get(o)!.w.push(o.arena.put(w));
      if (ctx.peer) for (const v of variants) sessions.get(v)!.push(await scope.session(linearGraph(v, w, b, K, N)));
      if (ctx.peer && R > 1 && wantDecode) all.push(w);
    }
    // One session holding every matrix, R Gemm nodes side by side (only when weights rotate).
    const parallel = all.length > 1 ? await scope.session(linearParallelGraph(all, b, K, N)) : null;
    all.length = 0;

    const spec = (T: number, matrices: number, shape: string, decode: boolean): CaseSpec => {
      const xT = f32Tensor(x.subarray(0, T * K), [T, K]);
      const rows = T === 1 ? [0] : [0, T - 1];
      return {
        kernel: "linear",
        shape,
        dims: { T, K, N, matrices },
        unit: decode ? "GB/s" : "GFLOP/s",
        work: decode ? wBytes : 2 * T * K * N,
        workNote: decode ? "weight bytes streamed per call" : "2·T·K·N FLOPs per call",
        ours: ctx.ours.map((o) => {
          const p = ptrs.get(o);
          if (!p) return missingKernel(o, "linear");
          return oursRun(o, p.y, T * N, (i) => o.k.linear(p.y, p.x, p.w[i % matrices], p.b, T, K, N, 0, N));
        }),
        peers: !ctx.peer
          ? []
          : [
              ...variants.map((v) => ({
                variant: v === "MatMul+Add" && !b ? "MatMul" : v,
                opsPerRun: 1,
                run: (i: number) => runOne(sessions.get(v)![i % matrices], { x: xT }),
              })),
              ...(parallel && matrices > 1
                ? [
                    {
                      variant: `Gemm ×${matrices} in 1 graph`,
                      opsPerRun: matrices,
                      run: (i: number) => runOne(parallel, { x: xT }, `y${i % matrices}`),
                    },
                  ]
                : []),
            ],
        checkCalls: matrices > 1 ? [0, matrices - 1] : [0],
        reference: (i, y) => compare(pickRows(y, N, rows), linearRef(x, weights(i % matrices), b, K, N, rows), LINEAR_TOL),
        tol: LINEAR_TOL,
      };
    };
    if (wantPrefill) yield spec(PREFILL_T, 1, prefillShape, false);
    if (wantDecode) yield spec(1, R, decodeShape, true);
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// linearF16 / linearI8: the lm_head's decode matvec (T = 1, 768 → 50272) on compressed weights,
// what the f16 and int8 models run per token: f16 expanded in the kernel; int8 with one scale per
// row and group of 64 inputs (the model's default), activations as 16-bit integers. No peer: ORT's
// WASM backend has no such MatMul, so the rate (weight bytes per second) is the figure. Checked
// against float64 on the dequantized weights (int8: its 16-bit activations allow a looser bound).

const GROUP = 64;

export async function* compressedLinearGroup(ctx: Ctx, kernel: "linearF16" | "linearI8"): AsyncGenerator<CaseSpec> {
  const K = 768,
    N = 50272;
  const esize = kernel === "linearF16" ? 2 : 1;
  const wBytes = K * N * esize + (kernel === "linearI8" ? N * (K / GROUP) * 4 : 0);
  const shape = `T=1 ${K}→${N} (${Math.round(wBytes / MB)} MB)`;
  if (!ctx.wants(kernel, shape)) return;
  const seed = ctx.seed * 7919 + (kernel === "linearF16" ? 16 : 8);
  const w = randomF32(K * N, seed, 1 / Math.sqrt(K));
  const x = randomF32(K, seed + 1);
  const tol: Tolerance = kernel === "linearF16" ? LINEAR_TOL : { atol: 2e-3, rtol: 2e-3 };
  const scope = new Scope(ctx.ours);
  try {
    ctx.log(`${kernel} ${K}→${N}: compressing the weights (${Math.round(wBytes / MB)} MB per contender)`);
    let deq: Float32Array | null = null; // the weights as the kernels see them, from the first build
    const ours = ctx.ours.map((o): OursRun | OursMissing => {
      if (!has(o.k, kernel)) return missingKernel(o, kernel);
      const a = o.arena;
      a.reserve(K * N * 4 + wBytes + (K + N + 16 * 3072) * 4 + 4096);
      const mark = a.mark();
      const src = a.put(w);
      const q = a.alloc(K * N * esize),
        sc = kernel === "linearI8" ? a.alloc(N * (K / GROUP) * 4) : 0;
      if (kernel === "linearF16") o.k.f32ToF16Rows(q, src, K * N);
      else o.k.quantizeI8(q, sc, src, N, K, GROUP);
      if (!deq) {
        deq = new Float32Array(K * N);
        if (kernel === "linearF16") {
          const h = a.u16(q, K * N);
          for (let i = 0; i < K * N; i++) deq[i] = f16ToF32(h[i]);
        } else {
          const qi = new Int8Array(a.u8(q, K * N).buffer, q, K * N),
            s8 = a.f32(sc, N * (K / GROUP));
          for (let i = 0; i < K * N; i++) deq[i] = qi[i] * s8[Math.floor(i / K) * (K / GROUP) + Math.floor((i % K) / GROUP)];
        }
      }
      a.reset(mark); // drop the f32 source: the compressed copy moves down to where it was
      const pq = a.alloc(K * N * esize),
        ps = kernel === "linearI8" ? a.alloc(N * (K / GROUP) * 4) : 0;
      a.u8(pq, K * N * esize).set(a.u8(q, K * N * esize));
      if (ps) a.u8(ps, N * (K / GROUP) * 4).set(a.u8(sc, N * (K / GROUP) * 4));
      const px = a.put(x),
        py = a.alloc(N * 4),
        scratch = a.alloc(16 * 3072 * 4);
      return oursRun(o, py, N, () =>
        kernel === "linearF16"
          ? o.k.linearF16(py, px, pq, 0, 1, K, N, 0, N, 0)
          : o.k.linearI8(py, px, pq, ps, 0, 1, K, N, 0, N, GROUP, scratch),
      );
    });
    const ref = deq ? linearRef(x, deq, null, K, N, [0]) : null;
    yield {
      kernel,
      shape,
      dims: { T: 1, K, N, matrices: 1 },
      unit: "GB/s",
      work: wBytes,
      workNote: "weight bytes streamed per call (int8: with the scales)",
      ours,
      peers: [],
      checkCalls: [0],
      reference: (_i, y) => compare(y, ref!, tol),
      tol,
    };
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// layerNorm: y (T, C) = (x - mean) / sqrt(var + eps) · w + b, per row

const LN_TOL: Tolerance = { atol: 1e-4, rtol: 1e-4 };

export async function* layerNormGroup(ctx: Ctx): AsyncGenerator<CaseSpec> {
  const T = PREFILL_T,
    C = 768,
    eps = 1e-5;
  const shape = `T=${T} C=${C}`;
  if (!ctx.wants("layerNorm", shape)) return;
  const seed = ctx.seed * 7919 + 11;
  // A non-zero mean and a spread like a residual stream's, so centring matters.
  const x = randomF32(T * C, seed, 2, 0.5);
  const w = randomF32(C, seed + 1, 0.2, 1);
  const b = randomF32(C, seed + 2, 0.1);
  const scope = new Scope(ctx.ours);
  try {
    const session = ctx.peer ? await scope.session(layerNormGraph(w, b, C, eps)) : null;
    const chain = ctx.peer ? await scope.session(layerNormGraph(w, b, C, eps, CHAIN)) : null;
    const xT = f32Tensor(x, [T, C]);
    yield {
      kernel: "layerNorm",
      shape,
      dims: { T, C },
      unit: "GB/s",
      work: (2 * T * C + 2 * C) * 4,
      workNote: "bytes read + written per call (x, y, w, b)",
      ours: ctx.ours.map((o) => {
        if (!has(o.k, "layerNorm")) return missingKernel(o, "layerNorm");
        const px = o.arena.put(x),
          pw = o.arena.put(w),
          pb = o.arena.put(b),
          py = o.arena.alloc(T * C * 4);
        return oursRun(o, py, T * C, () => o.k.layerNorm(py, px, pw, pb, T, C, eps));
      }),
      peers:
        session && chain
          ? [
              { variant: "LayerNormalization", opsPerRun: 1, run: () => runOne(session, { x: xT }) },
              {
                variant: `LayerNormalization ×${CHAIN} chained`,
                opsPerRun: CHAIN,
                run: () => runOne(chain, { x: xT }),
                reference: (_i, y) =>
                  compare(
                    y,
                    repeat(CHAIN, x as ArrayLike<number>, (v) => layerNormRef(v, w, b, T, C, eps)),
                    LN_TOL,
                  ),
              },
            ]
          : [],
      checkCalls: [0],
      reference: (_i, y) => compare(y, layerNormRef(x, w, b, T, C, eps), LN_TOL),
      tol: LN_TOL,
    };
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// softmax: y[r, :] = exp(x[r, :] - max) / Σ exp(x[r, :] - max), no mask

export const SOFTMAX_SHAPES = [
  { what: "attention probs, 12 heads × T=128", rows: 12 * PREFILL_T, cols: PREFILL_T },
  { what: "vocab distribution", rows: 1, cols: 50272 },
];

export async function* softmaxGroup(ctx: Ctx, s: (typeof SOFTMAX_SHAPES)[number]): AsyncGenerator<CaseSpec> {
  const { rows, cols } = s;
  const shape = `${rows}×${cols}`;
  if (!ctx.wants("softmax", shape)) return;
  // Probabilities go down to ~1e-7 on the long row: the absolute part of the tolerance scales with 1/cols.
  const tol: Tolerance = { atol: 1e-3 / cols, rtol: 2e-4 };
  const x = randomF32(rows * cols, ctx.seed * 7919 + rows + cols, 4);
  const scope = new Scope(ctx.ours);
  try {
    const session = ctx.peer ? await scope.session(softmaxGraph(cols)) : null;
    const chain = ctx.peer ? await scope.session(softmaxGraph(cols, CHAIN)) : null;
    const xT = f32Tensor(x, [rows, cols]);
    yield {
      kernel: "softmax",
      shape,
      dims: { rows, cols },
      unit: "GB/s",
      work: 2 * rows * cols * 4,
      workNote: "bytes read + written per call (x, y)",
      ours: ctx.ours.map((o) => {
        if (!has(o.k, "softmax")) return missingKernel(o, "softmax");
        const px = o.arena.put(x),
          py = o.arena.alloc(rows * cols * 4);
        return oursRun(o, py, rows * cols, () => o.k.softmax(py, px, 0, rows, cols));
      }),
      peers:
        session && chain
          ? [
              { variant: "Softmax", opsPerRun: 1, run: () => runOne(session, { x: xT }) },
              {
                variant: `Softmax ×${CHAIN} chained`,
                opsPerRun: CHAIN,
                run: () => runOne(chain, { x: xT }),
                reference: (_i, y) =>
                  compare(
                    y,
                    repeat(CHAIN, x as ArrayLike<number>, (v) => softmaxRef(v, rows, cols)),
                    tol,
                  ),
              },
            ]
          : [],
      checkCalls: [0],
      reference: (_i, y) => compare(y, softmaxRef(x, rows, cols), tol),
      tol,
    };
  } finally {
    await scope.close();
  }
}

/** Every case of the suite, in order, each group set up only while its cases run. */
export async function* allCases(ctx: Ctx): AsyncGenerator<CaseSpec> {
  for (const s of LINEAR_SHAPES) yield* linearGroup(ctx, s);
  yield* compressedLinearGroup(ctx, "linearF16");
  yield* compressedLinearGroup(ctx, "linearI8");
  yield* layerNormGroup(ctx);
  for (const s of SOFTMAX_SHAPES) yield* softmaxGroup(ctx, s);
}
