// Element-wise ops on f32 vectors of n elements (y may alias any input):
//   relu(y, x, n)        y = max(x, 0)                           (NaN → 0)
//   gelu(y, x, n)        y = x·½·(1 + erf(x/√2))   computed as x·½·erfc(-x/√2), the same function
//                        without the cancellation of 1 + erf for x ≪ 0; erfc from Sun/musl erff.c
//   geluTanh(y, x, n)    y = x·½·(1 + tanh(√(2/π)·(x + 0.044715·x³)))   (PyTorch approximate='tanh'),
//                        computed as x / (1 + e^(-2u)), u = √(2/π)·(x + 0.044715·x³): the same function
//   silu(y, x, n)        y = x / (1 + e^-x)
//   swiglu(y, gate, up, n)   y = silu(gate)·up = gate / (1 + e^-gate) · up   (LLaMA's MLP), rounded
//                        exactly as silu then a multiply: bitwise silu(gate)·up of the same build
//   add(y, a, b, n)      y = a + b
//   scale(y, x, s, n)    y = s·x
//   addBias(y, b, T, C)  y[t, c] += b[c]                          y: (T, C), b: (C)
//   embedGather(y, table, ids, T, C)   y[t, :] = table[ids[t], :]  y: (T, C), table: (V, C), ids: i32[T]
// Variants: each op is a SIMD128 kernel (f32x4 with a scalar tail) plus `<name>Scalar`, a plain loop
// with the same signature and the same maths (scalar erfcf / Mathf.exp), kept as the reference.

import { erfcf, erfcV, expV } from "./vecmath";

const SQRT1_2: f32 = 0.70710678118654752;
const GELU_TANH_K: f32 = 0.7978845608028654; // √(2/π)
const GELU_TANH_C: f32 = 0.044715;

// ---- relu ----

export function relu(y: usize, x: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  const zero = f32x4.splat(0);
  for (let i: usize = 0; i < nv; i += 16) {
    v128.store(y + i, f32x4.pmax(zero, v128.load(x + i)));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    const v = load<f32>(x + i);
    store<f32>(y + i, v > 0 ? v : 0);
  }
}

export function reluScalar(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), v > 0 ? v : 0);
  }
}

// ---- gelu (erf form) ----

@inline function geluV(v: v128): v128 {
  const half = f32x4.mul(v, f32x4.splat(0.5));
  return f32x4.mul(half, erfcV(f32x4.mul(v, f32x4.splat(-SQRT1_2))));
}

@inline function geluS(v: f32): f32 {
  return v * 0.5 * erfcf(v * -SQRT1_2);
}

export function gelu(y: usize, x: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  for (let i: usize = 0; i < nv; i += 16) {
    v128.store(y + i, geluV(v128.load(x + i)));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    store<f32>(y + i, geluS(load<f32>(x + i)));
  }
}

export function geluScalar(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<f32>(y + (<usize>i << 2), geluS(load<f32>(x + (<usize>i << 2))));
  }
}

// ---- gelu (tanh approximation) ----
// ½(1 + tanh u) = 1 / (1 + e^(-2u)) exactly, so y = x / (1 + e^(-2u)): one exp, no cancellation.

@inline function geluTanhV(v: v128): v128 {
  const v3 = f32x4.mul(f32x4.mul(v, v), v);
  const u = f32x4.mul(f32x4.splat(GELU_TANH_K), f32x4.add(v, f32x4.mul(f32x4.splat(GELU_TANH_C), v3)));
  const e = expV(f32x4.mul(u, f32x4.splat(-2)));
  return f32x4.div(v, f32x4.add(f32x4.splat(1), e));
}

@inline function geluTanhS(v: f32): f32 {
  const u = GELU_TANH_K * (v + GELU_TANH_C * (v * v * v));
  return v / (1 + Mathf.exp(-2 * u));
}

export function geluTanh(y: usize, x: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  for (let i: usize = 0; i < nv; i += 16) {
    v128.store(y + i, geluTanhV(v128.load(x + i)));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    store<f32>(y + i, geluTanhS(load<f32>(x + i)));
  }
}

export function geluTanhScalar(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<f32>(y + (<usize>i << 2), geluTanhS(load<f32>(x + (<usize>i << 2))));
  }
}

// ---- silu ----

export function silu(y: usize, x: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  const one = f32x4.splat(1);
  for (let i: usize = 0; i < nv; i += 16) {
    const v = v128.load(x + i);
    v128.store(y + i, f32x4.div(v, f32x4.add(one, expV(f32x4.neg(v)))));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    const v = load<f32>(x + i);
    store<f32>(y + i, v / (1 + Mathf.exp(-v)));
  }
}

export function siluScalar(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), v / (1 + Mathf.exp(-v)));
  }
}

// ---- swiglu ----
// The silu expression above, then ·up: no reassociation, so the fused kernel matches the two-pass one.

export function swiglu(y: usize, gate: usize, up: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  const one = f32x4.splat(1);
  for (let i: usize = 0; i < nv; i += 16) {
    const g = v128.load(gate + i);
    const sg = f32x4.div(g, f32x4.add(one, expV(f32x4.neg(g))));
    v128.store(y + i, f32x4.mul(sg, v128.load(up + i)));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    const g = load<f32>(gate + i);
    store<f32>(y + i, g / (1 + Mathf.exp(-g)) * load<f32>(up + i));
  }
}

export function swigluScalar(y: usize, gate: usize, up: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(gate + o);
    store<f32>(y + o, g / (1 + Mathf.exp(-g)) * load<f32>(up + o));
  }
}

// ---- add, scale ----

export function add(y: usize, a: usize, b: usize, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  for (let i: usize = 0; i < nv; i += 16) {
    v128.store(y + i, f32x4.add(v128.load(a + i), v128.load(b + i)));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    store<f32>(y + i, load<f32>(a + i) + load<f32>(b + i));
  }
}

export function addScalar(y: usize, a: usize, b: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

export function scale(y: usize, x: usize, s: f32, n: i32): void {
  const nv = <usize>(n & ~3) << 2;
  const vs = f32x4.splat(s);
  for (let i: usize = 0; i < nv; i += 16) {
    v128.store(y + i, f32x4.mul(v128.load(x + i), vs));
  }
  for (let i = nv; i < (<usize>n << 2); i += 4) {
    store<f32>(y + i, load<f32>(x + i) * s);
  }
}

export function scaleScalar(y: usize, x: usize, s: f32, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(x + o) * s);
  }
}

// ---- addBias ----

export function addBias(y: usize, b: usize, T: i32, C: i32): void {
  const rowBytes = <usize>C << 2;
  for (let t = 0; t < T; t++) {
    add(y + <usize>t * rowBytes, y + <usize>t * rowBytes, b, C);
  }
}

export function addBiasScalar(y: usize, b: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      const p = y + ((<usize>t * <usize>C + <usize>c) << 2);
      store<f32>(p, load<f32>(p) + load<f32>(b + (<usize>c << 2)));
    }
  }
}

// ---- embedGather ----

export function embedGather(y: usize, table: usize, ids: usize, T: i32, C: i32): void {
  const rowBytes = <usize>C << 2;
  for (let t = 0; t < T; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    memory.copy(y + <usize>t * rowBytes, table + id * rowBytes, rowBytes);
  }
}

export function embedGatherScalar(y: usize, table: usize, ids: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    for (let c = 0; c < C; c++) {
      store<f32>(y + ((<usize>t * <usize>C + <usize>c) << 2), load<f32>(table + ((id * <usize>C + <usize>c) << 2)));
    }
  }
}
