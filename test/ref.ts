// Float64 references for the wasm kernels (test/kernels.test.ts). Inputs are the same f32 values the
// kernels see; every sum, exp and erf here runs in f64, so these are "exact" at f32 resolution.
// Shapes and argument meanings mirror assembly/kernels/*.ts.

/** Seeded xorshift32 generator of f32 values (Math.fround), reproducible across runs. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let s = this.s;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s >>> 0;
    return this.s;
  }
  /** f32 uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return Math.fround(lo + (hi - lo) * ((this.next() >>> 8) / 16777216));
  }
  f32(n: number, lo: number, hi: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
}

/** y[t, o] = Σ_k x[t, k]·w[o, k] + b[o] for o in [n0, n1); other columns NaN (not computed). */
export function linear(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  T: number,
  K: number,
  N: number,
  n0 = 0,
  n1 = N,
): Float64Array {
  const y = new Float64Array(T * N).fill(NaN);
  for (let t = 0; t < T; t++) {
    for (let o = n0; o < n1; o++) {
      let s = 0;
      const xo = t * K,
        wo = o * K;
      for (let k = 0; k < K; k++) s += x[xo + k] * w[wo + k];
      y[t * N + o] = s + (b ? b[o] : 0);
    }
  }
  return y;
}

export function layerNorm(
  x: Float32Array,
  w: Float32Array | null,
  b: Float32Array | null,
  T: number,
  C: number,
  eps: number,
): Float64Array {
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += x[t * C + c];
    const mean = s / C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += (x[t * C + c] - mean) ** 2;
    const rstd = 1 / Math.sqrt(ss / C + Math.fround(eps));
    for (let c = 0; c < C; c++) {
      y[t * C + c] = (x[t * C + c] - mean) * rstd * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
  }
  return y;
}

export function rmsNorm(x: Float32Array, w: Float32Array | null, T: number, C: number, eps: number): Float64Array {
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] ** 2;
    const r = 1 / Math.sqrt(ss / C + Math.fround(eps));
    for (let c = 0; c < C; c++) y[t * C + c] = x[t * C + c] * r * (w ? w[c] : 1);
  }
  return y;
}

/** Row-wise softmax; mask (u8[cols], 0 = excluded) or null; nothing kept → zeros. */
export function softmax(x: Float32Array, mask: Uint8Array | null, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (!mask || mask[c]) m = Math.max(m, x[r * cols + c]);
    if (m === -Infinity) continue;
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const e = !mask || mask[c] ? Math.exp(x[r * cols + c] - m) : 0;
      y[r * cols + c] = e;
      s += e;
    }
    for (let c = 0; c < cols; c++) y[r * cols + c] /= s;
  }
  return y;
}

/**
 * Causal attention for heads [h0, h1) from full K/V (L = past + T positions, layout (L, Hkv·D) like
 * the model's projections): out (T, H·D) (other heads NaN) and probs (H, T, L) (other heads NaN).
 * Grouped-query heads: query head h reads KV head h / (H / Hkv) (Hkv = H: multi-head, the default).
 * scale defaults to 1/√D.
 */
export function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  keyMask: Uint8Array | null,
  T: number,
  past: number,
  H: number,
  D: number,
  h0 = 0,
  h1 = H,
  Hkv = H,
  scale = 1 / Math.sqrt(D),
): { out: Float64Array; probs: Float64Array } {
  const L = past + T,
    HD = H * D,
    KD = Hkv * D,
    group = H / Hkv;
  const out = new Float64Array(T * HD).fill(NaN);
  const probs = new Float64Array(H * T * L).fill(NaN);
  for (let h = h0; h < h1; h++) {
    const g = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const s = new Float64Array(L);
      const vis = new Array<boolean>(L).fill(false);
      let m = -Infinity;
      for (let j = 0; j <= past + t; j++) {
        vis[j] = !keyMask || keyMask[j] !== 0;
        let d = 0;
        for (let i = 0; i < D; i++) d += q[t * HD + h * D + i] * k[j * KD + g * D + i];
        s[j] = d * scale;
        if (vis[j]) m = Math.max(m, s[j]);
      }
      let sum = 0;
      const p = new Float64Array(L);
      if (m !== -Infinity) {
        for (let j = 0; j < L; j++) if (vis[j]) sum += p[j] = Math.exp(s[j] - m);
        for (let j = 0; j < L; j++) p[j] /= sum;
      }
      probs.set(p, (h * T + t) * L);
      for (let i = 0; i < D; i++) {
        let o = 0;
        for (let j = 0; j < L; j++) o += p[j] * v[j * KD + g * D + i];
        out[t * HD + h * D + i] = o;
      }
    }
  }
  return { out, probs };
}

/**
 * erfc(x) in f64: Maclaurin series of erf for |x| < 2 (terms stay below e^4, so ~1e-15 absolute),
 * Lentz's continued fraction for erfc beyond (converges fast for x ≥ 2), erfc(-x) = 2 - erfc(x).
 */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a === Infinity) return x > 0 ? 0 : 2;
  if (a < 2) {
    let term = a,
      sum = a;
    for (let n = 1; n < 60; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const erfA = (2 / Math.sqrt(Math.PI)) * sum;
    return x >= 0 ? 1 - erfA : 1 + erfA;
  }
  // erfc(a) = e^(-a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
  const tiny = 1e-300;
  let f = a,
    c = a,
    d = 0;
  for (let n = 1; n < 500; n++) {
    const an = n / 2;
    d = a + an * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = a + an / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const r = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return x >= 0 ? r : 2 - r;
}

export const erf = (x: number): number => 1 - erfc(x);

/** The activations, elementwise in f64. */
export const gelu = (x: number): number => x * 0.5 * erfc(-x / Math.SQRT2);
// ½(1 + tanh u) = 1/(1 + e^(-2u)): the same function without f64's own cancellation for x ≪ 0
export const geluTanh = (x: number): number => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
export const silu = (x: number): number => x / (1 + Math.exp(-x));
/** swiglu(gate, up) = silu(gate)·up, elementwise. */
export function swiglu(gate: Float32Array, up: Float32Array): Float64Array {
  const y = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) y[i] = silu(gate[i]) * up[i];
  return y;
}

/**
 * Rotary embedding, LLaMA's rotate_half form, of x: (rows, H·D) with cs: (rows, D) = cos ‖ sin of
 * each row's angles: (a, b) = (x[i], x[i + D/2]) → (a·cos − b·sin, b·cos + a·sin), in f64.
 */
export function rope(x: Float32Array, cs: Float32Array, rows: number, H: number, D: number): Float64Array {
  const y = Float64Array.from(x),
    half = D / 2;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < half; i++) {
        const ia = (r * H + h) * D + i,
          ib = ia + half;
        const c = cs[r * D + i],
          s = cs[r * D + half + i];
        y[ia] = x[ia] * c - x[ib] * s;
        y[ib] = x[ib] * c + x[ia] * s;
      }
    }
  }
  return y;
}
export const relu = (x: number): number => (x > 0 ? x : 0);

export function map(x: Float32Array, f: (v: number) => number): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = f(x[i]);
  return y;
}
