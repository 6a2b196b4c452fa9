// Row-wise normalisation over x: (T, C), f32 row-major; y: (T, C) may alias x.
//   layerNorm(y, x, w, b, T, C, eps)  y[t] = (x[t] - μ) / √(σ² + eps) · w + b
//       μ = mean(x[t]), σ² = mean((x[t] - μ)²) (biased, like PyTorch), two passes over the row;
//       w: (C) or 0 (no scale), b: (C) or 0 (no shift)
//   rmsNorm(y, x, w, T, C, eps)       y[t] = x[t] / √(mean(x[t]²) + eps) · w     w: (C) or 0
// Variants: SIMD128 (f32x4 partial sums, scalar tail) and `<name>Scalar` (plain sequential f32 loops).

import { hsum, madd } from "./vecmath";

export function layerNorm(y: usize, x: usize, w: usize, b: usize, T: i32, C: i32, eps: f32): void {
  if (C <= 0) return;
  const rowBytes = <usize>C << 2;
  const cv = <usize>(C & ~3) << 2;
  for (let t = 0; t < T; t++) {
    const px = x + <usize>t * rowBytes;
    const py = y + <usize>t * rowBytes;
    let acc = f32x4.splat(0);
    for (let i: usize = 0; i < cv; i += 16) acc = f32x4.add(acc, v128.load(px + i));
    let s = hsum(acc);
    for (let i = cv; i < rowBytes; i += 4) s += load<f32>(px + i);
    const mean = s / <f32>C;
    const vmean = f32x4.splat(mean);
    acc = f32x4.splat(0);
    for (let i: usize = 0; i < cv; i += 16) {
      const d = f32x4.sub(v128.load(px + i), vmean);
      acc = madd(d, d, acc);
    }
    let ss = hsum(acc);
    for (let i = cv; i < rowBytes; i += 4) {
      const d = load<f32>(px + i) - mean;
      ss += d * d;
    }
    const rstd: f32 = 1.0 / Mathf.sqrt(ss / <f32>C + eps);
    const vrstd = f32x4.splat(rstd);
    for (let i: usize = 0; i < cv; i += 16) {
      let v = f32x4.mul(f32x4.sub(v128.load(px + i), vmean), vrstd);
      if (w) v = f32x4.mul(v, v128.load(w + i));
      if (b) v = f32x4.add(v, v128.load(b + i));
      v128.store(py + i, v);
    }
    for (let i = cv; i < rowBytes; i += 4) {
      let v = (load<f32>(px + i) - mean) * rstd;
      if (w) v *= load<f32>(w + i);
      if (b) v += load<f32>(b + i);
      store<f32>(py + i, v);
    }
  }
}

export function layerNormScalar(y: usize, x: usize, w: usize, b: usize, T: i32, C: i32, eps: f32): void {
  for (let t = 0; t < T; t++) {
    const px = x + ((<usize>t * <usize>C) << 2);
    const py = y + ((<usize>t * <usize>C) << 2);
    let s: f32 = 0;
    for (let c = 0; c < C; c++) s += load<f32>(px + (<usize>c << 2));
    const mean = s / <f32>C;
    let ss: f32 = 0;
    for (let c = 0; c < C; c++) {
      const d = load<f32>(px + (<usize>c << 2)) - mean;
      ss += d * d;
    }
    const rstd: f32 = 1.0 / Mathf.sqrt(ss / <f32>C + eps);
    for (let c = 0; c < C; c++) {
      const o = <usize>c << 2;
      let v = (load<f32>(px + o) - mean) * rstd;
      if (w) v *= load<f32>(w + o);
      if (b) v += load<f32>(b + o);
      store<f32>(py + o, v);
    }
  }
}

export function rmsNorm(y: usize, x: usize, w: usize, T: i32, C: i32, eps: f32): void {
  if (C <= 0) return;
  const rowBytes = <usize>C << 2;
  const cv = <usize>(C & ~3) << 2;
  for (let t = 0; t < T; t++) {
    const px = x + <usize>t * rowBytes;
    const py = y + <usize>t * rowBytes;
    let acc = f32x4.splat(0);
    for (let i: usize = 0; i < cv; i += 16) {
      const v = v128.load(px + i);
      acc = madd(v, v, acc);
    }
    let ss = hsum(acc);
    for (let i = cv; i < rowBytes; i += 4) {
      const v = load<f32>(px + i);
      ss += v * v;
    }
    const r: f32 = 1.0 / Mathf.sqrt(ss / <f32>C + eps);
    const vr = f32x4.splat(r);
    for (let i: usize = 0; i < cv; i += 16) {
      let v = f32x4.mul(v128.load(px + i), vr);
      if (w) v = f32x4.mul(v, v128.load(w + i));
      v128.store(py + i, v);
    }
    for (let i = cv; i < rowBytes; i += 4) {
      let v = load<f32>(px + i) * r;
      if (w) v *= load<f32>(w + i);
      store<f32>(py + i, v);
    }
  }
}

export function rmsNormScalar(y: usize, x: usize, w: usize, T: i32, C: i32, eps: f32): void {
  for (let t = 0; t < T; t++) {
    const px = x + ((<usize>t * <usize>C) << 2);
    const py = y + ((<usize>t * <usize>C) << 2);
    let ss: f32 = 0;
    for (let c = 0; c < C; c++) {
      const v = load<f32>(px + (<usize>c << 2));
      ss += v * v;
    }
    const r: f32 = 1.0 / Mathf.sqrt(ss / <f32>C + eps);
    for (let c = 0; c < C; c++) {
      const o = <usize>c << 2;
      let v = load<f32>(px + o) * r;
      if (w) v *= load<f32>(w + o);
      store<f32>(py + o, v);
    }
  }
}
