// A model family is data over the one decoder (./decoder.ts): a config reader that turns
// config.json into `Dims`, a map from the decoder's weight fields to the checkpoint's tensor names,
// and synthetic presets. llama.cpp's llm_build_* in miniature: the loop over layers is shared.
import type { Dims, FamilyName, Json } from "./config.js";

/** A decoder layer's weights, as the decoder reads them: matrices (out, in), vectors f32. */
export type LayerField =
  | "attnNormW"
  | "attnNormB" // (C) the norm before attention (after it, post-norm)
  | "q"
  | "qB"
  | "k"
  | "kB"
  | "v"
  | "vB" // (H·D, C), (Hkv·D, C), (Hkv·D, C) and biases
  | "o"
  | "oB" // (C, H·D)
  | "mlpNormW"
  | "mlpNormB" // (C)
  | "up"
  | "upB" // (F, C): fc1 / c_fc / up_proj
  | "gate"
  | "gateB" // (F, C): gated MLPs
  | "down"
  | "downB"; // (C, F): fc2 / c_proj / down_proj

/** The weights outside the layers. */
export type GlobalField = "embedTokens" | "embedPositions" | "projectIn" | "projectOut" | "finalNormW" | "finalNormB";

export const MATRIX_FIELDS: ReadonlySet<LayerField> = new Set(["q", "k", "v", "o", "up", "gate", "down"] as LayerField[]);

/**
 * Where a field's values are in the checkpoint: a tensor name (without the checkpoint's prefix) and
 * its shape there. `conv`: the tensor is a GPT-2 Conv1D weight stored (in, out), and the field is
 * its columns [col, col + n) transposed to (n, in) — or, for a bias, its elements [col, col + n).
 * Such fields are packed once at load into the layout the kernels read.
 */
export interface TensorRef<F extends string> {
  field: F;
  name: string;
  shape: number[];
  conv?: { col: number; n: number };
}

/** The field's own shape (out, in) or (n), whatever the checkpoint's layout. */
export function fieldShape(r: TensorRef<string>): number[] {
  if (!r.conv) return r.shape;
  return r.shape.length === 2 ? [r.conv.n, r.shape[0]] : [r.conv.n];
}

/** Every config a family reads carries its model_type (OPT's may omit it: the first family). */
export interface FamilyConfig {
  model_type?: string;
  vocab_size: number;
}

export interface Family<C extends FamilyConfig = FamilyConfig> {
  name: FamilyName;
  /** How people write the family's name ("OPT", "GPT-2", "LLaMA"). */
  title: string;
  /** config.json model_type values this family reads. */
  modelTypes: string[];
  /** What config.json's `architectures` says for files wasm-lm writes. */
  architecture: string;
  /** Validate config.json (an object); what the family cannot run is refused naming the field. */
  parse(cfg: Json, label: string): C;
  dims(c: C): Dims;
  /** Checkpoint key prefixes, tried in order: the first under which the token embedding exists. */
  prefixes: string[];
  globals(d: Dims): TensorRef<GlobalField>[];
  layer(d: Dims, i: number): TensorRef<LayerField>[];
  /** Buffers checkpoints may carry that the model computes itself (causal masks, inv_freq): skipped. */
  ignored?: RegExp;
  /** Shapes of `synthetic:<name>` models. */
  presets: Record<string, C>;
}

/** The untied lm_head, at the checkpoint's top level in every family. */
export const LM_HEAD = "lm_head.weight";

/** The refs if a config switch is on (optional biases and norm weights), else none. */
export const when = <F extends string>(on: boolean, ...refs: TensorRef<F>[]): TensorRef<F>[] => (on ? refs : []);
