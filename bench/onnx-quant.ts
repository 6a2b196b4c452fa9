// ONNX Runtime's two weight quantizers, rewritten in TypeScript so the bench can write the quantized
// graphs transformers.js users download (its scripts/quantize.py runs exactly these) from the same
// seeded weights our model loads — and float64 references of the quantized ops, to check ORT Web
// runs them (bench/ort-quant.selftest.ts).
//
// q8 — onnxruntime.quantization's dynamic quantization (ONNXQuantizer, IntegerOps mode: what
// `quantize_dynamic` and transformers.js' "quantized" / q8 files use; weights QInt8, activations
// QUInt8, per tensor unless per_channel). A MatMul(x, W) with W an initializer becomes
//     x_q, x_scale, x_zp = DynamicQuantizeLinear(x)                    uint8, one scale per run
//     y_i32 = MatMulInteger(x_q, W_q, x_zp, W_zp)                      W_q int8 (K, N), W_zp = 0
//     y     = Mul(Cast(y_i32, float), Mul(x_scale, W_scale))
//   followed by the graph's own Add of the bias. W_q = clip(round_half_even(W / s), ±127),
//   s = max|W| / 127 (symmetric: reduce_range off); per channel: one s per output column.
//   A Gather on an initializer (the embeddings) becomes Gather on a uint8 table (asymmetric, per
//   tensor: s = (max(W, 0) − min(W, 0)) / 255, zp = round(−min / s)) then DequantizeLinear.
//   Gemm is not in the IntegerOps registry: a Gemm lm_head would stay f32, so q8 graphs use MatMul.
// DynamicQuantizeLinear (ONNX): scale = (max(x, 0) − min(x, 0)) / 255, zp = round(−min / scale),
//   q = saturate(round(x / scale) + zp), rounding half to even.
//
// q4 — MatMul4BitsQuantizer (DefaultWeightOnlyQuantizer → MLAS MlasQuantizeBlockwise, column-wise):
// MatMul(x, W) with W (K, N) becomes com.microsoft MatMulNBits(x, B, scales[, zero_points]),
// bits 4, block_size 32 (transformers.js' default; blocks run along K for each output column n):
//     B            uint8 [N, K/32, 16]: byte j of block b = q[b·32 + 2j] | q[b·32 + 2j + 1] << 4
//     scales       f32 [N · K/32]
//     zero_points  uint8 [N · ⌈(K/32)/2⌉], two blocks a byte (low nibble first); absent: 8
//     W[k, n] ≈ (q − zp) · scale
//   symmetric (transformers.js' default, is_symmetric=True): m = the block's value of largest |·|
//     (signed), scale = m / −8, q = clamp(roundf(w · (1/scale) + 8), 0, 15), no zero_points input
//   asymmetric (MatMul4BitsQuantizer's own default): lo = min(min, 0), hi = max(max, 0),
//     scale = (hi − lo) / 15, zp = clamp(roundf(−lo / scale), 0, 15), q = clamp(roundf(w/scale + zp), 0, 15)
//   roundf rounds half away from zero (C's), f32 arithmetic throughout as MLAS does it.
//   Only MatMul is quantized (the quantizer's default op types): the embedding Gather stays f32.
//   accuracy_level: absent (transformers.js' default) = compute in f32 on dequantized blocks;
//   4 = ORT quantizes A to int8 per block and uses integer dot products (our q4's arithmetic).

import type { DataType, TensorData } from "./onnx.js";

/** Rounding half to even (numpy's round, ONNX's QuantizeLinear / DynamicQuantizeLinear). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** C's roundf: half away from zero (MLAS's blockwise quantizer). */
const roundAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));
const f = Math.fround;
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

// ---------------------------------------------------------------------------------------------
// q8: dynamic quantization.

/** MatMulInteger's B: int8 (K, N) as MatMul stores it, its scales (1 or N) and zero points (zeros). */
export interface Int8Weight {
  q: Int8Array;
  scale: Float32Array;
  zeroPoint: Int8Array;
  K: number;
  N: number;
}

/** W (K, N) → int8, symmetric, one scale for the tensor or (perChannel) one per column n. */
export function quantizeWeightI8(w: Float32Array, K: number, N: number, perChannel = false): Int8Weight {
  if (w.length !== K * N) throw new Error(`onnx-quant: W has ${w.length} values, (K, N) = (${K}, ${N}) needs ${K * N}`);
  const channels = perChannel ? N : 1;
  const absmax = new Float64Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = perChannel ? i % N : 0;
    absmax[c] = Math.max(absmax[c], Math.abs(w[i]));
  }
  // compute_scale_zp, symmetric: (rmax − rmin) / (qmax − qmin) with rmin = −rmax, [qmin, qmax] = [−127, 127].
  const scale = Float32Array.from(absmax, (a) => (a === 0 ? 1 : f(f(2 * a) / 254)));
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = clamp(roundHalfEven(f(w[i] / scale[perChannel ? i % N : 0])), -127, 127);
  return { q, scale, zeroPoint: new Int8Array(channels), K, N };
}

/** A Gather table → uint8, asymmetric, per tensor (GatherQuant: the activation type, QUInt8). */
export function quantizeTableU8(t: Float32Array): { q: Uint8Array; scale: number; zeroPoint: number } {
  let lo = 0;
  let hi = 0;
  for (const v of t) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const scale = hi === lo ? 1 : f((hi - lo) / 255);
  const zeroPoint = clamp(roundHalfEven(f(-lo / scale)), 0, 255);
  const q = new Uint8Array(t.length);
  for (let i = 0; i < t.length; i++) q[i] = clamp(roundHalfEven(f(t[i] / scale)) + zeroPoint, 0, 255);
  return { q, scale, zeroPoint };
}

/** ONNX DynamicQuantizeLinear, in f32 as ORT's CPU kernel computes it. */
export function dynamicQuantizeLinearRef(x: Float32Array): { q: Uint8Array; scale: number; zeroPoint: number } {
  let lo = 0;
  let hi = 0;
  for (const v of x) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const scale = f((hi - lo) / 255);
  // ORT's kernel rounds the zero point with std::round (half away from zero), the values half to even.
  const zeroPoint = scale === 0 ? 0 : roundAway(clamp(f(-lo / scale), 0, 255));
  const q = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) q[i] = scale === 0 ? zeroPoint : clamp(roundHalfEven(f(x[i] / scale)) + zeroPoint, 0, 255);
  return { q, scale, zeroPoint };
}

/**
 * The q8 pattern's value in float64 for x (T, K): DynamicQuantizeLinear as ORT computes it, the
 * exact integer product, then (x_scale · W_scale) and the bias.
 */
export function q8LinearRef(x: Float32Array, T: number, w: Int8Weight, bias: Float32Array | null): Float64Array {
  const { K, N } = w;
  const xq = dynamicQuantizeLinearRef(x);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += (xq.q[t * K + k] - xq.zeroPoint) * (w.q[k * N + n] - w.zeroPoint[w.scale.length > 1 ? n : 0]);
      const s = f(xq.scale * w.scale[w.scale.length > 1 ? n : 0]);
      y[t * N + n] = acc * s + (bias ? bias[n] : 0);
    }
  return y;
}

// ---------------------------------------------------------------------------------------------
// q4: MatMulNBits, block-wise 4-bit.

export const Q4_BLOCK_SIZE = 32;

export interface NBitsWeight {
  /** [N, ⌈K/bs⌉, bs/2] (K padded with zeros to whole blocks) */
  b: Uint8Array;
  /** [N · ⌈K/bs⌉] */
  scales: Float32Array;
  /** [N · ⌈(K/bs)/2⌉], or null (symmetric: zero point 8). */
  zeroPoints: Uint8Array | null;
  K: number;
  N: number;
  blockSize: number;
}

/**
 * W given (N, K) (the checkpoint's (out, in) layout) → MatMulNBits' B, scales and zero points.
 * A K that the block size does not divide is padded with zeros to whole blocks, as the quantizer does.
 */
export function quantizeNBits4(w: Float32Array, N: number, K: number, symmetric: boolean, blockSize = Q4_BLOCK_SIZE): NBitsWeight {
  if (w.length !== N * K) throw new Error(`onnx-quant: W has ${w.length} values, (N, K) = (${N}, ${K}) needs ${N * K}`);
  const nb = Math.ceil(K / blockSize);
  const Kp = nb * blockSize;
  const zpBytes = Math.ceil(nb / 2);
  const b = new Uint8Array((N * Kp) / 2);
  const scales = new Float32Array(N * nb);
  const zeroPoints = symmetric ? null : new Uint8Array(N * zpBytes);
  const q = new Uint8Array(blockSize);
  for (let n = 0; n < N; n++) {
    for (let blk = 0; blk < nb; blk++) {
      const k0 = blk * blockSize;
      const v = (j: number) => (k0 + j < K ? w[n * K + k0 + j] : 0);
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < blockSize; j++) {
        lo = Math.min(lo, v(j));
        hi = Math.max(hi, v(j));
      }
      let scale: number;
      let zp = 8;
      if (symmetric) {
        scale = f((Math.abs(hi) > Math.abs(lo) ? hi : lo) / -8);
      } else {
        lo = Math.min(lo, 0);
        hi = Math.max(hi, 0);
        scale = f(f(hi - lo) / 15);
        const zf = scale !== 0 ? f(0 - f(lo / scale)) : lo;
        zp = zf < 0 ? 0 : zf > 15 ? 15 : roundAway(zf);
      }
      scales[n * nb + blk] = scale;
      if (zeroPoints) zeroPoints[n * zpBytes + (blk >> 1)] |= zp << ((blk & 1) * 4);
      const recip = scale ? f(1 / scale) : 0;
      for (let j = 0; j < blockSize; j++) q[j] = clamp(roundAway(f(f(v(j) * recip) + zp)), 0, 15);
      const out = (n * Kp + k0) / 2;
      for (let j = 0; j < blockSize / 2; j++) b[out + j] = q[2 * j] | (q[2 * j + 1] << 4);
    }
  }
  return { b, scales, zeroPoints, K, N, blockSize };
}

/** The dequantized W as (N, K) f32: (q − zp) · scale. */
export function dequantizeNBits4(m: NBitsWeight): Float32Array {
  const { K, N, blockSize } = m;
  const nb = Math.ceil(K / blockSize);
  const Kp = nb * blockSize;
  const zpBytes = Math.ceil(nb / 2);
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const blk = (k / blockSize) | 0;
      const byte = m.b[(n * Kp + k) >> 1];
      const qv = k & 1 ? byte >> 4 : byte & 15;
      const zp = m.zeroPoints ? (m.zeroPoints[n * zpBytes + (blk >> 1)] >> ((blk & 1) * 4)) & 15 : 8;
      w[n * K + k] = f((qv - zp) * m.scales[n * nb + blk]);
    }
  return w;
}

/** MatMulNBits in float64 on the dequantized weights, for x (T, K) → (T, N). */
export function nbitsLinearRef(x: Float32Array, T: number, m: NBitsWeight, bias: Float32Array | null): Float64Array {
  const { K, N } = m;
  const w = dequantizeNBits4(m);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[n * K + k];
      y[t * N + n] = s;
    }
  return y;
}

// ---------------------------------------------------------------------------------------------
// The node patterns, written into any graph through a sink (the decoder exporter, the op probe).

export interface GraphSink {
  /** Append a node; returns its nOut fresh output names. */
  node(op: string, inputs: string[], attrs?: Record<string, unknown>, nOut?: number, domain?: string): string[];
  /** Add an initializer (once per name); returns the name. */
  init(name: string, data: TensorData, dims: number[], dataType?: DataType): string;
}

/** DynamicQuantizeLinear(x) → [x_q, x_scale, x_zp]. */
export function dynamicQuantize(g: GraphSink, x: string): [string, string, string] {
  const [q, s, zp] = g.node("DynamicQuantizeLinear", [x], {}, 3);
  return [q, s, zp];
}

/** The q8 MatMul on an already quantized input: MatMulInteger → Cast → Mul by (x_scale · W_scale). */
export function q8MatMul(g: GraphSink, xq: [string, string, string], name: string, w: Int8Weight): string {
  const perChannel = w.scale.length > 1;
  const wq = g.init(`${name}_quantized`, w.q, [w.K, w.N]);
  const ws = g.init(`${name}_scale`, w.scale, perChannel ? [w.N] : []);
  const wzp = g.init(`${name}_zero_point`, w.zeroPoint, perChannel ? [w.N] : []);
  const [y32] = g.node("MatMulInteger", [xq[0], wq, xq[2], wzp]);
  const [yf] = g.node("Cast", [y32], { to: 1 /* FLOAT */ });
  const [s] = g.node("Mul", [xq[1], ws]);
  return g.node("Mul", [yf, s])[0];
}

/** Gather on a uint8 table, then DequantizeLinear (GatherQuant in dynamic mode). */
export function q8Gather(g: GraphSink, name: string, table: Float32Array, dims: number[], indices: string): string {
  const t = quantizeTableU8(table);
  const q = g.init(`${name}_quantized`, t.q, dims);
  const [rows] = g.node("Gather", [q, indices], { axis: 0 });
  const s = g.init(`${name}_scale`, Float32Array.of(t.scale), []);
  const zp = g.init(`${name}_zero_point`, Uint8Array.of(t.zeroPoint), []);
  return g.node("DequantizeLinear", [rows, s, zp])[0];
}

/** com.microsoft MatMulNBits(x, B, scales[, zero_points]), 4 bits. */
export function nbitsMatMul(g: GraphSink, x: string, name: string, m: NBitsWeight, accuracyLevel?: number): string {
  const nb = Math.ceil(m.K / m.blockSize);
  const inputs = [x, g.init(`${name}_Q4`, m.b, [m.N, nb, m.blockSize / 2]), g.init(`${name}_scales`, m.scales, [m.N * nb])];
  if (m.zeroPoints) inputs.push(g.init(`${name}_zp`, m.zeroPoints, [m.zeroPoints.length]));
  const attrs: Record<string, unknown> = { K: m.K, N: m.N, bits: 4, block_size: m.blockSize };
  if (accuracyLevel !== undefined) attrs.accuracy_level = accuracyLevel;
  return g.node("MatMulNBits", inputs, attrs, 1, "com.microsoft")[0];
}
