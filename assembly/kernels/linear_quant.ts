// Linear layers on compressed weights, PyTorch nn.Linear layout (N, K):
//   linearF16(y, x, w, b, T, K, N, n0, n1, scratch)
//       y[t, o] = Σ_k x[t, k]·f32(w[o, k]) + b[o]           w: (N, K) IEEE half floats
//   linearI8(y, x, q, s, b, T, K, N, n0, n1, G, scratch)
//       y[t, o] = Σ_g s[o, g] · Σ_{k in group g} x[t, k]·q[o, k] + b[o]
//                                                          q: (N, K) int8, s: (N, K/G) f32 scales,
//                                                          groups of G consecutive k (G = K: one scale per row)
//   x: (T, K) f32, b: (N) or 0, y: (T, N); only columns [n0, n1) written (threads split by rows).
//   quantizeActI16(xq, xs, x, K) + matvecI8A16(y, xq, xs, q, s, b, K, n0, n1, G)
//       linearI8 at T = 1 in two steps: x quantized once to int16 (one scale), then rows [n0, n1)
//       from it — threads splitting one matvec share the first step instead of each repeating it.
// Variants:
//   T = 1   matvec straight from the compressed rows, 4 long streams as in linear's matvec: decoding
//           is memory-bound, so half (f16) or a quarter (int8) of the bytes is the point. int8 with
//           a scratch and groups of 16k: x in int16 and integer dot products (matvecI8A16).
//   T > 1   rows are expanded ROWS at a time into `scratch` (ROWS·K f32 per thread, caller-provided)
//           and multiplied by linear's f32 GEMM: the expansion is paid once per row, not per token.
//   linearF16Scalar / linearI8Scalar: plain loops, the references.
// Half-float expansion: bits (h & 0x7fff) << 13 read as f32 and multiplied by 2^112 give the value
// for normal and subnormal halves alike, and the product keeps the sign bit (see halfToF32).
// Weights are finite.

import { f32ToHalfBits, halfScalar, halfToF32, hsum, madd, storeRows4, TWO_112 } from "./vecmath";
import { linear } from "./linear";

/** Rows expanded per GEMM chunk: 16 rows · 3072 · 4 bytes = 192 KB, stays in L2. */
export const QUANT_ROWS: i32 = 16;

// ---- f16 -------------------------------------------------------------------------------------

export function linearF16(y: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, scratch: usize): void {
  if (T <= 0 || n0 >= n1) return;
  if (T == 1) {
    matvecF16(y, x, w, b, K, n0, n1);
    return;
  }
  const K2 = <usize>K << 1;
  const K4 = <usize>K << 2;
  for (let o = n0; o < n1; o += QUANT_ROWS) {
    const rows = min(QUANT_ROWS, n1 - o);
    expandF16(scratch, w + <usize>o * K2, rows * K);
    // linear reads row r at w' + r·K·4: shift the base so rows [o, o+rows) land on scratch.
    linear(y, x, scratch - <usize>o * K4, b, T, K, N, o, o + rows);
  }
}

function expandF16(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), halfToF32(i32x4.extend_low_i16x8_s(h)));
    v128.store(dst + (<usize>i << 2), halfToF32(i32x4.extend_high_i16x8_s(h)), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), halfScalar(load<u16>(src + (<usize>i << 1))));
}

/** Dot product of f32 x with one half-float row, 8 at a time. */
@inline function dotF16Tail(x: usize, pw: usize, k0: i32, K: i32): f32 {
  let s: f32 = 0;
  for (let k = k0; k < K; k++) s += load<f32>(x + (<usize>k << 2)) * halfScalar(load<u16>(pw + (<usize>k << 1)));
  return s;
}

/**
 * T = 1. Four long row streams, 8 halves per row a step, widened as in halfToF32 minus its multiply
 * by 2^112, which moves onto x (once per 8 inputs, shared by the 4 rows) as in attention.ts:
 * (x·2^112)·(h·2^-112) is x·h exactly, so each FMA rounds as before and the result is bit for bit
 * the multiply-per-weight loop's. x·2^112 overflows from |x| ≥ 2^16: an x with max|x| ≥ 2^15 takes
 * that loop (Unfolded). Measured (same run, 768→50272, the f16 lm_head, from DRAM): relaxed
 * 9.7 → 11.2 GB/s, simd 8.1 → 9.4. Lost: the halves sign-extended by the load (v128.load16x4_s)
 * instead of one load and two extends, 2 % slower.
 */
function matvecF16(y: usize, x: usize, w: usize, b: usize, K: i32, n0: i32, n1: i32): void {
  if (maxAbsF32(x, K) < 32768) matvecF16Rows<Folded>(y, x, w, b, K, n0, n1);
  else matvecF16Rows<Unfolded>(y, x, w, b, K, n0, n1);
}

/** max |x[k]| over K floats. */
function maxAbsF32(x: usize, K: i32): f32 {
  let v = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= K; k += 4) v = f32x4.max(v, f32x4.abs(v128.load(x + (<usize>k << 2))));
  let m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  for (; k < K; k++) m = max(m, abs(load<f32>(x + (<usize>k << 2))));
  return m;
}

/** Sign-extended halves (i32 lanes) as f32: their values (fold false) or their values · 2^-112 (fold true: x carries 2^112). */
@inline function halves(h: v128, fold: bool): v128 {
  const bits = v128.and(i32x4.shl(h, 13), i32x4.splat(0x8fffffff));
  return fold ? bits : f32x4.mul(bits, f32x4.splat(TWO_112));
}

/** matvecF16Rows' compile-time switch (a bool argument of an inlined function stayed a runtime select). */
class Folded {}
class Unfolded {}

function matvecF16Rows<F>(y: usize, x: usize, w: usize, b: usize, K: i32, n0: i32, n1: i32): void {
  const fold = idof<F>() == idof<Folded>();
  const K2 = <usize>K << 1;
  const k8 = K & ~7;
  const q = (n1 - n0) >> 2;
  const qBytes = <usize>q * K2;
  const vf = f32x4.splat(fold ? TWO_112 : 1);
  for (let i = 0; i < q; i++) {
    const o = n0 + i;
    const pw0 = w + <usize>o * K2;
    const pw1 = pw0 + qBytes, pw2 = pw1 + qBytes, pw3 = pw2 + qBytes;
    let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
    for (let k = 0; k < k8; k += 8) {
      let xa = v128.load(x + (<usize>k << 2));
      let xb = v128.load(x + (<usize>k << 2), 16);
      if (fold) {
        xa = f32x4.mul(xa, vf);
        xb = f32x4.mul(xb, vf);
      }
      const kk = <usize>k << 1;
      let h = v128.load(pw0 + kk);
      c0 = madd(xa, halves(i32x4.extend_low_i16x8_s(h), fold), c0);
      c0 = madd(xb, halves(i32x4.extend_high_i16x8_s(h), fold), c0);
      h = v128.load(pw1 + kk);
      c1 = madd(xa, halves(i32x4.extend_low_i16x8_s(h), fold), c1);
      c1 = madd(xb, halves(i32x4.extend_high_i16x8_s(h), fold), c1);
      h = v128.load(pw2 + kk);
      c2 = madd(xa, halves(i32x4.extend_low_i16x8_s(h), fold), c2);
      c2 = madd(xb, halves(i32x4.extend_high_i16x8_s(h), fold), c2);
      h = v128.load(pw3 + kk);
      c3 = madd(xa, halves(i32x4.extend_low_i16x8_s(h), fold), c3);
      c3 = madd(xb, halves(i32x4.extend_high_i16x8_s(h), fold), c3);
    }
    let s0 = hsum(c0) + dotF16Tail(x, pw0, k8, K), s1 = hsum(c1) + dotF16Tail(x, pw1, k8, K);
    let s2 = hsum(c2) + dotF16Tail(x, pw2, k8, K), s3 = hsum(c3) + dotF16Tail(x, pw3, k8, K);
    storeRows4(y, b, o, q, s0, s1, s2, s3);
  }
  for (let o = n0 + 4 * q; o < n1; o++) {
    const pw = w + <usize>o * K2;
    let c = f32x4.splat(0);
    for (let k = 0; k < k8; k += 8) {
      let xa = v128.load(x + (<usize>k << 2));
      let xb = v128.load(x + (<usize>k << 2), 16);
      if (fold) {
        xa = f32x4.mul(xa, vf);
        xb = f32x4.mul(xb, vf);
      }
      const h = v128.load(pw + (<usize>k << 1));
      c = madd(xa, halves(i32x4.extend_low_i16x8_s(h), fold), c);
      c = madd(xb, halves(i32x4.extend_high_i16x8_s(h), fold), c);
    }
    let s = hsum(c) + dotF16Tail(x, pw, k8, K);
    if (b) s += load<f32>(b + (<usize>o << 2));
    store<f32>(y + (<usize>o << 2), s);
  }
}

export function linearF16Scalar(y: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, scratch: usize): void {
  for (let t = 0; t < T; t++) {
    for (let o = n0; o < n1; o++) {
      let s: f32 = 0;
      for (let k = 0; k < K; k++) {
        s += load<f32>(x + ((<usize>t * <usize>K + <usize>k) << 2)) * halfScalar(load<u16>(w + ((<usize>o * <usize>K + <usize>k) << 1)));
      }
      if (b) s += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), s);
    }
  }
}

/** f32 → f16 bits of n values (round to nearest even), for packing weights at load. */
export function f32ToF16Rows(dst: usize, src: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const f = load<f32>(src + (<usize>i << 2));
    store<u16>(dst + (<usize>i << 1), f32ToHalfBits(f));
  }
}

// ---- int8 ------------------------------------------------------------------------------------

/**
 * Quantize n rows of K f32 weights: per row and group of G, scale = max|w| / 127 and
 * q = round(w / scale). Done at load time, in wasm, so no second copy of the weights exists in JS.
 */
export function quantizeI8(q: usize, s: usize, w: usize, n: i32, K: i32, G: i32): void {
  const groups = K / G;
  for (let o = 0; o < n; o++) {
    for (let g = 0; g < groups; g++) {
      const base = <usize>o * <usize>K + <usize>(g * G);
      let m: f32 = 0;
      for (let k = 0; k < G; k++) m = max(m, abs(load<f32>(w + ((base + <usize>k) << 2))));
      const scale: f32 = m > 0 ? m / 127 : 1;
      const inv: f32 = 1 / scale;
      store<f32>(s + ((<usize>o * <usize>groups + <usize>g) << 2), m > 0 ? scale : 0);
      for (let k = 0; k < G; k++) {
        const v = nearest(load<f32>(w + ((base + <usize>k) << 2)) * inv);
        store<i8>(q + base + <usize>k, <i8>max<f32>(-127, min<f32>(127, v)));
      }
    }
  }
}

export function linearI8(y: usize, x: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32, scratch: usize): void {
  if (T <= 0 || n0 >= n1) return;
  if (T == 1) {
    if (scratch != 0 && (G & 15) == 0 && G <= 2048) {
      const xs = scratch + ((<usize>K * 2 + 3) & ~(<usize>3)); // after the K int16, 4-aligned
      quantizeActI16(scratch, xs, x, K);
      matvecI8A16(y, scratch, xs, q, s, b, K, n0, n1, G);
    } else matvecI8(y, x, q, s, b, K, n0, n1, G);
    return;
  }
  const K4 = <usize>K << 2;
  const groups = K / G;
  for (let o = n0; o < n1; o += QUANT_ROWS) {
    const rows = min(QUANT_ROWS, n1 - o);
    for (let r = 0; r < rows; r++) {
      expandI8Row(scratch + <usize>r * K4, q + <usize>(o + r) * <usize>K, s + (<usize>(o + r) * <usize>groups << 2), K, G);
    }
    linear(y, x, scratch - <usize>o * K4, b, T, K, N, o, o + rows);
  }
}

/** 16 int8 at p as four f32x4 vectors. */
@inline function i8x16ToF32(v: v128, part: i32): v128 {
  const h = part < 2 ? i16x8.extend_low_i8x16_s(v) : i16x8.extend_high_i8x16_s(v);
  const w = (part & 1) == 0 ? i32x4.extend_low_i16x8_s(h) : i32x4.extend_high_i16x8_s(h);
  return f32x4.convert_i32x4_s(w);
}

function expandI8Row(dst: usize, q: usize, s: usize, K: i32, G: i32): void {
  for (let g0 = 0; g0 < K; g0 += G) {
    const scale = load<f32>(s + (<usize>(g0 / G) << 2));
    const sv = f32x4.splat(scale);
    let k = g0;
    const end = g0 + G;
    for (; k + 16 <= end; k += 16) {
      const v = v128.load(q + <usize>k);
      const p = dst + (<usize>k << 2);
      v128.store(p, f32x4.mul(i8x16ToF32(v, 0), sv));
      v128.store(p, f32x4.mul(i8x16ToF32(v, 1), sv), 16);
      v128.store(p, f32x4.mul(i8x16ToF32(v, 2), sv), 32);
      v128.store(p, f32x4.mul(i8x16ToF32(v, 3), sv), 48);
    }
    for (; k < end; k++) store<f32>(dst + (<usize>k << 2), <f32>load<i8>(q + <usize>k) * scale);
  }
}

/** Σ over one group of one row: 16 int8 weights per step, plus a scalar tail. */
@inline function dotI8Group(x: usize, pq: usize, k0: i32, k1: i32): f32 {
  let c0 = f32x4.splat(0), c1 = c0;
  let k = k0;
  for (; k + 16 <= k1; k += 16) {
    const v = v128.load(pq + <usize>k);
    const px = x + (<usize>k << 2);
    c0 = madd(v128.load(px), i8x16ToF32(v, 0), c0);
    c1 = madd(v128.load(px, 16), i8x16ToF32(v, 1), c1);
    c0 = madd(v128.load(px, 32), i8x16ToF32(v, 2), c0);
    c1 = madd(v128.load(px, 48), i8x16ToF32(v, 3), c1);
  }
  let r = hsum(f32x4.add(c0, c1));
  for (; k < k1; k++) r += load<f32>(x + (<usize>k << 2)) * <f32>load<i8>(pq + <usize>k);
  return r;
}

/**
 * x (K f32) → int16 with one scale (max|x| / 32767) into xq, returning the scale. 16-bit
 * activations lose ~1.5e-5 relative — nothing next to the int8 weights — and let the dot product
 * run on integers: i32x4.dot_i16x8_s does 8 multiply-adds where the f32 path converts and FMAs 4.
 * SIMD: 8 values a step; the same max, product and round-to-even as the scalar loop, so the same
 * bits (quantizeActI16Scalar): 1.1 µs for K = 768, 4.6 µs for 3072, where the scalar loop took 3.3 and 11.7: serial work
 * on decode's critical path (once per linear input).
 */
function quantizeRowI16(xq: usize, x: usize, K: i32): f32 {
  let mv = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= K; k += 4) mv = f32x4.max(mv, f32x4.abs(v128.load(x + (<usize>k << 2))));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (; k < K; k++) m = max(m, abs(load<f32>(x + (<usize>k << 2))));
  if (m == 0) {
    memory.fill(xq, 0, <usize>K << 1);
    return 0;
  }
  const inv: f32 = 32767 / m;
  const iv = f32x4.splat(inv);
  k = 0;
  for (; k + 8 <= K; k += 8) {
    const p = x + (<usize>k << 2);
    const lo = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), iv)));
    const hi = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), iv)));
    v128.store(xq + (<usize>k << 1), i16x8.narrow_i32x4_s(lo, hi));
  }
  for (; k < K; k++) store<i16>(xq + (<usize>k << 1), <i16>nearest(load<f32>(x + (<usize>k << 2)) * inv));
  return m / 32767;
}

/** quantizeActI16's twin: the plain loops. */
export function quantizeActI16Scalar(xq: usize, xs: usize, x: usize, K: i32): void {
  let m: f32 = 0;
  for (let k = 0; k < K; k++) m = max(m, abs(load<f32>(x + (<usize>k << 2))));
  if (m == 0) {
    memory.fill(xq, 0, <usize>K << 1);
    store<f32>(xs, 0);
    return;
  }
  const inv: f32 = 32767 / m;
  for (let k = 0; k < K; k++) store<i16>(xq + (<usize>k << 1), <i16>nearest(load<f32>(x + (<usize>k << 2)) * inv));
  store<f32>(xs, m / 32767);
}

/** x (K f32) → xq (K int16) and xs[0] its scale (quantizeRowI16): matvecI8A16's input. */
export function quantizeActI16(xq: usize, xs: usize, x: usize, K: i32): void {
  store<f32>(xs, quantizeRowI16(xq, x, K));
}

/**
 * T = 1 with 16-bit activations: per group, Σ q·xq in i32 (no overflow: |q·xq| ≤ 127·32767 and a
 * lane sums G/4 of them, < 2^31 for G ≤ 2048), then scaled by s[o, g] into f32 and by xs[0] at the
 * end. Four long row streams as in linear's matvec, then the leftover rows one at a time (their
 * own loop: no per-step test of which kind of row). G must be a multiple of 16 and ≤ 2048.
 * The weights are widened by the load (v128.load8x8_s, one pmovsxbw per 8) instead of a load and two
 * extends; integer sums are exact, so bit-identical. Measured (same run, relaxed, OPT-125M shapes):
 * from DRAM 9.6-10.6 → 10.6-11.7 GB/s, L2-resident 2.75 → 2.50 ns per 32 weights. Unrolling to 32
 * weights a step lost (2-4 % from DRAM, 23 % L2-resident: V8 hoists the step's 20 loads and spills).
 */
export function matvecI8A16(y: usize, xq: usize, xsp: usize, q: usize, s: usize, b: usize, K: i32, n0: i32, n1: i32, G: i32): void {
  if (n0 >= n1) return;
  const xs = load<f32>(xsp);
  const groups = K / G;
  const nq = (n1 - n0) >> 2;
  const qBytes = <usize>nq * <usize>K;
  const sBytes = <usize>nq * <usize>groups << 2;
  const G1 = <usize>G;
  for (let i = 0; i < nq; i++) {
    const o = n0 + i;
    const pq0 = q + <usize>o * <usize>K, pq1 = pq0 + qBytes, pq2 = pq1 + qBytes, pq3 = pq2 + qBytes;
    const ps0 = s + (<usize>o * <usize>groups << 2), ps1 = ps0 + sBytes, ps2 = ps1 + sBytes, ps3 = ps2 + sBytes;
    let t0 = f32x4.splat(0), t1 = t0, t2 = t0, t3 = t0;
    for (let g = 0; g < groups; g++) {
      const k0 = <usize>g * G1;
      let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let k = k0; k < k0 + G1; k += 16) {
        // Weights sign-extended by the load (one pmovsxbw per 8): the integer sums are exact, so
        // their grouping does not change a bit of the result.
        const px = xq + (k << 1);
        const xlo = v128.load(px), xhi = v128.load(px, 16);
        a0 = dotI8x16(pq0 + k, xlo, xhi, a0);
        a1 = dotI8x16(pq1 + k, xlo, xhi, a1);
        a2 = dotI8x16(pq2 + k, xlo, xhi, a2);
        a3 = dotI8x16(pq3 + k, xlo, xhi, a3);
      }
      const gs = <usize>g << 2;
      t0 = madd(f32x4.convert_i32x4_s(a0), f32x4.splat(load<f32>(ps0 + gs)), t0);
      t1 = madd(f32x4.convert_i32x4_s(a1), f32x4.splat(load<f32>(ps1 + gs)), t1);
      t2 = madd(f32x4.convert_i32x4_s(a2), f32x4.splat(load<f32>(ps2 + gs)), t2);
      t3 = madd(f32x4.convert_i32x4_s(a3), f32x4.splat(load<f32>(ps3 + gs)), t3);
    }
    storeRows4(y, b, o, nq, hsum(t0) * xs, hsum(t1) * xs, hsum(t2) * xs, hsum(t3) * xs);
  }
  // The leftover rows one at a time.
  for (let o = n0 + 4 * nq; o < n1; o++) {
    const pq0 = q + <usize>o * <usize>K, ps0 = s + (<usize>o * <usize>groups << 2);
    let t0 = f32x4.splat(0);
    for (let g = 0; g < groups; g++) {
      const k0 = <usize>g * G1;
      let a0 = i32x4.splat(0);
      for (let k = k0; k < k0 + G1; k += 16) {
        const px = xq + (k << 1);
        a0 = dotI8x16(pq0 + k, v128.load(px), v128.load(px, 16), a0);
      }
      t0 = madd(f32x4.convert_i32x4_s(a0), f32x4.splat(load<f32>(ps0 + (<usize>g << 2))), t0);
    }
    store<f32>(y + (<usize>o << 2), hsum(t0) * xs + (b ? load<f32>(b + (<usize>o << 2)) : 0));
  }
}

/** acc + the 16 int8 weights at p dotted with 16 int16 activations (xlo: the first 8, xhi: the rest). */
@inline function dotI8x16(p: usize, xlo: v128, xhi: v128, acc: v128): v128 {
  return i32x4.add(acc, i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(p), xlo), i32x4.dot_i16x8_s(v128.load8x8_s(p, 8), xhi)));
}

function matvecI8(y: usize, x: usize, q: usize, s: usize, b: usize, K: i32, n0: i32, n1: i32, G: i32): void {
  const groups = K / G;
  const nq = (n1 - n0) >> 2; // rows per stream: 4 long streams at once, as in linear's matvec
  const qBytes = <usize>nq * <usize>K;
  const sBytes = <usize>nq * <usize>groups << 2;
  const g16 = G & ~15;
  for (let i = 0; i < nq; i++) {
    const o = n0 + i;
    const pq0 = q + <usize>o * <usize>K, pq1 = pq0 + qBytes, pq2 = pq1 + qBytes, pq3 = pq2 + qBytes;
    const ps0 = s + (<usize>o * <usize>groups << 2), ps1 = ps0 + sBytes, ps2 = ps1 + sBytes, ps3 = ps2 + sBytes;
    let t0 = f32x4.splat(0), t1 = t0, t2 = t0, t3 = t0;
    for (let g = 0; g < groups; g++) {
      const k0 = g * G;
      let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
      for (let k = k0; k < k0 + g16; k += 16) {
        const px = x + (<usize>k << 2);
        const xa = v128.load(px), xb = v128.load(px, 16), xc = v128.load(px, 32), xd = v128.load(px, 48);
        let v = v128.load(pq0 + <usize>k);
        c0 = madd(xa, i8x16ToF32(v, 0), c0); c0 = madd(xb, i8x16ToF32(v, 1), c0);
        c0 = madd(xc, i8x16ToF32(v, 2), c0); c0 = madd(xd, i8x16ToF32(v, 3), c0);
        v = v128.load(pq1 + <usize>k);
        c1 = madd(xa, i8x16ToF32(v, 0), c1); c1 = madd(xb, i8x16ToF32(v, 1), c1);
        c1 = madd(xc, i8x16ToF32(v, 2), c1); c1 = madd(xd, i8x16ToF32(v, 3), c1);
        v = v128.load(pq2 + <usize>k);
        c2 = madd(xa, i8x16ToF32(v, 0), c2); c2 = madd(xb, i8x16ToF32(v, 1), c2);
        c2 = madd(xc, i8x16ToF32(v, 2), c2); c2 = madd(xd, i8x16ToF32(v, 3), c2);
        v = v128.load(pq3 + <usize>k);
        c3 = madd(xa, i8x16ToF32(v, 0), c3); c3 = madd(xb, i8x16ToF32(v, 1), c3);
        c3 = madd(xc, i8x16ToF32(v, 2), c3); c3 = madd(xd, i8x16ToF32(v, 3), c3);
      }
      const gs = <usize>g << 2;
      t0 = madd(c0, f32x4.splat(load<f32>(ps0 + gs)), t0);
      t1 = madd(c1, f32x4.splat(load<f32>(ps1 + gs)), t1);
      t2 = madd(c2, f32x4.splat(load<f32>(ps2 + gs)), t2);
      t3 = madd(c3, f32x4.splat(load<f32>(ps3 + gs)), t3);
    }
    let r0 = hsum(t0), r1 = hsum(t1), r2 = hsum(t2), r3 = hsum(t3);
    if (g16 < G) {
      // Group sizes that are not a multiple of 16: the ragged ends, scalar.
      for (let g = 0; g < groups; g++) {
        const k0 = g * G;
        const gs = <usize>g << 2;
        r0 += load<f32>(ps0 + gs) * dotI8Group(x, pq0, k0 + g16, k0 + G);
        r1 += load<f32>(ps1 + gs) * dotI8Group(x, pq1, k0 + g16, k0 + G);
        r2 += load<f32>(ps2 + gs) * dotI8Group(x, pq2, k0 + g16, k0 + G);
        r3 += load<f32>(ps3 + gs) * dotI8Group(x, pq3, k0 + g16, k0 + G);
      }
    }
    storeRows4(y, b, o, nq, r0, r1, r2, r3);
  }
  for (let o = n0 + 4 * nq; o < n1; o++) {
    const pq = q + <usize>o * <usize>K;
    const ps = s + (<usize>o * <usize>groups << 2);
    let acc: f32 = 0;
    for (let g = 0; g < groups; g++) acc += load<f32>(ps + (<usize>g << 2)) * dotI8Group(x, pq, g * G, g * G + G);
    if (b) acc += load<f32>(b + (<usize>o << 2));
    store<f32>(y + (<usize>o << 2), acc);
  }
}

export function linearI8Scalar(y: usize, x: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32, scratch: usize): void {
  const groups = K / G;
  for (let t = 0; t < T; t++) {
    for (let o = n0; o < n1; o++) {
      let acc: f32 = 0;
      for (let g = 0; g < groups; g++) {
        let d: f32 = 0;
        for (let k = g * G; k < g * G + G; k++) {
          d += load<f32>(x + ((<usize>t * <usize>K + <usize>k) << 2)) * <f32>load<i8>(q + <usize>o * <usize>K + <usize>k);
        }
        acc += load<f32>(s + ((<usize>o * <usize>groups + <usize>g) << 2)) * d;
      }
      if (b) acc += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), acc);
    }
  }
}

/** matvecI8A16's twin: per row and group the exact integer Σ q·xq, then Σ_g s·sum in f32, times xs. */
export function matvecI8A16Scalar(y: usize, xq: usize, xsp: usize, q: usize, s: usize, b: usize, K: i32, n0: i32, n1: i32, G: i32): void {
  const groups = K / G;
  for (let o = n0; o < n1; o++) {
    let acc: f32 = 0;
    for (let g = 0; g < groups; g++) {
      let d: i32 = 0;
      for (let k = g * G; k < g * G + G; k++) d += <i32>load<i16>(xq + (<usize>k << 1)) * <i32>load<i8>(q + <usize>o * <usize>K + <usize>k);
      acc += load<f32>(s + ((<usize>o * <usize>groups + <usize>g) << 2)) * <f32>d;
    }
    store<f32>(y + (<usize>o << 2), acc * load<f32>(xsp) + (b ? load<f32>(b + (<usize>o << 2)) : 0));
  }
}

/** Rows the T > 1 paths expand at once: callers size `scratch` as quantRows() · K f32 per thread. */
export function quantRows(): i32 {
  return QUANT_ROWS;
}

// ---- embedding rows from compressed tables ------------------------------------------------------

/** y[t] = f32(table[ids[t]]), table (V, C) half floats. */
export function embedGatherF16(y: usize, table: usize, ids: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    const row = <usize>load<i32>(ids + (<usize>t << 2));
    expandF16(y + (<usize>t * <usize>C << 2), table + row * <usize>C * 2, C);
  }
}

/** y[t] = dequantized row ids[t] of an int8 table (V, C) with (V, C/G) scales. */
export function embedGatherI8(y: usize, q: usize, s: usize, ids: usize, T: i32, C: i32, G: i32): void {
  const groups = C / G;
  for (let t = 0; t < T; t++) {
    const row = <usize>load<i32>(ids + (<usize>t << 2));
    expandI8Row(y + (<usize>t * <usize>C << 2), q + row * <usize>C, s + (row * <usize>groups << 2), C, G);
  }
}
