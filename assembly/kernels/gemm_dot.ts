// The integer GEMM for T > 1 rows of int8 activations (prefill, batched decode steps) against q4
// weights, in tiles of 4 tokens whose per-block activation scales sit in one vector.
//
//   actTiles(xt, xs, T, K)   after quantizeActI8(xq, xs, x, T, K, 8):
//       xt: (ceil(T/4), 2, K/32, 4) f32 — per tile of 4 tokens and block, the 4 tokens' scales
//           xs[t,blk] (then the 4 block sums c[t,blk]); tokens past T get 0 (their results vanish)
//   gemmQ4Tiles(y, xq, xt, q, s, b, T, K, N, n0, n1)        q4 weights (see linear_dot.ts):
//       y[t,o] = Σ_blk d[o,blk]·xs[t,blk]·(Σ_{k in blk} u[o,k]·xq[t,k]) + m[o,blk]·c[t,blk] + b[o]
//   K % 32 == 0; only columns [n0, n1) of y (T, N) are written.
//   The formula is linearQ4's; the *Scalar twins are plain loops over it.
//
// Loops: for a tile of 4 tokens and 2 weight rows, block by block: each row's block is unpacked once
// (two nibble vectors) and dotted with the 4 tokens; the 4 block sums are
// folded into one vector whose lanes are the tokens (reduce4), so the block's scale is one splat
// times the tile's scale vector, and each row keeps ONE f32x4 accumulator. Live vectors stay under
// V8's 16 xmm registers: the old gemmQ4 (one row, 4 accumulators, 4 scale vectors and a swizzle
// index) spilled ~12 vectors a block. Rows go in panels of PANEL so a token tile (≤ 4·K·2 bytes) is
// read from L1 for every row of the panel.
// Exactness: every block sum is exact in integers and in f32 (≤ 32·15·127).
// Tried and lost (relaxed, T = 128, 768→3072, same run; f32 GEMM 21.8 ms, this kernel 19.3):
//   the same tiling for int8 weights widened to i16 against int16 activations, 33 ms — int8 at
//   T > 1 keeps linearI8's expansion to the f32 GEMM (21.9 ms); lanes = rows with the nibbles
//   transposed 4×4 and splatted activations (fewest operations on paper), 20.9-27.9 ms (V8 hoists
//   the 16 broadcasts and spills); one row per tile 21.3; row panels of 8-128 19.2-19.7 (not memory).

import { dotNib, nibHi, nibLo, reduce4, SB } from "./linear_dot";
import { madd } from "./vecmath";

const PANEL: i32 = 32;

/** The scale (or min) of block blk in all four lanes: a bf16 splat shifted into f32 position. */
@inline function scaleSplat(p: usize, blk: i32): v128 {
  if (SB == 2) return i32x4.shl(v128.load16_splat(p + (<usize>blk << 1)), 16);
  return v128.load32_splat(p + (<usize>blk << 2));
}

// ---- activation tiles ----------------------------------------------------------------------------

export function actTiles(xt: usize, xs: usize, T: i32, K: i32): void {
  // T·K/16 values: scalar.
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
}

export function actTilesScalar(xt: usize, xs: usize, T: i32, K: i32): void {
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
