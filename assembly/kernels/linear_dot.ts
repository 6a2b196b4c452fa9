// Linear layers as integer dot products: int8 activations against 4-bit (q4) or int8 weights.
// Blocks of 32 inputs; K % 32 == 0 is required (callers fall back to linearI8 otherwise).
//
//   quantizeActI8(xq, xs, x, T, K, bits)   activations, per token t and block of 32 inputs:
//       xs[t,blk] = max|x| / L, xq[t,k] = round(x[t,k] / xs[t,blk]) in [-L, L], L = 2^(bits-1) - 1
//       (bits 8: ±127, bits 7: ±63), and the block sum c[t,blk] = xs[t,blk] · Σ_{k in blk} xq[t,k]
//       xq: (T, K) int8; xs: (T, 2, K/32) f32 — per token the K/32 scales, then the K/32 sums c.
//   quantizeQ4(q, s, w, n, K)              weights, at load time (scalar, like quantizeI8):
//       per row o and block: w ≈ d·u + m, u in 0..15, m = the block's min, d = (max - m) / 15
//       q: (N, K/2) bytes, per block 16 bytes, byte j = u[j] | u[j+16] << 4 (ggml's nibble order)
//       s: (N, 2, K/32) bf16 — per row the K/32 scales d, then the K/32 mins m (d rounded up so
//       m + 15·d reaches the max). 20 bytes per 32 weights: 5 bits per weight.
//   embedGatherQ4(y, q, s, ids, T, C)         rows of a q4 table (the token embedding) back to f32
//   linearQ4(y, xq, xs, q, s, b, T, K, N, n0, n1)
//       y[t,o] = Σ_blk d[o,blk]·xs[t,blk]·(Σ_{k in blk} u[o,k]·xq[t,k]) + m[o,blk]·c[t,blk] + b[o]
//   linearI8Dot(y, xq, xs, q, s, b, T, K, N, n0, n1, G)   int8 weights as quantizeI8 makes them:
//       y[t,o] = Σ_g s[o,g] · Σ_{blk in g} xs[t,blk]·(Σ_{k in blk} q[o,k]·xq[t,k]) + b[o]
//       q: (N, K) int8 in ±127, s: (N, K/G) f32, G % 32 == 0 and K % G == 0 (groups of whole blocks)
//   y: (T, N), b: (N) or 0; only columns [n0, n1) are written (threads split by rows). No allocation.
//   The *Scalar twins: plain loops, integer sum per block then the same f32 formula.
//
// Exactness: each block's Σ is exact in integers (≤ 32·15·127 for q4, 32·127·127 for int8) and
// exact in f32; f32 rounding enters only where a block sum meets its scales.
//
// Builds (one source, ASC_FEATURE_RELAXED_SIMD):
//   relaxed  i16x8.relaxed_dot_i8x16_i7x16_s. Its second ("7-bit") operand must be in 0..127: x86
//            (pmaddubsw) reads it UNSIGNED — measured here: 5·(-3) comes back as 5060 — so a signed ±63
//            activation is NOT a valid 7-bit operand. q4: the nibbles (0..15) are that operand and
//            xq (±127) the other. int8 weights: the sign of one side moves onto the other
//            ((v ^ m) - m, m = 0 or -1) and |·| ≤ 127 is the 7-bit operand, so both builds use 8-bit
//            activations (bits = 7 is accepted, not needed). Not the i32x4 ..._add_s form: Node 20's
//            baseline compiler (Liftoff, which runs a function's first calls) computes it wrongly —
//            measured: 1·1 + 5 gives 8 — while TurboFan and the i16x8 form are right.
//   simd     the same sums in i16 lanes: widen, i32x4.dot_i16x8_s.
// Loops:
//   T = 1    four long row streams (rows o, o+q, o+2q, o+3q) as linear's matvec: per block, the
//            activations loaded once, the 4 rows' block dots reduced to one f32x4 (lanes = rows), times the
//            4 rows' scales·xs, plus their mins·c: one FMA pair per 4 row-blocks, one accumulator, no
//            final horizontal sum. Four blocks a step: each row's 4 scales (and 4 mins) come in one
//            64-bit load and two shuffles regroup them by block (16 lane loads → 4 loads + 6 operations),
//            every load is at a constant offset from pointers set once per step, and a store of the
//            accumulator's lane 0 into y[o] after each block keeps V8 from hoisting all 24 loads of the
//            step to its top (it spilled half of them). Same operations in the same order as one block
//            at a time: bit-identical. Measured (same run, relaxed, ns per row-block): L2-resident
//            2.45 → 1.94, from DRAM 2.6-2.8 → 2.14-2.22 (7.2-7.7 → 9.0-9.4 GB/s); simd 4.2 → 3.7 and 4.4 → 4.0.
//            Tried and slower or equal (L2-resident, same run): one row with lanes = blocks; per-block
//            scales picked by relaxed_swizzle; an unrolled 4-block body without the ordering stores
//            (V8 issues all 16 loads first and spills, ~25 % slower); 2 blocks a step with 32-bit lane
//            loads of scale pairs and no store (2-4 % faster only, for the same reason).
//   T > 1    per weight row, tiles of 4 tokens: each block is unpacked once and dotted with the 4
//            tokens; the block's scale comes from lane blk mod 4 of a per-token (d·xs) vector (one
//            relaxed_swizzle). The model does not take this path: its T > 1 q4 linears run gemm_dot.ts's
//            gemmQ4Tiles (2 rows × 4 tokens, 1.6× faster: this loop spills ~12 vectors a block), which
//            needs the tile-regrouped scales (actTiles); linearQ4 keeps this one for callers with xs only.
//
// Format choice (measured: a float64 simulation, K = 768, blocks of 32, relative RMS error of W·x
// against f32 weights, with 8-bit activations; reproduced by test/kernels-quant.test.ts):
//                           Gaussian  Student-t ν=3  Laplace   bytes / 32 weights (16-bit scales)
//   symmetric ±7, amax/7      9.8 %      14.6 %      11.9 %    18
//   symmetric -8..7 (Q4_0)    8.5 %      13.0 %      10.6 %    18
//   offset 0..15 + min        8.0 %      10.0 %       9.2 %    20       ← the format
// The offset format costs no integer work on the relaxed dot (its 7-bit operand wants unsigned
// nibbles either way: the symmetric format needs the same Σxq correction) and one vector FMA per 4
// blocks for m·c; 7-23 % less error for 11 % more bytes.
// Scales: bf16, not f16 or f32. The kernel is compute-bound on this machine, and widening bf16 is
// one interleave with zeros where f16 takes five operations: q4 matvec per row and block (L2-resident,
// same run) f16 2.35 ns, f32 2.03 ns, bf16 2.07 ns — f32's speed at f16's 20 bytes. bf16's 2^-9
// rounding moves the errors above by ≤ 0.02 points, and it has f32's range.

import { hsum, madd, storeRows4 } from "./vecmath";

const QB: i32 = 32;

/**
 * Scales and mins are bf16 (the high half of an f32, round to nearest even): widening is one
 * interleave with zeros where f16 takes five operations, the range is f32's, and the 2^-9 relative
 * rounding is nothing next to the 4-bit step. Q4_BF16 = false stores f32 instead (for measurements).
 */
const Q4_BF16: bool = true;
export const SB: usize = Q4_BF16 ? 2 : 4;

/** f32 lanes [0, n) from p, zeros elsewhere (n ≥ 4: a full vector). */
@inline function loadF32x4(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Scales (or mins) of blocks [0, n) of one q4 row as f32 lanes, zeros elsewhere. */
@inline function scales4(p: usize, n: i32): v128 {
  if (!Q4_BF16) return loadF32x4(p, n);
  let h: v128;
  if (n >= 4) h = v128.load64_zero(p);
  else {
    h = i16x8.replace_lane(i16x8.splat(0), 0, load<u16>(p));
    if (n > 1) h = i16x8.replace_lane(h, 1, load<u16>(p, 2));
    if (n > 2) h = i16x8.replace_lane(h, 2, load<u16>(p, 4));
  }
  return i8x16.shuffle(i8x16.splat(0), h, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23); // h << 16 per lane
}

@inline export function scaleAt(p: usize, i: i32): f32 {
  if (Q4_BF16) return reinterpret<f32>(<u32>load<u16>(p + (<usize>i << 1)) << 16);
  return load<f32>(p + (<usize>i << 2));
}

/** f32 → bf16 bits, round to nearest even (finite inputs). */
@inline function bf16Bits(v: f32): u32 {
  const x = reinterpret<u32>(v);
  return (x + 0x7fff + ((x >> 16) & 1)) >> 16;
}

/** Store v as a scale (bf16 or f32) and return the value stored; up: round up in magnitude instead. */
@inline function storeScale(p: usize, i: i32, v: f32, up: bool): f32 {
  if (Q4_BF16) {
    let h = bf16Bits(v);
    if (up && abs(reinterpret<f32>(h << 16)) < abs(v)) h++;
    store<u16>(p + (<usize>i << 1), <u16>h);
    return reinterpret<f32>(h << 16);
  }
  store<f32>(p + (<usize>i << 2), v);
  return v;
}

/**
 * One q4 block (nibbles lo, hi) against 32 int8 activations x0, x1: lanes whose sum is Σ u·xq —
 * relaxed: 8 i16 lanes (each 4 products of ≤ 15·127: ≤ 7620, no saturation); simd: 4 i32 lanes.
 */
@inline export function dotNib(lo: v128, hi: v128, x0: v128, x1: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi));
  }
  const a = i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), i16x8.extend_low_i8x16_s(x0)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), i16x8.extend_high_i8x16_s(x0)));
  const c = i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), i16x8.extend_low_i8x16_s(x1)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), i16x8.extend_high_i8x16_s(x1)));
  return i32x4.add(a, c);
}

/** dotNib's lanes of 4 blocks → (Σa, Σb, Σc, Σd) as f32 (exact: |Σ| ≤ 60960). */
@inline export function reduce4(a: v128, b: v128, c: v128, d: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    // Pairs of 32-bit lanes added in i16 (≤ 15240), then i16 pairs to i32 (≤ 30480): 11 operations
    // where widening each block first and transposing in i32 takes 13.
    const ab = i16x8.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
    const cd = i16x8.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
    const ab2 = i32x4.dot_i16x8_s(ab, ones16()), cd2 = i32x4.dot_i16x8_s(cd, ones16());
    // ab2 = (a, b, a, b) partial sums, cd2 = (c, d, c, d)
    return f32x4.convert_i32x4_s(i32x4.add(i32x4.shuffle(ab2, cd2, 0, 1, 4, 5), i32x4.shuffle(ab2, cd2, 2, 3, 6, 7)));
  }
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.convert_i32x4_s(i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7)));
}

/**
 * Vector constants read from a static segment: V8 rebuilds a v128.const inside the loop at every use
 * (3 instructions for a splat of 0x0f); a load from memory becomes a memory operand.
 */
const CONSTS = memory.data<u8>([
  0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, // nibble mask
  0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, // swizzle index of lane 0
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, // + one lane
  1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, // i16 ones
  0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, // the high half of each i32 lane
], 16);
@inline function nibMask(): v128 {
  return v128.load(CONSTS);
}
@inline function lane0Index(): v128 {
  return v128.load(CONSTS, 16);
}
@inline export function ones16(): v128 {
  return v128.load(CONSTS, 48);
}
@inline function hiMask(): v128 {
  return v128.load(CONSTS, 64);
}
@inline function nextLane(idx: v128): v128 {
  return i8x16.add(idx, v128.load(CONSTS, 32));
}

/** The f32 lane of v that idx selects, in every lane (one pshufb on the relaxed build). */
@inline function pick(v: v128, idx: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(v, idx);
  return i8x16.swizzle(v, idx);
}

/** Nibbles 0..15 of 16 packed bytes: the low ones are inputs 0..15 of the block, the high ones 16..31. */
@inline export function nibLo(v: v128): v128 {
  return v128.and(v, nibMask());
}
@inline export function nibHi(v: v128, lo: v128): v128 {
  return i16x8.shr_u(v128.xor(v, lo), 4); // v ^ lo = the high nibbles in place: no bits cross bytes
}

/** dotNib's lanes as i32 lanes with the same sum. */
@inline function toI32(v: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.dot_i16x8_s(v, ones16());
  return v;
}

// ---- activations ---------------------------------------------------------------------------------

export function quantizeActI8(xq: usize, xs: usize, x: usize, T: i32, K: i32, bits: i32): void {
  const nb = K >> 5;
  const L = <f32>((1 << (bits - 1)) - 1);
  for (let t = 0; t < T; t++) {
    const pxs = xs + (<usize>t * <usize>nb << 3);
    for (let blk = 0; blk < nb; blk++) {
      const k = <usize>t * <usize>K + <usize>(blk * QB);
      const px = x + (k << 2), pq = xq + k;
      const v0 = v128.load(px), v1 = v128.load(px, 16), v2 = v128.load(px, 32), v3 = v128.load(px, 48);
      const v4 = v128.load(px, 64), v5 = v128.load(px, 80), v6 = v128.load(px, 96), v7 = v128.load(px, 112);
      let m = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
        f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
      m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
      const amax = max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
      if (amax == 0) {
        v128.store(pq, i8x16.splat(0));
        v128.store(pq, i8x16.splat(0), 16);
        store<f32>(pxs + (<usize>blk << 2), 0);
        store<f32>(pxs + (<usize>(nb + blk) << 2), 0);
        continue;
      }
      // |x|·(L / amax) ≤ L·(1 + 2^-23) rounds to at most L: no clamp needed.
      const iv = f32x4.splat(L / amax);
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, iv)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, iv)));
      const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, iv)));
      const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, iv)));
      const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, iv)));
      const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, iv)));
      const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, iv)));
      const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, iv)));
      v128.store(pq, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
      v128.store(pq, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)), 16);
      const sv = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
      const sum = i32x4.extract_lane(sv, 0) + i32x4.extract_lane(sv, 1) + i32x4.extract_lane(sv, 2) + i32x4.extract_lane(sv, 3);
      const d = amax / L;
      store<f32>(pxs + (<usize>blk << 2), d);
      store<f32>(pxs + (<usize>(nb + blk) << 2), d * <f32>sum);
    }
  }
}

export function quantizeActI8Scalar(xq: usize, xs: usize, x: usize, T: i32, K: i32, bits: i32): void {
  const nb = K >> 5;
  const L = <f32>((1 << (bits - 1)) - 1);
  for (let t = 0; t < T; t++) {
    const pxs = xs + (<usize>t * <usize>nb << 3);
    for (let blk = 0; blk < nb; blk++) {
      const k0 = <usize>t * <usize>K + <usize>(blk * QB);
      let amax: f32 = 0;
      for (let i = 0; i < QB; i++) amax = max(amax, abs(load<f32>(x + ((k0 + <usize>i) << 2))));
      const inv: f32 = amax > 0 ? L / amax : 0;
      let sum = 0;
      for (let i = 0; i < QB; i++) {
        const v = <i32>nearest(load<f32>(x + ((k0 + <usize>i) << 2)) * inv);
        store<i8>(xq + k0 + <usize>i, <i8>v);
        sum += v;
      }
      const d: f32 = amax > 0 ? amax / L : 0;
      store<f32>(pxs + (<usize>blk << 2), d);
      store<f32>(pxs + (<usize>(nb + blk) << 2), d * <f32>sum);
    }
  }
}

// ---- q4 weights ------------------------------------------------------------------------------------

/** Quantize n rows of K f32 weights (at load time; scalar, like quantizeI8). */
export function quantizeQ4(q: usize, s: usize, w: usize, n: i32, K: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB;
  for (let o = 0; o < n; o++) {
    const pd = s + <usize>o * rowS, pm = pd + <usize>nb * SB;
    for (let blk = 0; blk < nb; blk++) {
      const pw = w + ((<usize>o * <usize>K + <usize>(blk * QB)) << 2);
      let lo = load<f32>(pw), hi = lo;
      for (let i = 1; i < QB; i++) {
        const v = load<f32>(pw + (<usize>i << 2));
        lo = min(lo, v);
        hi = max(hi, v);
      }
      const m = storeScale(pm, blk, lo, false);
      // The scale from the stored min, rounded up so that m + 15·d reaches the max.
      const d = storeScale(pd, blk, max<f32>(0, (hi - m) / 15), true);
      const inv: f32 = d > 0 ? 1 / d : 0;
      const pq = q + <usize>o * rowQ + <usize>(blk * 16);
      for (let i = 0; i < 16; i++) {
        const u0 = <u32>max<f32>(0, min<f32>(15, nearest((load<f32>(pw + (<usize>i << 2)) - m) * inv)));
        const u1 = <u32>max<f32>(0, min<f32>(15, nearest((load<f32>(pw + (<usize>(i + 16) << 2)) - m) * inv)));
        store<u8>(pq + <usize>i, <u8>(u0 | (u1 << 4)));
      }
    }
  }
}

/**
 * y[t] = dequantized row ids[t] of a q4 table (V, C), C % 32 == 0, as quantizeQ4 wrote it:
 * d·u + m per block (the token embedding when it is also a q4 lm_head). Scalar: a few rows a step.
 */
export function embedGatherQ4(y: usize, q: usize, s: usize, ids: usize, T: i32, C: i32): void {
  const nb = C >> 5;
  const rowQ = <usize>C >> 1, rowS = <usize>nb * 2 * SB;
  for (let t = 0; t < T; t++) {
    const row = <usize>load<i32>(ids + (<usize>t << 2));
    const pq = q + row * rowQ, pd = s + row * rowS, pm = pd + <usize>nb * SB;
    const py = y + ((<usize>t * <usize>C) << 2);
    for (let blk = 0; blk < nb; blk++) {
      const d = scaleAt(pd, blk), m = scaleAt(pm, blk);
      const pb = pq + <usize>(blk * 16), po = py + (<usize>(blk * QB) << 2);
      for (let i = 0; i < 16; i++) {
        const byte = <u32>load<u8>(pb + <usize>i);
        store<f32>(po + (<usize>i << 2), d * <f32>(byte & 15) + m);
        store<f32>(po + (<usize>(i + 16) << 2), d * <f32>(byte >> 4) + m);
      }
    }
  }
}

export function linearQ4(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  if (T <= 0 || n0 >= n1) return;
  if (T == 1) matvecQ4(y, xq, xs, q, s, b, K, n0, n1);
  else gemmQ4(y, xq, xs, q, s, b, T, K, N, n0, n1);
}

/**
 * T = 1: four long row streams (rows o, o+q, o+2q, o+3q), as linear's matvec. Block by block: the
 * activations loaded once, the 4 rows' block dots reduced to one f32x4 (lanes = rows), times their
 * 4 scales · xs, plus their 4 mins · c — one accumulator for 4 rows; four blocks a step (see the
 * header). Measured from DRAM, same run: 4 consecutive rows (one weight stream) 1.6-1.9x slower,
 * 8 streams (two quads sharing the activations) 1.14-1.2x slower; with the scales served from
 * cache, 1-3 % faster only — the streams are not what limits it, the instructions are.
 */
function matvecQ4(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, K: i32, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB, mOff = <usize>nb * SB, cOff = <usize>nb << 2;
  const nq = (n1 - n0) >> 2; // rows per stream
  const dq = <usize>nq * rowQ, ds = <usize>nq * rowS;
  const nb4 = Q4_BF16 ? nb & ~3 : 0; // blocks taken four at a time
  for (let i = 0; i < nq; i++) {
    const o = n0 + i;
    const pq0 = q + <usize>o * rowQ, pq1 = pq0 + dq, pq2 = pq1 + dq, pq3 = pq2 + dq;
    const ps0 = s + <usize>o * rowS, ps1 = ps0 + ds, ps2 = ps1 + ds, ps3 = ps2 + ds;
    const py = y + (<usize>o << 2);
    let acc = f32x4.splat(0);
    let blk = 0;
    for (; blk < nb4; blk += 4) {
      // Four blocks: each row's four bf16 scales (and mins) in one 64-bit load, regrouped by two
      // shuffles into per-block vectors (a shift or a mask each); the same operations, in the same
      // order, as the one-block step below. Every load of the body is at a constant offset from 11
      // pointers set once per 4 blocks. The store of lane 0 after each block (into y[o], which the
      // row's result overwrites) orders that block's arithmetic before the next block's loads:
      // without it V8 hoists every load of the body to the top and spills (~20 % slower).
      const kq = <usize>blk << 4, ks = <usize>blk * SB;
      const q0 = pq0 + kq, q1 = pq1 + kq, q2 = pq2 + kq, q3 = pq3 + kq;
      const px = xq + (<usize>blk << 5), pe = xs + (<usize>blk << 2), pc = pe + cOff;
      const dA = load4x2(ps0 + ks, ps1 + ks), dB = load4x2(ps2 + ks, ps3 + ks);
      const mA = load4x2(ps0 + mOff + ks, ps1 + mOff + ks), mB = load4x2(ps2 + mOff + ks, ps3 + mOff + ks);
      const d01 = pairs01(dA, dB), m01 = pairs01(mA, mB);
      acc = q4Dot4(acc, v128.load(q0), v128.load(q1), v128.load(q2), v128.load(q3), v128.load(px), v128.load(px, 16),
        v128.load32_splat(pe), v128.load32_splat(pc), i32x4.shl(d01, 16), i32x4.shl(m01, 16));
      store<f32>(py, f32x4.extract_lane(acc, 0));
      acc = q4Dot4(acc, v128.load(q0, 16), v128.load(q1, 16), v128.load(q2, 16), v128.load(q3, 16), v128.load(px, 32), v128.load(px, 48),
        v128.load32_splat(pe, 4), v128.load32_splat(pc, 4), v128.and(d01, hiMask()), v128.and(m01, hiMask()));
      store<f32>(py, f32x4.extract_lane(acc, 0));
      const d23 = pairs23(dA, dB), m23 = pairs23(mA, mB);
      acc = q4Dot4(acc, v128.load(q0, 32), v128.load(q1, 32), v128.load(q2, 32), v128.load(q3, 32), v128.load(px, 64), v128.load(px, 80),
        v128.load32_splat(pe, 8), v128.load32_splat(pc, 8), i32x4.shl(d23, 16), i32x4.shl(m23, 16));
      store<f32>(py, f32x4.extract_lane(acc, 0));
      acc = q4Dot4(acc, v128.load(q0, 48), v128.load(q1, 48), v128.load(q2, 48), v128.load(q3, 48), v128.load(px, 96), v128.load(px, 112),
        v128.load32_splat(pe, 12), v128.load32_splat(pc, 12), v128.and(d23, hiMask()), v128.and(m23, hiMask()));
      store<f32>(py, f32x4.extract_lane(acc, 0));
    }
    for (; blk < nb; blk++) {
      const ks = <usize>blk * SB;
      const d = gather4(ps0 + ks, ps1 + ks, ps2 + ks, ps3 + ks);
      const m = gather4(ps0 + mOff + ks, ps1 + mOff + ks, ps2 + mOff + ks, ps3 + mOff + ks);
      const kq = <usize>blk << 4, px = xq + (<usize>blk << 5), pe = xs + (<usize>blk << 2);
      acc = q4Dot4(acc, v128.load(pq0 + kq), v128.load(pq1 + kq), v128.load(pq2 + kq), v128.load(pq3 + kq), v128.load(px), v128.load(px, 16),
        v128.load32_splat(pe), v128.load32_splat(pe + cOff), d, m);
    }
    storeRows4(y, b, o, nq, f32x4.extract_lane(acc, 0), f32x4.extract_lane(acc, 1), f32x4.extract_lane(acc, 2), f32x4.extract_lane(acc, 3));
  }
  for (let o = n0 + 4 * nq; o < n1; o++) {
    const pq = q + <usize>o * rowQ, ps = s + <usize>o * rowS;
    let t = f32x4.splat(0);
    for (let g = 0; g < nb; g += 4) t = q4Group(t, pq, ps, xq, xs, nb, g, min(4, nb - g));
    store<f32>(y + (<usize>o << 2), hsum(t) + (b ? load<f32>(b + (<usize>o << 2)) : 0));
  }
}

/**
 * acc + one block of 4 rows (lanes): the rows' packed nibbles v0..v3 against the block's activations
 * x0, x1 — Σ u·xq reduced per row — times d·xs (e = xs splat), plus m·c (c splat).
 */
@inline function q4Dot4(acc: v128, v0: v128, v1: v128, v2: v128, v3: v128, x0: v128, x1: v128, e: v128, c: v128, d: v128, m: v128): v128 {
  let lo = nibLo(v0);
  const a0 = dotNib(lo, nibHi(v0, lo), x0, x1);
  lo = nibLo(v1);
  const a1 = dotNib(lo, nibHi(v1, lo), x0, x1);
  lo = nibLo(v2);
  const a2 = dotNib(lo, nibHi(v2, lo), x0, x1);
  lo = nibLo(v3);
  const a3 = dotNib(lo, nibHi(v3, lo), x0, x1);
  return madd(reduce4(a0, a1, a2, a3), f32x4.mul(d, e), madd(m, c, acc));
}

/** Four consecutive bf16 scales (or mins) at each of p0, p1: the 8 bytes of p0, then those of p1. */
@inline function load4x2(p0: usize, p1: usize): v128 {
  return v128.load64_lane(p1, v128.load64_zero(p0), 1);
}

/** Rows 0, 1 in a, 2, 3 in b (load4x2): lane r = row r's scales of blocks 0 and 1 (pairs01) or 2 and 3 (pairs23). */
@inline function pairs01(a: v128, b: v128): v128 {
  return i8x16.shuffle(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
}
@inline function pairs23(a: v128, b: v128): v128 {
  return i8x16.shuffle(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}

/** The scales (or mins) at 4 addresses, one per row, as f32 lanes. */
@inline function gather4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  if (!Q4_BF16) return f32x4(load<f32>(p0), load<f32>(p1), load<f32>(p2), load<f32>(p3));
  let h = v128.load16_lane(p0, i16x8.splat(0), 1);
  h = v128.load16_lane(p1, h, 3);
  h = v128.load16_lane(p2, h, 5);
  return v128.load16_lane(p3, h, 7); // each in the high half of its 32-bit lane: bf16 → f32
}

/** acc + one row against one token over blocks [g, g + nj), nj ≤ 4 (constant 4 at the hot call). */
@inline function q4Group(acc: v128, pq: usize, ps: usize, xq: usize, xs: usize, nb: i32, g: i32, nj: i32): v128 {
  const pg = pq + (<usize>g << 4), px = xq + (<usize>g << 5);
  let v = v128.load(pg);
  let lo = nibLo(v);
  const a0 = dotNib(lo, nibHi(v, lo), v128.load(px), v128.load(px, 16));
  let a1 = i32x4.splat(0), a2 = a1, a3 = a1;
  if (nj > 1) {
    v = v128.load(pg, 16); lo = nibLo(v);
    a1 = dotNib(lo, nibHi(v, lo), v128.load(px, 32), v128.load(px, 48));
  }
  if (nj > 2) {
    v = v128.load(pg, 32); lo = nibLo(v);
    a2 = dotNib(lo, nibHi(v, lo), v128.load(px, 64), v128.load(px, 80));
  }
  if (nj > 3) {
    v = v128.load(pg, 48); lo = nibLo(v);
    a3 = dotNib(lo, nibHi(v, lo), v128.load(px, 96), v128.load(px, 112));
  }
  const gs = <usize>g * SB, gf = <usize>g << 2;
  const e = f32x4.mul(scales4(ps + gs, nj), loadF32x4(xs + gf, nj));
  const mc = f32x4.mul(scales4(ps + <usize>nb * SB + gs, nj), loadF32x4(xs + (<usize>nb << 2) + gf, nj));
  return f32x4.add(acc, madd(reduce4(a0, a1, a2, a3), e, mc));
}

/** acc + one token's block: the unpacked block (lo, hi) against the 32 activations at px, times e[idx]. */
@inline function q4Tok(acc: v128, lo: v128, hi: v128, px: usize, e: v128, idx: v128): v128 {
  return madd(f32x4.convert_i32x4_s(toI32(dotNib(lo, hi, v128.load(px), v128.load(px, 16)))), pick(e, idx), acc);
}

/** Tokens per GEMM tile (2 or 4). */
const QTT: i32 = 4;

/**
 * T > 1. Per weight row and tile of QTT tokens: every 4 blocks, the tokens' d·xs vectors and min
 * terms; then each block is unpacked once and dotted with the tile's tokens (a real loop, see matvecQ4).
 */
function gemmQ4(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB, mOff = <usize>nb * SB;
  const xsRow = <usize>nb << 3, cOff = <usize>nb << 2;
  const K1 = <usize>K, N4 = <usize>N << 2;
  for (let o = n0; o < n1; o++) {
    const bias: f32 = b ? load<f32>(b + (<usize>o << 2)) : 0;
    for (let t = 0; t < T; t += QTT) {
      const nt = min(QTT, T - t);
      // A partial tile repeats its last token; the extra results are not stored.
      let px0 = xq + <usize>t * K1, px1 = nt > 1 ? px0 + K1 : px0, px2 = nt > 2 ? px1 + K1 : px1, px3 = nt > 3 ? px2 + K1 : px2;
      const pxs0 = xs + <usize>t * xsRow, pxs1 = nt > 1 ? pxs0 + xsRow : pxs0;
      const pxs2 = nt > 2 ? pxs1 + xsRow : pxs1, pxs3 = nt > 3 ? pxs2 + xsRow : pxs2;
      let pq = q + <usize>o * rowQ;
      const ps = s + <usize>o * rowS;
      let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
      let e0 = c0, e1 = c0, e2 = c0, e3 = c0, idx = c0;
      for (let blk = 0; blk < nb; blk++) {
        if ((blk & 3) == 0) {
          const nj = min(4, nb - blk);
          const gs = <usize>blk * SB, gf = <usize>blk << 2;
          const m = scales4(ps + mOff + gs, nj);
          c0 = madd(m, loadF32x4(pxs0 + cOff + gf, nj), c0);
          c1 = madd(m, loadF32x4(pxs1 + cOff + gf, nj), c1);
          if (QTT > 2) {
            c2 = madd(m, loadF32x4(pxs2 + cOff + gf, nj), c2);
            c3 = madd(m, loadF32x4(pxs3 + cOff + gf, nj), c3);
          }
          const d = scales4(ps + gs, nj);
          e0 = f32x4.mul(d, loadF32x4(pxs0 + gf, nj));
          e1 = f32x4.mul(d, loadF32x4(pxs1 + gf, nj));
          if (QTT > 2) {
            e2 = f32x4.mul(d, loadF32x4(pxs2 + gf, nj));
            e3 = f32x4.mul(d, loadF32x4(pxs3 + gf, nj));
          }
          idx = lane0Index();
        }
        const v = v128.load(pq);
        const lo = nibLo(v), hi = nibHi(v, lo);
        c0 = q4Tok(c0, lo, hi, px0, e0, idx);
        c1 = q4Tok(c1, lo, hi, px1, e1, idx);
        if (QTT > 2) {
          c2 = q4Tok(c2, lo, hi, px2, e2, idx);
          c3 = q4Tok(c3, lo, hi, px3, e3, idx);
        }
        pq += 16;
        px0 += 32; px1 += 32;
        if (QTT > 2) { px2 += 32; px3 += 32; }
        idx = nextLane(idx);
      }
      const py = y + <usize>t * N4 + (<usize>o << 2);
      store<f32>(py, hsum(c0) + bias);
      if (nt > 1) store<f32>(py + N4, hsum(c1) + bias);
      if (QTT > 2) {
        if (nt > 2) store<f32>(py + 2 * N4, hsum(c2) + bias);
        if (nt > 3) store<f32>(py + 3 * N4, hsum(c3) + bias);
      }
    }
  }
}

export function linearQ4Scalar(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB;
  for (let t = 0; t < T; t++) {
    const px = xq + <usize>t * <usize>K, pxs = xs + (<usize>t * <usize>nb << 3);
    for (let o = n0; o < n1; o++) {
      const pq = q + <usize>o * rowQ, pd = s + <usize>o * rowS, pm = pd + <usize>nb * SB;
      let acc: f32 = 0;
      for (let blk = 0; blk < nb; blk++) {
        let sum = 0;
        for (let i = 0; i < 16; i++) {
          const byte = <i32>load<u8>(pq + <usize>(blk * 16 + i));
          sum += (byte & 15) * <i32>load<i8>(px + <usize>(blk * QB + i)) + (byte >> 4) * <i32>load<i8>(px + <usize>(blk * QB + 16 + i));
        }
        const xsb = load<f32>(pxs + (<usize>blk << 2)), c = load<f32>(pxs + (<usize>(nb + blk) << 2));
        acc += scaleAt(pd, blk) * xsb * <f32>sum + scaleAt(pm, blk) * c;
      }
      if (b) acc += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), acc);
    }
  }
}

// ---- int8 weights --------------------------------------------------------------------------------

/**
 * i32 lanes summing to Σ a·b, b in 0..127. Not i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20's
 * baseline compiler (Liftoff, which runs a function's first calls) gets that one wrong — measured:
 * 1·1 with accumulator 5 gives 8, not 9; TurboFan is right — while the i16x8 form is right in both.
 * An i16 lane holds 2 products ≤ 127·127: 32258, no saturation.
 */
@inline function dot7(a: v128, b: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(a, b));
}

/** v·sign: lanes of m are 0 (keep) or -1 (negate); v in ±127 so the negation cannot overflow. */
@inline function flip(v: v128, m: v128): v128 {
  return i8x16.sub(v128.xor(v, m), m);
}

/**
 * One int8 block (32 weights at pw) against the activations prepared by the caller: relaxed —
 * p0, p1 = |x| of the two halves, p2, p3 = their sign masks; simd — p0..p3 = x widened to i16.
 */
@inline function dotI8Block(pw: usize, p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  const w0 = v128.load(pw), w1 = v128.load(pw, 16);
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.add(dot7(flip(w0, p2), p0), dot7(flip(w1, p3), p1));
  }
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w0), p0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w0), p1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w1), p2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w1), p3)));
}

@inline function prepX(px: usize, part: i32): v128 {
  // part 0..3, see dotI8Block. Constant at every call site, so the branches fold away.
  if (ASC_FEATURE_RELAXED_SIMD) {
    const v = v128.load(px + <usize>(part & 1 ? 16 : 0));
    return part < 2 ? i8x16.abs(v) : i8x16.lt_s(v, i8x16.splat(0));
  }
  const v = v128.load(px + <usize>(part < 2 ? 0 : 16));
  return part & 1 ? i16x8.extend_high_i8x16_s(v) : i16x8.extend_low_i8x16_s(v);
}

export function linearI8Dot(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32): void {
  if (T <= 0 || n0 >= n1) return;
  if (T == 1) matvecI8Dot(y, xq, xs, q, s, b, K, n0, n1, G);
  else gemmI8Dot(y, xq, xs, q, s, b, T, K, N, n0, n1, G);
}

/**
 * T = 1: block by block over the 4 row streams, the activations prepared once per block for all four;
 * per row, u += f32(Σ q·xq)·xs[blk] over the group's blocks, then t += u·s[o, g].
 */
function matvecI8Dot(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, K: i32, n0: i32, n1: i32, G: i32): void {
  const gb = G >> 5, groups = K / G;
  const nq = (n1 - n0) >> 2;
  const dq = <usize>nq * <usize>K, ds = <usize>nq * <usize>groups << 2;
  for (let i = 0; i < nq; i++) {
    const o = n0 + i;
    const pq0 = q + <usize>o * <usize>K, pq1 = pq0 + dq, pq2 = pq1 + dq, pq3 = pq2 + dq;
    const ps0 = s + (<usize>o * <usize>groups << 2), ps1 = ps0 + ds, ps2 = ps1 + ds, ps3 = ps2 + ds;
    let t0 = f32x4.splat(0), t1 = t0, t2 = t0, t3 = t0;
    let blk = 0;
    for (let g = 0; g < groups; g++) {
      let u0 = f32x4.splat(0), u1 = u0, u2 = u0, u3 = u0;
      for (let j = 0; j < gb; j++, blk++) {
        const px = xq + (<usize>blk << 5);
        const p0 = prepX(px, 0), p1 = prepX(px, 1), p2 = prepX(px, 2), p3 = prepX(px, 3);
        const xsv = f32x4.splat(load<f32>(xs + (<usize>blk << 2)));
        const kk = <usize>blk << 5;
        u0 = madd(f32x4.convert_i32x4_s(dotI8Block(pq0 + kk, p0, p1, p2, p3)), xsv, u0);
        u1 = madd(f32x4.convert_i32x4_s(dotI8Block(pq1 + kk, p0, p1, p2, p3)), xsv, u1);
        u2 = madd(f32x4.convert_i32x4_s(dotI8Block(pq2 + kk, p0, p1, p2, p3)), xsv, u2);
        u3 = madd(f32x4.convert_i32x4_s(dotI8Block(pq3 + kk, p0, p1, p2, p3)), xsv, u3);
      }
      const gs = <usize>g << 2;
      t0 = madd(u0, f32x4.splat(load<f32>(ps0 + gs)), t0);
      t1 = madd(u1, f32x4.splat(load<f32>(ps1 + gs)), t1);
      t2 = madd(u2, f32x4.splat(load<f32>(ps2 + gs)), t2);
      t3 = madd(u3, f32x4.splat(load<f32>(ps3 + gs)), t3);
    }
    storeRows4(y, b, o, nq, hsum(t0), hsum(t1), hsum(t2), hsum(t3));
  }
  for (let o = n0 + 4 * nq; o < n1; o++) {
    const pq = q + <usize>o * <usize>K, ps = s + (<usize>o * <usize>groups << 2);
    let t = f32x4.splat(0);
    let blk = 0;
    for (let g = 0; g < groups; g++) {
      let u = f32x4.splat(0);
      for (let j = 0; j < gb; j++, blk++) {
        const px = xq + (<usize>blk << 5);
        const a = dotI8Block(pq + (<usize>blk << 5), prepX(px, 0), prepX(px, 1), prepX(px, 2), prepX(px, 3));
        u = madd(f32x4.convert_i32x4_s(a), f32x4.splat(load<f32>(xs + (<usize>blk << 2))), u);
      }
      t = madd(u, f32x4.splat(load<f32>(ps + (<usize>g << 2))), t);
    }
    store<f32>(y + (<usize>o << 2), hsum(t) + (b ? load<f32>(b + (<usize>o << 2)) : 0));
  }
}

/** The weight side of a block, prepared once for a tile of tokens (see dotI8Tok). */
@inline function prepW(pw: usize, part: i32): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const v = v128.load(pw + <usize>(part & 1 ? 16 : 0));
    return part < 2 ? i8x16.abs(v) : i8x16.lt_s(v, i8x16.splat(0));
  }
  const v = v128.load(pw + <usize>(part < 2 ? 0 : 16));
  return part & 1 ? i16x8.extend_high_i8x16_s(v) : i16x8.extend_low_i8x16_s(v);
}

/** One token's block (32 int8 at px) against a prepared weight block (relaxed: |w| and sign masks). */
@inline function dotI8Tok(px: usize, w0: v128, w1: v128, w2: v128, w3: v128): v128 {
  const x0 = v128.load(px), x1 = v128.load(px, 16);
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.add(dot7(flip(x0, w2), w0), dot7(flip(x1, w3), w1));
  }
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(x0), w0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(x0), w1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(x1), w2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(x1), w3)));
}

function gemmI8Dot(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32): void {
  const nb = K >> 5, gb = G >> 5, groups = K / G;
  const K1 = <usize>K, N4 = <usize>N << 2, xsRow = <usize>nb << 3;
  for (let o = n0; o < n1; o++) {
    const pq = q + <usize>o * K1, ps = s + (<usize>o * <usize>groups << 2);
    const bias: f32 = b ? load<f32>(b + (<usize>o << 2)) : 0;
    for (let t = 0; t < T; t += 4) {
      const nt = min(4, T - t);
      const px0 = xq + <usize>t * K1, px1 = nt > 1 ? px0 + K1 : px0, px2 = nt > 2 ? px1 + K1 : px1, px3 = nt > 3 ? px2 + K1 : px2;
      const pxs0 = xs + <usize>t * xsRow, pxs1 = nt > 1 ? pxs0 + xsRow : pxs0;
      const pxs2 = nt > 2 ? pxs1 + xsRow : pxs1, pxs3 = nt > 3 ? pxs2 + xsRow : pxs2;
      let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
      let blk = 0;
      for (let g = 0; g < groups; g++) {
        let u0 = f32x4.splat(0), u1 = u0, u2 = u0, u3 = u0;
        for (let j = 0; j < gb; j++, blk++) {
          const pw = pq + (<usize>blk << 5);
          const w0 = prepW(pw, 0), w1 = prepW(pw, 1), w2 = prepW(pw, 2), w3 = prepW(pw, 3);
          const kk = <usize>blk << 5, kf = <usize>blk << 2;
          u0 = madd(f32x4.convert_i32x4_s(dotI8Tok(px0 + kk, w0, w1, w2, w3)), f32x4.splat(load<f32>(pxs0 + kf)), u0);
          u1 = madd(f32x4.convert_i32x4_s(dotI8Tok(px1 + kk, w0, w1, w2, w3)), f32x4.splat(load<f32>(pxs1 + kf)), u1);
          u2 = madd(f32x4.convert_i32x4_s(dotI8Tok(px2 + kk, w0, w1, w2, w3)), f32x4.splat(load<f32>(pxs2 + kf)), u2);
          u3 = madd(f32x4.convert_i32x4_s(dotI8Tok(px3 + kk, w0, w1, w2, w3)), f32x4.splat(load<f32>(pxs3 + kf)), u3);
        }
        const sg = f32x4.splat(load<f32>(ps + (<usize>g << 2)));
        c0 = madd(u0, sg, c0);
        c1 = madd(u1, sg, c1);
        c2 = madd(u2, sg, c2);
        c3 = madd(u3, sg, c3);
      }
      const py = y + <usize>t * N4 + (<usize>o << 2);
      store<f32>(py, hsum(c0) + bias);
      if (nt > 1) store<f32>(py + N4, hsum(c1) + bias);
      if (nt > 2) store<f32>(py + 2 * N4, hsum(c2) + bias);
      if (nt > 3) store<f32>(py + 3 * N4, hsum(c3) + bias);
    }
  }
}

export function linearI8DotScalar(y: usize, xq: usize, xs: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32): void {
  const nb = K >> 5, gb = G >> 5, groups = K / G;
  for (let t = 0; t < T; t++) {
    const px = xq + <usize>t * <usize>K, pxs = xs + (<usize>t * <usize>nb << 3);
    for (let o = n0; o < n1; o++) {
      const pq = q + <usize>o * <usize>K;
      let acc: f32 = 0;
      for (let g = 0; g < groups; g++) {
        let u: f32 = 0;
        for (let blk = g * gb; blk < g * gb + gb; blk++) {
          let sum = 0;
          for (let i = blk * QB; i < blk * QB + QB; i++) sum += <i32>load<i8>(pq + <usize>i) * <i32>load<i8>(px + <usize>i);
          u += load<f32>(pxs + (<usize>blk << 2)) * <f32>sum;
        }
        acc += load<f32>(s + ((<usize>o * <usize>groups + <usize>g) << 2)) * u;
      }
      if (b) acc += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), acc);
    }
  }
}
