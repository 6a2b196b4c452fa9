// Linear layer, PyTorch nn.Linear layout:
//   linear(y, x, w, b, T, K, N, n0, n1)
//       y[t, o] = Σ_k x[t, k]·w[o, k] + (b ? b[o] : 0)     for t in [0, T), o in [n0, n1)
//       x: (T, K), w: (N, K) row-major as stored by PyTorch, b: (N) or 0, y: (T, N).
//       Only columns [n0, n1) of y are written, so threads can split one layer by output rows.
//       y must not alias x or w. No allocation; any sizes; pointers need no alignment.
// Variants:
//   linear        T > 1: GEMM over register tiles of 2 tokens × 4 output rows (8 f32x4 accumulators
//                 along K, reduced once per tile). o-tiles outer, tokens inner: the 4 weight rows
//                 (4·K floats) stay in L1 while the token rows stream from L2.
//                 T = 1: matvec in 4 long sequential weight streams (rows n0 + i, +q, +2q, +3q):
//                 the hardware prefetcher follows long streams; 4 adjacent rows (4 short streams
//                 per 4·K·4 bytes) measured ~2x slower from DRAM here.
//   linearScalar  plain triple loop, sequential f32 sum; the reference.

import { hsum, madd, storeRows4, sum4 } from "./vecmath";

// Tokens per block: the x rows of one block are reused by every weight tile, so they should stay in
// L2/L3 (128 × 3072 × 4 = 1.5 MB); beyond that the weights are re-streamed once per block.
const TOKEN_BLOCK: i32 = 128;

export function linear(y: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  if (T <= 0 || n0 >= n1) return;
  if (T == 1) matvec(y, x, w, b, K, n0, n1);
  else gemm(y, x, w, b, T, K, N, n0, n1);
}

/** Lanes [0, n) of f32 values at p (n in 1..4), zeros elsewhere. */
@inline function loadPartial(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

@inline function storePartial(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

function gemm(y: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const K4 = <usize>K << 2;
  const N4 = <usize>N << 2;
  const kv = <usize>(K & ~3) << 2; // bytes covered by the f32x4 loop
  for (let t0 = 0; t0 < T; t0 += TOKEN_BLOCK) {
    const t1 = min(T, t0 + TOKEN_BLOCK);
    for (let o = n0; o < n1; o += 4) {
      const no = min(4, n1 - o);
      // A partial tile repeats its last row; the extra lanes are computed and not stored.
      const pw0 = w + <usize>o * K4;
      const pw1 = no > 1 ? pw0 + K4 : pw0;
      const pw2 = no > 2 ? pw1 + K4 : pw1;
      const pw3 = no > 3 ? pw2 + K4 : pw2;
      const bias = b ? loadPartial(b + (<usize>o << 2), no) : f32x4.splat(0);
      for (let t = t0; t < t1; t += 2) {
        const px0 = x + <usize>t * K4;
        const two = t + 1 < t1;
        const px1 = two ? px0 + K4 : px0;
        let c00 = f32x4.splat(0), c01 = c00, c02 = c00, c03 = c00;
        let c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        for (let k: usize = 0; k < kv; k += 16) {
          const x0 = v128.load(px0 + k);
          const x1 = v128.load(px1 + k);
          let wv = v128.load(pw0 + k);
          c00 = madd(x0, wv, c00);
          c10 = madd(x1, wv, c10);
          wv = v128.load(pw1 + k);
          c01 = madd(x0, wv, c01);
          c11 = madd(x1, wv, c11);
          wv = v128.load(pw2 + k);
          c02 = madd(x0, wv, c02);
          c12 = madd(x1, wv, c12);
          wv = v128.load(pw3 + k);
          c03 = madd(x0, wv, c03);
          c13 = madd(x1, wv, c13);
        }
        let r0 = sum4(c00, c01, c02, c03);
        let r1 = sum4(c10, c11, c12, c13);
        for (let k = kv; k < K4; k += 4) {
          const wk = f32x4(load<f32>(pw0 + k), load<f32>(pw1 + k), load<f32>(pw2 + k), load<f32>(pw3 + k));
          r0 = madd(f32x4.splat(load<f32>(px0 + k)), wk, r0);
          r1 = madd(f32x4.splat(load<f32>(px1 + k)), wk, r1);
        }
        const py = y + <usize>t * N4 + (<usize>o << 2);
        storePartial(py, f32x4.add(r0, bias), no);
        if (two) storePartial(py + N4, f32x4.add(r1, bias), no);
      }
    }
  }
}

function matvec(y: usize, x: usize, w: usize, b: usize, K: i32, n0: i32, n1: i32): void {
  const K4 = <usize>K << 2;
  const kv = <usize>(K & ~3) << 2;
  const q = (n1 - n0) >> 2; // rows per stream
  const qBytes = <usize>q * K4;
  for (let i = 0; i < q; i++) {
    const o = n0 + i;
    const pw0 = w + <usize>o * K4;
    const pw1 = pw0 + qBytes, pw2 = pw1 + qBytes, pw3 = pw2 + qBytes;
    let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
    for (let k: usize = 0; k < kv; k += 16) {
      const xv = v128.load(x + k);
      c0 = madd(xv, v128.load(pw0 + k), c0);
      c1 = madd(xv, v128.load(pw1 + k), c1);
      c2 = madd(xv, v128.load(pw2 + k), c2);
      c3 = madd(xv, v128.load(pw3 + k), c3);
    }
    let s0 = hsum(c0), s1 = hsum(c1), s2 = hsum(c2), s3 = hsum(c3);
    for (let k = kv; k < K4; k += 4) {
      const xk = load<f32>(x + k);
      s0 += xk * load<f32>(pw0 + k);
      s1 += xk * load<f32>(pw1 + k);
      s2 += xk * load<f32>(pw2 + k);
      s3 += xk * load<f32>(pw3 + k);
    }
    storeRows4(y, b, o, q, s0, s1, s2, s3);
  }
  // The last (n1 - n0) mod 4 rows, one at a time.
  for (let o = n0 + 4 * q; o < n1; o++) {
    const pw = w + <usize>o * K4;
    let c0 = f32x4.splat(0), c1 = c0;
    let k: usize = 0;
    for (; k + 32 <= kv; k += 32) {
      c0 = madd(v128.load(x + k), v128.load(pw + k), c0);
      c1 = madd(v128.load(x + k, 16), v128.load(pw + k, 16), c1);
    }
    if (k < kv) c0 = madd(v128.load(x + k), v128.load(pw + k), c0);
    let s = hsum(f32x4.add(c0, c1));
    for (k = kv; k < K4; k += 4) s += load<f32>(x + k) * load<f32>(pw + k);
    if (b) s += load<f32>(b + (<usize>o << 2));
    store<f32>(y + (<usize>o << 2), s);
  }
}

export function linearScalar(y: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  for (let t = 0; t < T; t++) {
    for (let o = n0; o < n1; o++) {
      let s: f32 = 0;
      for (let k = 0; k < K; k++) {
        s += load<f32>(x + ((<usize>t * <usize>K + <usize>k) << 2)) * load<f32>(w + ((<usize>o * <usize>K + <usize>k) << 2));
      }
      if (b) s += load<f32>(b + (<usize>o << 2));
      store<f32>(y + ((<usize>t * <usize>N + <usize>o) << 2), s);
    }
  }
}
