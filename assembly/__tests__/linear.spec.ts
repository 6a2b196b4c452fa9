// linear vs linearScalar: awkward sizes, unaligned rows, bias / no bias, [n0, n1) sub-ranges and the
// OPT-125M shapes (C = 768, FFN = 3072, vocab = 50272).
//
// Tolerance: both sides sum K products in f32, in different orders. With products of rms σ, a
// sequential f32 sum drifts by ~0.2·ε·K·σ (random-walk rounding of partial sums that grow like
// σ·√k); the max over ~10^5 outputs is several times that. So atol = LIN_C·ε·√K·rms(y), with
// rms(y) = σ·√K, and LIN_C = 4: the worst measured difference is 0.43 of it (K = 768, T = 128).
// A single dropped product (|x·w| ~ σ) is ~10^3x larger than atol at K = 768.
import { linear, linearScalar } from "../kernels/linear";
import {
  f32ToF16Rows, linearF16, linearF16Scalar, linearI8, linearI8Scalar, matvecI8A16, matvecI8A16Scalar, quantizeActI16, quantizeActI16Scalar, quantizeI8, quantRows,
} from "../kernels/linear_quant";
import { allocBytes, allocF32, expectAll, expectClose, expectEqual, fillConst, fillUniform, freeAll, EPS, Rng } from "./helpers";

const LIN_C: f32 = 4;
const SENTINEL: f32 = 12345.5;

/** Runs both kernels on the same random problem and compares y (and the untouched columns). */
function check(T: i32, K: i32, N: i32, n0: i32, n1: i32, bias: bool, misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const x = allocF32(T * K, misalign);
  const w = allocF32(N * K, misalign);
  const b = bias ? allocF32(N, misalign) : 0;
  const y = allocF32(T * N, misalign);
  const yRef = allocF32(T * N, misalign);
  fillUniform(x, T * K, rng, -1, 1);
  fillUniform(w, N * K, rng, -1, 1);
  if (bias) fillUniform(b, N, rng, -1, 1);
  fillConst(y, T * N, SENTINEL);
  fillConst(yRef, T * N, SENTINEL);
  linear(y, x, w, b, T, K, N, n0, n1);
  linearScalar(yRef, x, w, b, T, K, N, n0, n1);
  const sigma: f32 = 1.0 / 3.0; // rms of a product of two U(-1, 1)
  const rmsY = sigma * Mathf.sqrt(<f32>K);
  const atol = LIN_C * EPS * Mathf.sqrt(<f32>K) * rmsY + EPS;
  const name = "linear T=" + T.toString() + " K=" + K.toString() + " N=" + N.toString() + " [" + n0.toString() +
    "," + n1.toString() + ")" + (bias ? " bias" : "") + (misalign ? " unaligned" : "");
  expectClose(name, y, yRef, T * N, atol, 1e-6);
  // Columns outside [n0, n1) must be untouched.
  for (let t = 0; t < T; t++) {
    const row = y + (<usize>t * <usize>N << 2);
    expectAll(name + " cols < n0", row, n0, SENTINEL);
    expectAll(name + " cols >= n1", row + (<usize>n1 << 2), N - n1, SENTINEL);
  }
  freeAll();
}

describe("linear, awkward sizes", () => {
  it("matvec (T = 1) on every small K, N", () => {
    const Ks: i32[] = [1, 3, 4, 5, 7, 8, 17, 33];
    const Ns: i32[] = [1, 2, 3, 4, 5, 7, 9, 17];
    let seed: u32 = 1;
    for (let i = 0; i < Ks.length; i++) {
      for (let j = 0; j < Ns.length; j++) {
        check(1, Ks[i], Ns[j], 0, Ns[j], (i + j) % 2 == 0, (i + j) % 4, seed++);
      }
    }
  });
  it("GEMM (T > 1) on every small T, K, N", () => {
    const Ts: i32[] = [2, 3, 5, 7];
    const Ks: i32[] = [1, 3, 5, 7, 17, 33];
    const Ns: i32[] = [1, 3, 5, 7, 17];
    let seed: u32 = 100;
    for (let a = 0; a < Ts.length; a++) {
      for (let i = 0; i < Ks.length; i++) {
        for (let j = 0; j < Ns.length; j++) {
          check(Ts[a], Ks[i], Ns[j], 0, Ns[j], (a + i + j) % 2 == 1, (a + i + j) % 4, seed++);
        }
      }
    }
  });
  it("output-column sub-ranges [n0, n1)", () => {
    check(1, 17, 33, 5, 22, true, 1, 7);
    check(1, 64, 50, 0, 13, false, 0, 8);
    check(1, 33, 40, 39, 40, true, 3, 9);
    check(6, 17, 33, 5, 22, true, 1, 10);
    check(9, 40, 41, 1, 40, false, 2, 11);
    check(3, 5, 9, 8, 9, true, 0, 12);
    check(3, 5, 9, 4, 4, true, 0, 13); // empty range writes nothing
  });
  it("T spanning several token blocks", () => {
    check(300, 9, 6, 0, 6, true, 1, 14);
  });
});

describe("linear, OPT-125M shapes", () => {
  it("T = 128: 768 -> 3072 (fc1), 3072 -> 768 (fc2), 768 -> 768 (q/k/v/out)", () => {
    check(128, 768, 3072, 0, 3072, true, 0, 21);
    check(128, 3072, 768, 0, 768, true, 0, 22);
    check(128, 768, 768, 0, 768, true, 1, 23);
  });
  it("T = 1: 768 -> 3072, 3072 -> 768, 768 -> 768", () => {
    check(1, 768, 3072, 0, 3072, true, 0, 31);
    check(1, 3072, 768, 0, 768, true, 0, 32);
    check(1, 768, 768, 0, 768, false, 1, 33);
  });
  it("LM head 768 -> 50272: T = 1 in full, T = 128 on column slices", () => {
    check(1, 768, 50272, 0, 50272, false, 0, 41);
    check(128, 768, 50272, 50272 - 37, 50272, false, 0, 42);
    check(128, 768, 50272, 25131, 25200, false, 0, 43);
  });
  it("thread split: two [n0, n1) halves equal one call", () => {
    const T = 7, K = 768, N = 3072 + 5;
    const rng = new Rng(51);
    const x = allocF32(T * K), w = allocF32(N * K), b = allocF32(N);
    const y1 = allocF32(T * N), y2 = allocF32(T * N);
    fillUniform(x, T * K, rng, -1, 1);
    fillUniform(w, N * K, rng, -1, 1);
    fillUniform(b, N, rng, -1, 1);
    linear(y1, x, w, b, T, K, N, 0, N);
    linear(y2, x, w, b, T, K, N, 0, 1541);
    linear(y2, x, w, b, T, K, N, 1541, N);
    // Same tiles, same order within a tile: identical except where a tile boundary moved.
    const atol = LIN_C * EPS * <f32>K / 3.0;
    expectClose("split GEMM", y2, y1, T * N, atol, 1e-6);
    linear(y1, x, w, b, 1, K, N, 0, N);
    linear(y2, x, w, b, 1, K, N, 0, 1541);
    linear(y2, x, w, b, 1, K, N, 1541, N);
    expectClose("split matvec", y2, y1, N, atol, 1e-6);
    freeAll();
  });
});

describe("small batches (decode of T rows), awkward K, N", () => {
  it("linear: T in 2, 3, 4, 5, 8, 16", () => {
    const Ts: i32[] = [2, 3, 4, 5, 8, 16];
    const Ks: i32[] = [1, 7, 33, 100];
    const Ns: i32[] = [1, 5, 9, 19];
    let seed: u32 = 600;
    for (let a = 0; a < Ts.length; a++) {
      for (let i = 0; i < Ks.length; i++) {
        for (let j = 0; j < Ns.length; j++) check(Ts[a], Ks[i], Ns[j], 0, Ns[j], (a + i + j) % 2 == 0, (a + i + j) % 4, seed++);
      }
    }
  });
  it("quantizeActI16 = its twin bit for bit: K 1, 3, 7, 8, 9, 33, 768, 3072, and x = 0", () => {
    const Ks: i32[] = [1, 3, 7, 8, 9, 33, 768, 3072];
    for (let i = 0; i < Ks.length; i++) {
      const K = Ks[i];
      const rng = new Rng(<u32>(950 + i));
      const x = allocF32(K, i % 4);
      fillUniform(x, K, rng, -3, 3);
      const xq = allocBytes(2 * K), xs = allocF32(1), xq2 = allocBytes(2 * K), xs2 = allocF32(1);
      for (let zero = 0; zero < 2; zero++) {
        if (zero) fillConst(x, K, 0);
        quantizeActI16(xq, xs, x, K);
        quantizeActI16Scalar(xq2, xs2, x, K);
        const name = "quantizeActI16 K=" + K.toString() + (zero ? " x=0" : "");
        expectEqual(name + " scale", xs, xs2, 1);
        let at = -1;
        for (let k = 0; k < K; k++) if (load<i16>(xq + (<usize>k << 1)) != load<i16>(xq2 + (<usize>k << 1))) { at = k; break; }
        expect<i32>(at).toBe(-1, name + ": first differing int16 at " + at.toString());
      }
      freeAll();
    }
  });
  it("matvecI8A16 vs its twin; = linearI8 at T = 1; pieces [n0, n1) = one call (K 48, 208, 768, 3072)", () => {
    const Ks: i32[] = [48, 208, 768, 3072, 768];
    const Gs: i32[] = [16, 208, 64, 64, 768];
    const Ns: i32[] = [1, 3, 17, 21, 64];
    let seed: u32 = 900;
    for (let i = 0; i < Ks.length; i++) {
      for (let j = 0; j < Ns.length; j++) checkI8A16(Ks[i], Ns[j], Gs[i], (i + j) % 2 == 1, seed++);
    }
  });
  it("linearF16 at T = 1 (matvecF16) vs its twin; x·2^16 (the unfolded loop) = x (the folded one)·2^16 bit for bit; pieces = one call", () => {
    const Ks: i32[] = [1, 5, 8, 13, 64, 771, 768];
    const Ns: i32[] = [1, 3, 17, 21];
    let seed: u32 = 1200;
    for (let i = 0; i < Ks.length; i++) {
      for (let j = 0; j < Ns.length; j++) checkF16Matvec(Ks[i], Ns[j], (i + j) % 2 == 1, (i + j) % 4, seed++);
    }
  });
  it("linearI8 vs linearI8Scalar: T in 2, 3, 4, 5, 8, 16, groups of 16, 8, 5 and K", () => {
    const Ts: i32[] = [2, 3, 4, 5, 8, 16];
    // K, G pairs: multiples of 16 (the SIMD group loop), ragged groups, one group per row.
    const Ks: i32[] = [48, 80, 40, 35, 208];
    const Gs: i32[] = [16, 16, 8, 5, 208];
    const Ns: i32[] = [1, 3, 17, 21];
    let seed: u32 = 700;
    for (let a = 0; a < Ts.length; a++) {
      for (let i = 0; i < Ks.length; i++) {
        for (let j = 0; j < Ns.length; j++) checkI8(Ts[a], Ks[i], Ns[j], Gs[i], (a + i + j) % 2 == 1, (a + i + j) % 4, seed++);
      }
    }
  });
});

/**
 * linearI8 vs its scalar twin. Both sum K products of x·q·s in f32 (the SIMD side on s·q expanded
 * to f32, the twin per group then times s): LIN_C·ε·√K·rms(y) as for linear, rms(y) = σ·√K with
 * σ = rms(x)·rms(q·s) ≈ (1/√3)·(127/√3)·(1/127) = 1/3 for U(-1, 1) weights.
 */
function checkI8(T: i32, K: i32, N: i32, G: i32, bias: bool, misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const x = allocF32(T * K, misalign), w = allocF32(N * K, misalign);
  const b = bias ? allocF32(N, misalign) : 0;
  const y = allocF32(T * N, misalign), yRef = allocF32(T * N, misalign);
  const q = allocBytes(N * K), s = allocF32(N * (K / G));
  const scratch = allocF32(quantRows() * K);
  fillUniform(x, T * K, rng, -1, 1);
  fillUniform(w, N * K, rng, -1, 1);
  if (bias) fillUniform(b, N, rng, -1, 1);
  quantizeI8(q, s, w, N, K, G);
  fillConst(y, T * N, SENTINEL);
  fillConst(yRef, T * N, SENTINEL);
  const n0 = N > 2 ? 1 : 0; // a sub-range: column 0 must stay untouched when N > 2
  linearI8(y, x, q, s, b, T, K, N, n0, N, G, scratch);
  linearI8Scalar(yRef, x, q, s, b, T, K, N, n0, N, G, scratch);
  const rmsY: f32 = Mathf.sqrt(<f32>K) / 3.0;
  const atol = LIN_C * EPS * Mathf.sqrt(<f32>K) * rmsY + EPS;
  const name = "linearI8 T=" + T.toString() + " K=" + K.toString() + " N=" + N.toString() + " G=" + G.toString() +
    (bias ? " bias" : "") + (misalign ? " unaligned" : "");
  expectClose(name, y, yRef, T * N, atol, 1e-6);
  for (let t = 0; t < T; t++) expectAll(name + " cols < n0", y + (<usize>t * <usize>N << 2), n0, SENTINEL);
  freeAll();
}

/**
 * matvecI8A16 on quantizeActI16's activations: against its twin (both exact integer sums per group;
 * f32 rounding only where groups meet their scales, so the LIN_C bound over the groups is loose),
 * bit for bit against linearI8 with a scratch (the same two steps inside), and cut into pieces at
 * awkward row boundaries (the rows' streams change, not their sums).
 */
function checkI8A16(K: i32, N: i32, G: i32, bias: bool, seed: u32): void {
  const rng = new Rng(seed);
  const x = allocF32(K), w = allocF32(N * K), b = bias ? allocF32(N) : 0;
  const q = allocBytes(N * K), s = allocF32(N * (K / G));
  const xq = allocBytes(2 * K), xs = allocF32(1), scratch = allocF32(quantRows() * K);
  const y = allocF32(N), yRef = allocF32(N), yI8 = allocF32(N), yCut = allocF32(N);
  fillUniform(x, K, rng, -1, 1);
  fillUniform(w, N * K, rng, -1, 1);
  if (bias) fillUniform(b, N, rng, -1, 1);
  quantizeI8(q, s, w, N, K, G);
  quantizeActI16(xq, xs, x, K);
  fillConst(y, N, SENTINEL);
  const n0 = N > 2 ? 1 : 0;
  matvecI8A16(y, xq, xs, q, s, b, K, n0, N, G);
  fillConst(yRef, N, SENTINEL);
  matvecI8A16Scalar(yRef, xq, xs, q, s, b, K, n0, N, G);
  const name = "matvecI8A16 K=" + K.toString() + " N=" + N.toString() + " G=" + G.toString() + (bias ? " bias" : "");
  const rmsY: f32 = Mathf.sqrt(<f32>K) / 3.0;
  expectClose(name, y, yRef, N, LIN_C * EPS * Mathf.sqrt(<f32>(K / G)) * rmsY + EPS, 1e-6);
  expectAll(name + " cols < n0", y, n0, SENTINEL);
  fillConst(yI8, N, SENTINEL);
  linearI8(yI8, x, q, s, b, 1, K, N, n0, N, G, scratch);
  expectEqual(name + " = linearI8", y, yI8, N);
  fillConst(yCut, N, SENTINEL);
  for (let a = n0; a < N; a += 5) matvecI8A16(yCut, xq, xs, q, s, b, K, a, min(N, a + 5), G);
  expectEqual(name + " in pieces of 5 rows", y, yCut, N);
  freeAll();
}

/**
 * linearF16 at T = 1 (matvecF16): against its scalar twin (LIN_C bound as for linear; weights are
 * U(-1, 1) rounded to halves, every 7th a half subnormal, every 11th near ±60000 — the widening's
 * edge cases); x scaled by 2^16 (max|x| ≥ 2^15: the loop that multiplies each weight by 2^112)
 * gives exactly 2^16 times the result of x (the loop with 2^112 folded into x) — products and sums
 * scale by a power of two without rounding differently, so any difference between the two loops
 * shows; rows cut into pieces of 5 equal one call.
 */
function checkF16Matvec(K: i32, N: i32, bias: bool, misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const x = allocF32(K, misalign), xBig = allocF32(K, misalign), w = allocF32(N * K);
  const b = bias ? allocF32(N) : 0, bBig = bias ? allocF32(N) : 0;
  const h = allocBytes(2 * N * K);
  const y = allocF32(N, misalign), yRef = allocF32(N), yBig = allocF32(N), yScaled = allocF32(N), yCut = allocF32(N);
  fillUniform(x, K, rng, -1, 1);
  fillUniform(w, N * K, rng, -1, 1);
  for (let i = 0; i < N * K; i++) {
    const p = w + (<usize>i << 2);
    if (i % 7 == 3) store<f32>(p, load<f32>(p) * 3e-5); // |v| < 2^-14: a subnormal half
    else if (i % 11 == 5) store<f32>(p, load<f32>(p) * 60000);
  }
  f32ToF16Rows(h, w, N * K);
  if (bias) fillUniform(b, N, rng, -1, 1);
  const n0 = N > 2 ? 1 : 0;
  const name = "linearF16 T=1 K=" + K.toString() + " N=" + N.toString() + (bias ? " bias" : "") + (misalign ? " unaligned" : "");
  fillConst(y, N, SENTINEL);
  linearF16(y, x, h, b, 1, K, N, n0, N, 0);
  fillConst(yRef, N, SENTINEL);
  linearF16Scalar(yRef, x, h, b, 1, K, N, n0, N, 0);
  // rms(y): σ·√K with σ² = E[x²]·E[v²], v mostly U(-1, 1) plus 1/11 of them ~U(-60000, 60000).
  const rmsY: f32 = Mathf.sqrt(<f32>K * (1.0 / 3.0) * (1.0 / 3.0 + 60000.0 * 60000.0 / 33.0));
  expectClose(name, y, yRef, N, LIN_C * EPS * Mathf.sqrt(<f32>K) * rmsY + EPS, 1e-6);
  expectAll(name + " cols < n0", y, n0, SENTINEL);
  const S: f32 = 65536;
  for (let k = 0; k < K; k++) store<f32>(xBig + (<usize>k << 2), load<f32>(x + (<usize>k << 2)) * S);
  if (bias) for (let o = 0; o < N; o++) store<f32>(bBig + (<usize>o << 2), load<f32>(b + (<usize>o << 2)) * S);
  fillConst(yBig, N, SENTINEL);
  linearF16(yBig, xBig, h, bBig, 1, K, N, n0, N, 0);
  fillConst(yScaled, N, SENTINEL);
  for (let o = n0; o < N; o++) store<f32>(yScaled + (<usize>o << 2), load<f32>(y + (<usize>o << 2)) * S);
  expectEqual(name + " x·2^16 = 2^16·(x)", yBig, yScaled, N);
  fillConst(yCut, N, SENTINEL);
  for (let a = n0; a < N; a += 5) linearF16(yCut, x, h, b, 1, K, N, a, min(N, a + 5), 0);
  expectEqual(name + " in pieces of 5 rows", y, yCut, N);
  freeAll();
}
