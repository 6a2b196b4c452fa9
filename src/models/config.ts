// What every family's config.json becomes: one `Dims` record — the sizes and the block recipe
// (norm kind, position kind, MLP kind, attention layout, biases, tying) — that the shared decoder,
// the weight table and the memory planner read. A family (./families/*.ts) is a config reader, a
// checkpoint-name map and presets; the differences between families are data here, not code paths.
import { oneLine } from "../formats/types.js";

export type FamilyName = "opt" | "gpt2" | "llama" | "qwen2";
export type Activation = "relu" | "gelu" | "gelu_tanh" | "silu";

/** Sizes and switches derived from a config, computed once (names: llama2.c's / llm.c's letters). */
export interface Dims {
  family: FamilyName;
  V: number; // vocabulary
  C: number; // hidden size (the residual stream)
  E: number; // token embedding width (= C unless OPT's project_in/out exist)
  L: number; // layers
  H: number; // query heads
  Hkv: number; // key/value heads (H for multi-head attention; fewer for GQA, 1 for MQA)
  D: number; // head dim
  KV: number; // Hkv · D: width of the key and value projections
  F: number; // MLP inner size
  /** Longest context: max_position_embeddings (n_positions for GPT-2). */
  maxPositions: number;
  norm: "layer" | "rms";
  normEps: number;
  /** The norms have weights (and, for LayerNorm, biases): OPT's layer_norm_elementwise_affine. */
  normAffine: boolean;
  preNorm: boolean; // x + f(norm(x)), else norm(x + f(x)) (OPT-350M)
  finalNorm: boolean; // a norm before the lm_head
  project: boolean; // OPT's project_in / project_out (E ≠ C)
  /** Learned position table (OPT, GPT-2) with row = position + positionOffset; or rotary (LLaMA). */
  positions: "learned" | "rope";
  positionOffset: number;
  /** Rows of the learned position table (0 for rope). */
  P: number;
  ropeTheta: number;
  /** rope_scaling type "linear": positions are divided by this (1: none). */
  ropeFactor: number;
  /** plain: down(act(up(x))); gated: down(act(gate(x)) · up(x)). */
  mlp: "plain" | "gated";
  activation: Activation;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tied: boolean; // lm_head = embed_tokens
  /** Attention scores are scaled by 1/√D (GPT-2's scale_attn_weights false: not at all). */
  attnScaled: boolean;
  /** GPT-2's scale_attn_by_inverse_layer_idx: layer i's scores also divided by i + 1. */
  attnScaleByLayer: boolean;
  /** Token ids that end generation (config.json's eos_token_id: one id or a list). */
  eos: number[];
}

/** The attention score scale of layer i. */
export function attnScale(d: Dims, i: number): number {
  return (d.attnScaled ? 1 / Math.sqrt(d.D) : 1) / (d.attnScaleByLayer ? i + 1 : 1);
}

export type Json = Record<string, unknown>;

/** A value from a file, for a message: JSON, one line, cut short. */
export const show = (v: unknown): string => {
  let t: string;
  try {
    t = JSON.stringify(v) ?? typeof v;
  } catch {
    t = typeof v;
  }
  return oneLine(t, 80);
};

export type FieldKind = "int" | "bool" | "string" | "number";

/** A typed field of a config, with a default when absent (null counts as absent). */
export function field<T>(cfg: Json, label: string, name: string, kind: FieldKind, dflt?: T): T {
  const v = cfg[name];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new Error(`${label}: missing field '${name}'`);
  }
  const ok =
    kind === "int"
      ? Number.isSafeInteger(v)
      : kind === "bool"
        ? typeof v === "boolean"
        : kind === "number"
          ? typeof v === "number" && Number.isFinite(v)
          : typeof v === "string";
  if (!ok) {
    const want = kind === "int" ? "an integer" : kind === "number" ? "a finite number" : `a ${kind === "bool" ? "boolean" : "string"}`;
    throw new Error(`${label}: field '${name}' must be ${want}, got ${show(v)}`);
  }
  return v as T;
}

/** Layers and heads beyond any model of these families, with room to spare. */
export const MAX_LAYERS = 1024;
export const MAX_HEADS = 1024;
const MAX_SIZE = 1 << 24;

/** Every size of a Dims in range, heads dividing the hidden size; errors name config fields. */
export function checkSizes(label: string, sizes: Record<string, number>): void {
  for (const [k, v] of Object.entries(sizes)) {
    const max = /layer/.test(k) ? MAX_LAYERS : /head/.test(k) ? MAX_HEADS : MAX_SIZE;
    if (v < 1 || v > max) throw new Error(`${label}: field '${k}' = ${v} is out of range [1, ${max}]`);
  }
}

/** Token ids from a config field that may hold one id or a list (LLaMA 3's eos_token_id). */
export function tokenIds(cfg: Json, label: string, name: string, vocab: number, dflt: number[]): number[] {
  const v = cfg[name];
  if (v === undefined || v === null) return dflt;
  const list = Array.isArray(v) ? v : [v];
  if (list.length > 64 || !list.every((x) => Number.isSafeInteger(x)))
    throw new Error(`${label}: field '${name}' must be a token id or a list of them, got ${show(v)}`);
  for (const id of list as number[]) {
    if (id < 0 || id >= vocab) throw new Error(`${label}: field '${name}' = ${id} is outside the vocabulary [0, ${vocab})`);
  }
  return list as number[];
}

export const ACTIVATIONS: Record<string, Activation> = {
  relu: "relu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  silu: "silu",
  swish: "silu",
};

export function activation(label: string, name: string, value: string, allowed: string[] = Object.keys(ACTIVATIONS)): Activation {
  if (!allowed.includes(value) || !Object.hasOwn(ACTIVATIONS, value)) {
    throw new Error(`${label}: ${name} '${oneLine(value, 80)}' is not supported (supported: ${allowed.join(", ")})`);
  }
  return ACTIVATIONS[value];
}

/** Parse a config.json's text into an object, or fail naming the file. */
export function jsonObject(input: string | unknown, label: string): Json {
  let raw: unknown = input;
  if (typeof input === "string") {
    try {
      raw = JSON.parse(input);
    } catch (e) {
      throw new Error(`${label}: not valid JSON (${oneLine((e as Error).message, 120)})`);
    }
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${label}: expected a JSON object`);
  return raw as Json;
}
