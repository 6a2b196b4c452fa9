// Integer GEMMs for T > 1 rows of int8 activations (prefill, batched decode steps) against q4 or
// int8 weights, in tiles of 4 tokens whose per-block activation scales sit in one vector.
//
//   actTiles(xt, xw, xq, xs, T, K)   after quantizeActI8(xq, xs, x, T, K, 8):
//       xt: (ceil(T/4), 2, K/32, 4) f32 — per tile of 4 tokens and block, the 4 tokens' scales
//           xs[t,blk] (then the 4 block sums c[t,blk]); tokens past T get 0 (their results vanish)
//       xw: (T, K) int16 copy of xq, or 0 for none (the int8-weight GEMM reads 16-bit activations)
//   gemmQ4Tiles(y, xq, xt, q, s, b, T, K, N, n0, n1)        q4 weights (see linear_dot.ts):
//       y[t,o] = Σ_blk d[o,blk]·xs[t,blk]·(Σ_{k in blk} u[o,k]·xq[t,k]) + m[o,blk]·c[t,blk] + b[o]
//   gemmI8Tiles(y, xw, xt, q, s, b, T, K, N, n0, n1, G)     int8 weights (quantizeI8, groups of G):
//       y[t,o] = Σ_g s[o,g] · Σ_{blk in g} xs[t,blk]·(Σ_{k in blk} q[o,k]·xw[t,k]) + b[o]
//   K % 32 == 0 (and G % 32 == 0, K % G == 0); only columns [n0, n1) of y (T, N) are written.
//   The formulas are linearQ4's and linearI8Dot's; the *Scalar twins are plain loops over them.
//
// Loops: for a tile of 4 tokens and 2 weight rows, block by block: each row's block is unpacked once
// (q4: two nibble vectors; int8: widened to i16) and dotted with the 4 tokens; the 4 block sums are
// folded into one vector whose lanes are the tokens (reduce4), so the block's scale is one splat
// times the tile's scale vector, and each row keeps ONE f32x4 accumulator. Live vectors stay under
// V8's 16 xmm registers: the old gemmQ4 (one row, 4 accumulators, 4 scale vectors and a swizzle
// index) spilled ~12 vectors a block. Rows go in panels of PANEL so a token tile (≤ 4·K·2 bytes) is
// read from L1 for every row of the panel.
// Exactness: every block sum is exact in integers and in f32 (q4: ≤ 32·15·127; int8: ≤ 32·127²).

import { dotNib, nibHi, nibLo, reduce4, SB } from "./linear_dot";
import { madd } from "./vecmath";

const PANEL: i32 = 32;

/** The scale (or min) of block blk in all four lanes: a bf16 splat shifted into f32 position. */
@inline function scaleSplat(p: usize, blk: i32): v128 {
  if (SB == 2) return i32x4.shl(v128.load16_splat(p + (<usize>blk << 1)), 16);
  return v128.load32_splat(p + (<usize>blk << 2));
}

// ---- activation tiles ----------------------------------------------------------------------------

export function actTiles(xt: usize, xw: usize, xq: usize, xs: usize, T: i32, K: i32): void {
  // The scales: T·K/16 values, scalar (≤ 3 % of the int16 copy's bytes).
  const nb = K >> 5;
  const tiles = (T + 3) >> 2;
  for (let j = 0; j < tiles; j++) {
    const pt = xt + (<usize>j * <usize>nb << 5);
    for (let i = 0; i < 4; i++) {
      const t = j * 4 + i;
      const p = xs + (<usize>t * <usize>nb << 3);
      for (let r = 0; r < 2 * nb; r++) store<f32>(pt + (<usize>r << 4) + (<usize>i << 2), t < T ? load<f32>(p + (<usize>r << 2)) : 0);
    }
  }
  if (xw == 0) return;
  const n = <usize>T * <usize>K; // a multiple of 32
  for (let i: usize = 0; i < n; i += 16) {
    const v = v128.load(xq + i);
    v128.store(xw + (i << 1), i16x8.extend_low_i8x16_s(v));
    v128.store(xw + (i << 1), i16x8.extend_high_i8x16_s(v), 16);
  }
}

export function actTilesScalar(xt: usize, xw: usize, xq: usize, xs: usize, T: i32, K: i32): void {
  const nb = K >> 5;
  const tiles = (T + 3) >> 2;
  for (let j = 0; j < tiles; j++) {
    for (let blk = 0; blk < nb; blk++) {
      for (let i = 0; i < 4; i++) {
        const t = j * 4 + i;
        const a: f32 = t < T ? load<f32>(xs + ((<usize>t * <usize>nb * 2 + <usize>blk) << 2)) : 0;
        const c: f32 = t < T ? load<f32>(xs + ((<usize>t * <usize>nb * 2 + <usize>(nb + blk)) << 2)) : 0;
        store<f32>(xt + ((<usize>j * <usize>nb * 8 + <usize>blk * 4 + <usize>i) << 2), a);
        store<f32>(xt + ((<usize>j * <usize>nb * 8 + <usize>(nb + blk) * 4 + <usize>i) << 2), c);
      }
    }
  }
  if (xw == 0) return;
  const n = <usize>T * <usize>K;
  for (let i: usize = 0; i < n; i++) store<i16>(xw + (i << 1), <i16>load<i8>(xq + i));
}

/** Lanes t of a tile's results (+ bias) to y[t0 + t, o], t < nt. */
@inline function storeTile(y: usize, acc: v128, bias: f32, t0: i32, nt: i32, N: i32, o: i32): void {
  const N4 = <usize>N << 2;
  const py = y + <usize>t0 * N4 + (<usize>o << 2);
  store<f32>(py, f32x4.extract_lane(acc, 0) + bias);
  if (nt > 1) store<f32>(py + N4, f32x4.extract_lane(acc, 1) + bias);
  if (nt > 2) store<f32>(py + 2 * N4, f32x4.extract_lane(acc, 2) + bias);
  if (nt > 3) store<f32>(py + 3 * N4, f32x4.extract_lane(acc, 3) + bias);
}

// ---- q4 weights ----------------------------------------------------------------------------------

/** acc + one q4 row's block (16 bytes at pw) against the tile's 4 tokens (32 int8 each at px0..px3). */
@inline function q4Block(acc: v128, pw: usize, ps: usize, pm: usize, blk: i32, px0: usize, px1: usize, px2: usize, px3: usize, xsv: v128, cv: v128): v128 {
  const v = v128.load(pw);
  const lo = nibLo(v), hi = nibHi(v, lo);
  const a0 = dotNib(lo, hi, v128.load(px0), v128.load(px0, 16));
  const a1 = dotNib(lo, hi, v128.load(px1), v128.load(px1, 16));
  const a2 = dotNib(lo, hi, v128.load(px2), v128.load(px2, 16));
  const a3 = dotNib(lo, hi, v128.load(px3), v128.load(px3, 16));
  return madd(reduce4(a0, a1, a2, a3), f32x4.mul(scaleSplat(ps, blk), xsv), madd(scaleSplat(pm, blk), cv, acc));
}

export function gemmQ4Tiles(y: usize, xq: usize, xt: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB, mOff = <usize>nb * SB;
  const K1 = <usize>K, tileS = <usize>nb << 5, cOff = <usize>nb << 4;
  for (let op = n0; op < n1; op += PANEL) {
    const oe = min(n1, op + PANEL);
    for (let t = 0; t < T; t += 4) {
      const nt = min(4, T - t);
      // A partial tile repeats its last token (its scales in xt are 0; the extra lanes are not stored).
      const x0 = xq + <usize>t * K1, x1 = nt > 1 ? x0 + K1 : x0, x2 = nt > 2 ? x1 + K1 : x1, x3 = nt > 3 ? x2 + K1 : x2;
      const pt = xt + <usize>(t >> 2) * tileS;
      let o = op;
      for (; o + 1 < oe; o += 2) {
        const pqA = q + <usize>o * rowQ, pqB = pqA + rowQ;
        const psA = s + <usize>o * rowS, psB = psA + rowS;
        let accA = f32x4.splat(0), accB = accA;
        for (let blk = 0; blk < nb; blk++) {
          const kx = <usize>blk << 5, kq = <usize>blk << 4;
          const xsv = v128.load(pt + kq), cv = v128.load(pt + cOff + kq);
          accA = q4Block(accA, pqA + kq, psA, psA + mOff, blk, x0 + kx, x1 + kx, x2 + kx, x3 + kx, xsv, cv);
          accB = q4Block(accB, pqB + kq, psB, psB + mOff, blk, x0 + kx, x1 + kx, x2 + kx, x3 + kx, xsv, cv);
        }
        storeTile(y, accA, b ? load<f32>(b + (<usize>o << 2)) : 0, t, nt, N, o);
        storeTile(y, accB, b ? load<f32>(b + (<usize>(o + 1) << 2)) : 0, t, nt, N, o + 1);
      }
      if (o < oe) {
        const pq = q + <usize>o * rowQ, ps = s + <usize>o * rowS;
        let acc = f32x4.splat(0);
        for (let blk = 0; blk < nb; blk++) {
          const kx = <usize>blk << 5, kq = <usize>blk << 4;
          acc = q4Block(acc, pq + kq, ps, ps + mOff, blk, x0 + kx, x1 + kx, x2 + kx, x3 + kx, v128.load(pt + kq), v128.load(pt + cOff + kq));
        }
        storeTile(y, acc, b ? load<f32>(b + (<usize>o << 2)) : 0, t, nt, N, o);
      }
    }
  }
}

@inline function bf16At(p: usize, i: i32): f32 {
  if (SB == 2) return reinterpret<f32>(<u32>load<u16>(p + (<usize>i << 1)) << 16);
  return load<f32>(p + (<usize>i << 2));
}

export function gemmQ4TilesScalar(y: usize, xq: usize, xt: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowQ = <usize>K >> 1, rowS = <usize>nb * 2 * SB;
  for (let t = 0; t < T; t++) {
    const px = xq + <usize>t * <usize>K;
    const pt = xt + ((<usize>(t >> 2) * <usize>nb * 8 + <usize>(t & 3)) << 2); // + 16·blk: xs, + 16·(nb + blk): c
    for (let o = n0; o < n1; o++) {
      const pq = q + <usize>o * rowQ, pd = s + <usize>o * rowS, pm = pd + <usize>nb * SB;
      let acc: f32 = 0;
      for (let blk = 0; blk < nb; blk++) {
        let sum = 0;
        for (let i = 0; i < 16; i++) {
          const byte = <i32>load<u8>(pq + <usize>(blk * 16 + i));
          sum += (byte & 15) * <i32>load<i8>(px + <usize>(blk * 32 + i)) + (byte >> 4) * <i32>load<i8>(px + <usize>(blk * 32 + 16 + i));
        }
        const xsb = load<f32>(pt + (<usize>blk << 4)), c = load<f32>(pt + (<usize>(nb + blk) << 4));
        acc += bf16At(pd, blk) * xsb * <f32>sum + bf16At(pm, blk) * c;
      }
      if (b) acc += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), acc);
    }
  }
}

// ---- int8 weights --------------------------------------------------------------------------------

/** (Σa, Σb, Σc, Σd) of four i32x4 as f32 lanes (exact: each |Σ| ≤ 32·127² < 2^24). */
@inline function reduceI32(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.convert_i32x4_s(i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7)));
}

/** One token's block: 32 int16 activations at px against the row's block widened to i16 (w0..w3). */
@inline function dotW(px: usize, w0: v128, w1: v128, w2: v128, w3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(px)), i32x4.dot_i16x8_s(w1, v128.load(px, 16))),
    i32x4.add(i32x4.dot_i16x8_s(w2, v128.load(px, 32)), i32x4.dot_i16x8_s(w3, v128.load(px, 48))));
}

/** acc + one int8 row's block (32 bytes at pw) against the tile's 4 tokens (32 int16 each at px0..px3), times e (lanes = tokens). */
@inline function i8Block(acc: v128, pw: usize, px0: usize, px1: usize, px2: usize, px3: usize, e: v128): v128 {
  const v0 = v128.load(pw), v1 = v128.load(pw, 16);
  const w0 = i16x8.extend_low_i8x16_s(v0), w1 = i16x8.extend_high_i8x16_s(v0);
  const w2 = i16x8.extend_low_i8x16_s(v1), w3 = i16x8.extend_high_i8x16_s(v1);
  const r = reduceI32(dotW(px0, w0, w1, w2, w3), dotW(px1, w0, w1, w2, w3), dotW(px2, w0, w1, w2, w3), dotW(px3, w0, w1, w2, w3));
  return madd(r, e, acc);
}

export function gemmI8Tiles(y: usize, xw: usize, xt: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32): void {
  const nb = K >> 5, gb = G >> 5, groups = K / G;
  const K1 = <usize>K, K2 = <usize>K << 1, tileS = <usize>nb << 5, rowS = <usize>groups << 2;
  for (let op = n0; op < n1; op += PANEL) {
    const oe = min(n1, op + PANEL);
    for (let t = 0; t < T; t += 4) {
      const nt = min(4, T - t);
      const x0 = xw + <usize>t * K2, x1 = nt > 1 ? x0 + K2 : x0, x2 = nt > 2 ? x1 + K2 : x1, x3 = nt > 3 ? x2 + K2 : x2;
      const pt = xt + <usize>(t >> 2) * tileS;
      let o = op;
      for (; o + 1 < oe; o += 2) {
        const pqA = q + <usize>o * K1, pqB = pqA + K1;
        const psA = s + <usize>o * rowS, psB = psA + rowS;
        let accA = f32x4.splat(0), accB = accA;
        let blk = 0;
        for (let g = 0; g < groups; g++) {
          const sA = v128.load32_splat(psA + (<usize>g << 2)), sB = v128.load32_splat(psB + (<usize>g << 2));
          for (let j = 0; j < gb; j++, blk++) {
            const kw = <usize>blk << 5, kx = <usize>blk << 6;
            const xsv = v128.load(pt + (<usize>blk << 4));
            accA = i8Block(accA, pqA + kw, x0 + kx, x1 + kx, x2 + kx, x3 + kx, f32x4.mul(xsv, sA));
            accB = i8Block(accB, pqB + kw, x0 + kx, x1 + kx, x2 + kx, x3 + kx, f32x4.mul(xsv, sB));
          }
        }
        storeTile(y, accA, b ? load<f32>(b + (<usize>o << 2)) : 0, t, nt, N, o);
        storeTile(y, accB, b ? load<f32>(b + (<usize>(o + 1) << 2)) : 0, t, nt, N, o + 1);
      }
      if (o < oe) {
        const pq = q + <usize>o * K1, ps = s + <usize>o * rowS;
        let acc = f32x4.splat(0);
        let blk = 0;
        for (let g = 0; g < groups; g++) {
          const sg = v128.load32_splat(ps + (<usize>g << 2));
          for (let j = 0; j < gb; j++, blk++) {
            const kw = <usize>blk << 5, kx = <usize>blk << 6;
            acc = i8Block(acc, pq + kw, x0 + kx, x1 + kx, x2 + kx, x3 + kx, f32x4.mul(v128.load(pt + (<usize>blk << 4)), sg));
          }
        }
        storeTile(y, acc, b ? load<f32>(b + (<usize>o << 2)) : 0, t, nt, N, o);
      }
    }
  }
}

export function gemmI8TilesScalar(y: usize, xw: usize, xt: usize, q: usize, s: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32, G: i32): void {
  const nb = K >> 5, gb = G >> 5, groups = K / G;
  for (let t = 0; t < T; t++) {
    const px = xw + (<usize>t * <usize>K << 1);
    const pt = xt + ((<usize>(t >> 2) * <usize>nb * 8 + <usize>(t & 3)) << 2);
    for (let o = n0; o < n1; o++) {
      const pq = q + <usize>o * <usize>K;
      let acc: f32 = 0;
      for (let g = 0; g < groups; g++) {
        let u: f32 = 0;
        for (let blk = g * gb; blk < g * gb + gb; blk++) {
          let sum = 0;
          for (let i = blk * 32; i < blk * 32 + 32; i++) sum += <i32>load<i8>(pq + <usize>i) * <i32>load<i16>(px + (<usize>i << 1));
          u += load<f32>(pt + (<usize>blk << 4)) * <f32>sum;
        }
        acc += load<f32>(s + ((<usize>o * <usize>groups + <usize>g) << 2)) * u;
      }
      if (b) acc += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), acc);
    }
  }
}
