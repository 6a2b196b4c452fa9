// OPT's config.json, typed with Hugging Face's field names, validated, with derived sizes in one place.
// What transformers' modeling_opt.py supports and we do not is refused here, naming the field.
import { oneLine } from "../../formats/types.js";

export type Activation = "relu" | "gelu" | "gelu_tanh" | "silu";

export interface OptConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  ffn_dim: number;
  max_position_embeddings: number;
  word_embed_proj_dim: number;
  do_layer_norm_before: boolean;
  _remove_final_layer_norm: boolean;
  activation_function: string;
  enable_bias: boolean;
  layer_norm_elementwise_affine: boolean;
  tie_word_embeddings: boolean;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
}

/** Sizes and switches derived from the config, computed once. */
export interface OptDims {
  V: number; // vocabulary
  C: number; // hidden size
  E: number; // word embedding projection dim (= C unless project_in/out exist)
  L: number; // layers
  H: number; // heads
  D: number; // head dim
  F: number; // ffn dim
  P: number; // positions table rows = max_position_embeddings + 2 (OPT's offset)
  maxPositions: number;
  preNorm: boolean;
  finalNorm: boolean;
  project: boolean;
  bias: boolean;
  affine: boolean;
  activation: Activation;
  tied: boolean;
}

/** OPT stores positions shifted by 2 (fairseq's padding_idx + 1). */
export const POSITION_OFFSET = 2;
/** LayerNorm eps is fixed in modeling_opt.py (nn.LayerNorm default). */
export const LAYER_NORM_EPS = 1e-5;

const ACTIVATIONS: Record<string, Activation> = {
  relu: "relu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  silu: "silu",
  swish: "silu",
};

type Json = Record<string, unknown>;

/** A value from the file, for a message: JSON, one line, cut short. */
const show = (v: unknown): string => {
  let t: string;
  try {
    t = JSON.stringify(v) ?? typeof v;
  } catch {
    t = typeof v;
  }
  return oneLine(t, 80);
};

/** Layers and heads beyond any OPT (175B has 96 layers and 96 heads), with room to spare. */
const MAX_LAYERS = 1024;
const MAX_HEADS = 1024;

function field<T>(cfg: Json, label: string, name: string, kind: "int" | "bool" | "string", dflt?: T): T {
  const v = cfg[name];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new Error(`${label}: missing field '${name}'`);
  }
  const ok = kind === "int" ? Number.isSafeInteger(v) : kind === "bool" ? typeof v === "boolean" : typeof v === "string";
  if (!ok) throw new Error(`${label}: field '${name}' must be ${kind === "int" ? "an integer" : `a ${kind === "bool" ? "boolean" : "string"}`}, got ${show(v)}`);
  return v as T;
}

/** Parse and validate an OPT config.json (text or parsed object). `label` names the file in errors. */
export function parseOptConfig(input: string | unknown, label = "config.json"): OptConfig {
  let raw: unknown = input;
  if (typeof input === "string") {
    try {
      raw = JSON.parse(input);
    } catch (e) {
      throw new Error(`${label}: not valid JSON (${oneLine((e as Error).message, 120)})`);
    }
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${label}: expected a JSON object`);
  const cfg = raw as Json;
  if (cfg.model_type !== undefined && cfg.model_type !== "opt") {
    const t = typeof cfg.model_type === "string" ? `'${oneLine(cfg.model_type, 80)}'` : show(cfg.model_type);
    throw new Error(`${label}: model_type ${t} is not supported (only 'opt')`);
  }
  const hidden = field<number>(cfg, label, "hidden_size", "int");
  const c: OptConfig = {
    vocab_size: field(cfg, label, "vocab_size", "int"),
    hidden_size: hidden,
    num_hidden_layers: field(cfg, label, "num_hidden_layers", "int"),
    num_attention_heads: field(cfg, label, "num_attention_heads", "int"),
    ffn_dim: field(cfg, label, "ffn_dim", "int"),
    max_position_embeddings: field(cfg, label, "max_position_embeddings", "int"),
    word_embed_proj_dim: field(cfg, label, "word_embed_proj_dim", "int", hidden),
    do_layer_norm_before: field(cfg, label, "do_layer_norm_before", "bool", true),
    _remove_final_layer_norm: field(cfg, label, "_remove_final_layer_norm", "bool", false),
    activation_function: field(cfg, label, "activation_function", "string", "relu"),
    enable_bias: field(cfg, label, "enable_bias", "bool", true),
    layer_norm_elementwise_affine: field(cfg, label, "layer_norm_elementwise_affine", "bool", true),
    tie_word_embeddings: field(cfg, label, "tie_word_embeddings", "bool", true),
    pad_token_id: field(cfg, label, "pad_token_id", "int", 1),
    bos_token_id: field(cfg, label, "bos_token_id", "int", 2),
    eos_token_id: field(cfg, label, "eos_token_id", "int", 2),
  };
  const positive: (keyof OptConfig)[] = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "ffn_dim", "max_position_embeddings", "word_embed_proj_dim"];
  for (const k of positive) {
    const v = c[k] as number;
    if (v < 1 || v > 1 << 24) throw new Error(`${label}: field '${k}' = ${v} is out of range [1, ${1 << 24}]`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new Error(`${label}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  if (c.num_hidden_layers > MAX_LAYERS) throw new Error(`${label}: field 'num_hidden_layers' = ${c.num_hidden_layers} is out of range [1, ${MAX_LAYERS}]`);
  if (c.num_attention_heads > MAX_HEADS) throw new Error(`${label}: field 'num_attention_heads' = ${c.num_attention_heads} is out of range [1, ${MAX_HEADS}]`);
  if (!Object.hasOwn(ACTIVATIONS, c.activation_function)) {
    throw new Error(`${label}: activation_function '${oneLine(c.activation_function, 80)}' is not supported ` +
      `(supported: ${Object.keys(ACTIVATIONS).join(", ")})`);
  }
  for (const k of ["pad_token_id", "bos_token_id", "eos_token_id"] as const) {
    if (c[k] < 0 || c[k] >= c.vocab_size) throw new Error(`${label}: field '${k}' = ${c[k]} is outside the vocabulary [0, ${c.vocab_size})`);
  }
  return c;
}

export function optDims(c: OptConfig): OptDims {
  return {
    V: c.vocab_size,
    C: c.hidden_size,
    E: c.word_embed_proj_dim,
    L: c.num_hidden_layers,
    H: c.num_attention_heads,
    D: c.hidden_size / c.num_attention_heads,
    F: c.ffn_dim,
    P: c.max_position_embeddings + POSITION_OFFSET,
    maxPositions: c.max_position_embeddings,
    preNorm: c.do_layer_norm_before,
    // modeling_opt.py: the final LayerNorm exists only for pre-LN models that do not remove it.
    finalNorm: c.do_layer_norm_before && !c._remove_final_layer_norm,
    project: c.word_embed_proj_dim !== c.hidden_size,
    bias: c.enable_bias,
    affine: c.layer_norm_elementwise_affine,
    activation: ACTIVATIONS[c.activation_function],
    tied: c.tie_word_embeddings,
  };
}

/** The config of facebook/opt-125m (used by the synthetic preset). */
export const OPT_125M: OptConfig = {
  vocab_size: 50272,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  ffn_dim: 3072,
  max_position_embeddings: 2048,
  word_embed_proj_dim: 768,
  do_layer_norm_before: true,
  _remove_final_layer_norm: false,
  activation_function: "relu",
  enable_bias: true,
  layer_norm_elementwise_affine: true,
  tie_word_embeddings: true,
  pad_token_id: 1,
  bos_token_id: 2,
  eos_token_id: 2,
};
