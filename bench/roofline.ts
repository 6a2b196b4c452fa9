// Bytes a decode step must read, per engine and dtype: the roofline's numerator. Decode (one token,
// batch 1) reads every weight matrix once and the KV cache of every layer once; divided by the
// machine's read bandwidth (./bandwidth.ts) that is a lower bound on ms/token.
//   ours   the layers in their dtype as src/models/weights.ts stores them (layerBytes: int8 = 1 B
//          per weight + an f32 scale per row and 64 inputs; q4 = 20 bytes per 32 weights —
//          16 of nibbles, a bf16 scale and min, assembly/kernels/linear_dot.ts), the lm_head in the
//          embedding's dtype (default f16 under int8 / q4), vectors f32
//   ORT    f32 4 B; q8 1 B per weight (one scale per tensor); q4 16 B of nibbles + an f32 scale per
//          32 weights (= 20 B, the same as ours), lm_head in the graph's dtype, vectors f32
//   both   the KV cache in f32: 2 · L · S · Hkv·D · 4 bytes at context S (the mean over the timed
//          steps). Not counted: activations (KBs), the one embedding row, and ORT's copies of the
//          past in and the presents out of its heap each step (which read and write the KV again).
import { familyOf, type ModelConfig } from "../src/models/families/index.js";
import { fieldShape, MATRIX_FIELDS } from "../src/models/family.js";
import { DEFAULT_INT8_GROUP, embedDType, layerBytes, matBytes, type WeightDType, type WeightFormat } from "../src/models/weights.js";
import type { GraphQuant } from "./model-common.js";

export interface DecodeBytes {
  /** Weight bytes read per token (matrices with their scales, vectors, the lm_head). */
  weights: number;
  /** KV cache bytes read per token at the given context. */
  kv: number;
}

const kvBytes = (c: ModelConfig, ctx: number) => {
  const d = familyOf(c).dims(c);
  return 2 * d.L * ctx * d.KV * 4;
};

/** Ours: dtype (and the embedding's, default the model's rule) at context ctx. */
export function oursDecodeBytes(c: ModelConfig, dtype: WeightDType, embed: WeightDType | undefined, ctx: number): DecodeBytes {
  const family = familyOf(c);
  const d = family.dims(c);
  const fmt: WeightFormat = { dtype, group: DEFAULT_INT8_GROUP, ...(embed ? { embed } : {}) };
  const head = matBytes({ ...fmt, dtype: embedDType(fmt) }, d.V, d.E);
  const finalNorm = (d.norm === "layer" ? 2 : 1) * d.C * 4;
  return { weights: d.L * layerBytes(family, d, fmt) + head + finalNorm, kv: kvBytes(c, ctx) };
}

/** ORT's graph of a given weights dtype at context ctx. */
export function ortDecodeBytes(c: ModelConfig, weights: GraphQuant["weights"], ctx: number): DecodeBytes {
  const family = familyOf(c);
  const d = family.dims(c);
  const mat = (N: number, K: number) => (weights === "f32" ? N * K * 4 : weights === "q8" ? N * K + 8 : N * Math.ceil(K / 32) * 20); // q4: nibbles + f32 scale per 32
  let layer = 0;
  for (const r of family.layer(d, 0)) {
    const [N, K] = fieldShape(r);
    layer += MATRIX_FIELDS.has(r.field) ? mat(N, K) : N * 4;
  }
  const finalNorm = (d.norm === "layer" ? 2 : 1) * d.C * 4;
  return { weights: d.L * layer + mat(d.V, d.E) + finalNorm, kv: kvBytes(c, ctx) };
}
