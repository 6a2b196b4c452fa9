// Row-wise softmax over x: (rows, cols), f32 row-major; y: (rows, cols) may alias x.
//   y[r, c] = m[c] · e^(x[r, c] - max_r) / Σ_c' m[c'] · e^(x[r, c'] - max_r),   max_r over kept columns
// mask: 0 (keep everything) or a pointer to u8[cols], shared by all rows, where 0 means excluded:
// an excluded column gets exactly 0, and a row with nothing kept (or only -inf kept) is all zeros.
// Variants: SIMD128 (vector exp, f32x4 partial sums) and `softmaxScalar` (Mathf.exp, sequential sums).

import { expV, hsum, keepMask4 } from "./vecmath";

export function softmax(y: usize, x: usize, mask: usize, rows: i32, cols: i32): void {
  if (cols <= 0) return;
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const py = y + <usize>r * rowBytes;
    if (!softmaxRow(py, x + <usize>r * rowBytes, mask, cols)) memory.fill(py, 0, rowBytes);
  }
}

/**
 * One row: y[0, n) = softmax of x[0, n) over the columns mask keeps (y may alias x). Returns false,
 * writing nothing, when no column is kept or every kept one is -inf. Attention's score rows use it too.
 */
@inline export function softmaxRow(py: usize, px: usize, mask: usize, n: i32): bool {
  const rowBytes = <usize>n << 2;
  const cv = <usize>(n & ~3) << 2;
  const ninf = f32x4.splat(-Infinity);
  // 1. max over kept columns
  let vmax = ninf;
  for (let i: usize = 0; i < cv; i += 16) {
    let v = v128.load(px + i);
    if (mask) v = v128.bitselect(v, ninf, keepMask4(mask + (i >> 2)));
    vmax = f32x4.max(vmax, v);
  }
  let m = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)), max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
  for (let i = cv; i < rowBytes; i += 4) {
    if (mask == 0 || load<u8>(mask + (i >> 2)) != 0) m = max(m, load<f32>(px + i));
  }
  if (m == -Infinity) return false;
  // 2. e = exp(x - max) (0 where excluded), sum
  const vm = f32x4.splat(m);
  let acc = f32x4.splat(0);
  for (let i: usize = 0; i < cv; i += 16) {
    let e = expV(f32x4.sub(v128.load(px + i), vm));
    if (mask) e = v128.and(e, keepMask4(mask + (i >> 2)));
    acc = f32x4.add(acc, e);
    v128.store(py + i, e);
  }
  let s = hsum(acc);
  for (let i = cv; i < rowBytes; i += 4) {
    let e: f32 = 0;
    if (mask == 0 || load<u8>(mask + (i >> 2)) != 0) e = Mathf.exp(load<f32>(px + i) - m);
    s += e;
    store<f32>(py + i, e);
  }
  // 3. normalise
  const inv: f32 = 1.0 / s;
  const vinv = f32x4.splat(inv);
  for (let i: usize = 0; i < cv; i += 16) v128.store(py + i, f32x4.mul(v128.load(py + i), vinv));
  for (let i = cv; i < rowBytes; i += 4) store<f32>(py + i, load<f32>(py + i) * inv);
  return true;
}

export function softmaxScalar(y: usize, x: usize, mask: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const px = x + ((<usize>r * <usize>cols) << 2);
    const py = y + ((<usize>r * <usize>cols) << 2);
    let m: f32 = -Infinity;
    for (let c = 0; c < cols; c++) {
      if (mask == 0 || load<u8>(mask + <usize>c) != 0) m = max(m, load<f32>(px + (<usize>c << 2)));
    }
    if (m == -Infinity) {
      for (let c = 0; c < cols; c++) store<f32>(py + (<usize>c << 2), 0);
      continue;
    }
    let s: f32 = 0;
    for (let c = 0; c < cols; c++) {
      let e: f32 = 0;
      if (mask == 0 || load<u8>(mask + <usize>c) != 0) e = Mathf.exp(load<f32>(px + (<usize>c << 2)) - m);
      s += e;
      store<f32>(py + (<usize>c << 2), e);
    }
    const inv: f32 = 1.0 / s;
    for (let c = 0; c < cols; c++) store<f32>(py + (<usize>c << 2), load<f32>(py + (<usize>c << 2)) * inv);
  }
}
