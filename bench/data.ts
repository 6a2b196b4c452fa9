// Seeded inputs, float64 references and the max-error check used before anything is timed.

/**
 * `n` floats uniform in ±scale, never zero (matmul over zero memory runs ~2x too fast), from a
 * seeded xorshift32. Hand-rolled rather than pure-rand because the bench fills ~1 GB of weights:
 * an inline 32-bit generator does that in about a second.
 */
export function randomF32(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 0x9e3779b9 + 0x7f4a7c15) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    // 24 high bits → an odd multiple of 2^-24 in (-1, 1): never 0.
    out[i] = offset + scale * (((s >>> 8) - 0x800000 + 0.5) / 0x800000);
  }
  return out;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface Check {
  /** max |got - want| */
  maxAbs: number;
  /** Where the worst violation of atol + rtol·|want| is (or the max |Δ| when none). */
  at: number;
  got: number;
  want: number;
  ok: boolean;
}

/** Compare got with want element-wise: passes when every |got - want| <= atol + rtol·|want|. */
export function compare(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): Check {
  if (got.length !== want.length) throw new Error(`bench: comparing ${got.length} with ${want.length} values`);
  let maxAbs = 0;
  let worst = -Infinity;
  let at = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= Infinity)) return { maxAbs: NaN, at: i, got: got[i], want: want[i], ok: false };
    if (d > maxAbs) maxAbs = d;
    const excess = d - (tol.atol + tol.rtol * Math.abs(want[i]));
    if (excess > worst) {
      worst = excess;
      at = i;
    }
  }
  return { maxAbs, at, got: got[at], want: want[at], ok: worst <= 0 };
}

/** y rows `rows` of x·Wᵀ + b in float64, flattened (rows.length × N). */
export function linearRef(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  K: number,
  N: number,
  rows: readonly number[],
): Float64Array {
  const y = new Float64Array(rows.length * N);
  rows.forEach((t, r) => {
    for (let o = 0; o < N; o++) {
      let s = b ? b[o] : 0;
      const wo = o * K;
      const xt = t * K;
      for (let k = 0; k < K; k++) s += x[xt + k] * w[wo + k];
      y[r * N + o] = s;
    }
  });
  return y;
}

export function layerNormRef(x: ArrayLike<number>, w: Float32Array, b: Float32Array, T: number, C: number, eps: number): Float64Array {
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[t * C + c];
    mean /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[t * C + c] - mean) ** 2;
    const r = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = (x[t * C + c] - mean) * r * w[c] + b[c];
  }
  return y;
}

export function softmaxRef(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]);
    let s = 0;
    for (let c = 0; c < cols; c++) s += y[r * cols + c] = Math.exp(x[r * cols + c] - m);
    for (let c = 0; c < cols; c++) y[r * cols + c] /= s;
  }
  return y;
}

/** The given rows of a row-major (·, cols) array, flattened. */
export function pickRows(a: Float32Array, cols: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * cols);
  rows.forEach((t, r) => out.set(a.subarray(t * cols, (t + 1) * cols), r * cols));
  return out;
}

/** f applied n times (the reference of an n-node chain). */
export function repeat<T>(n: number, x: T, f: (v: T) => T): T {
  for (let i = 0; i < n; i++) x = f(x);
  return x;
}
