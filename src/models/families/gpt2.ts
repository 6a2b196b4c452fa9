// GPT-2 (transformers' GPT2LMHeadModel): learned positions, pre-LayerNorm, gelu_new, tied head.
// Its attention and MLP weights are Conv1D — stored (in, out), with c_attn holding q | k | v side
// by side — and are packed once at load into the (out, in) matrices the kernels read (see
// TensorRef.conv). Keys with the `transformer.` prefix (save_pretrained) or without (the hub's gpt2).
import { activation, checkSizes, field, tokenIds, type Dims, type Json } from "../config.js";
import type { Family } from "../family.js";

export interface Gpt2Config {
  model_type: "gpt2";
  vocab_size: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_positions: number;
  /** MLP inner size; null in config.json means 4 · n_embd. */
  n_inner: number | null;
  activation_function: string;
  layer_norm_epsilon: number;
  scale_attn_weights: boolean;
  scale_attn_by_inverse_layer_idx: boolean;
  reorder_and_upcast_attn: boolean;
  tie_word_embeddings: boolean;
  bos_token_id: number;
  eos_token_id: number | number[];
}

function parse(cfg: Json, label: string): Gpt2Config {
  if (cfg.add_cross_attention === true)
    throw new Error(`${label}: add_cross_attention true is not supported (a decoder-only model is needed)`);
  const vocab = field<number>(cfg, label, "vocab_size", "int");
  const c: Gpt2Config = {
    model_type: "gpt2",
    vocab_size: vocab,
    n_embd: field(cfg, label, "n_embd", "int"),
    n_layer: field(cfg, label, "n_layer", "int"),
    n_head: field(cfg, label, "n_head", "int"),
    n_positions: field(cfg, label, "n_positions", "int"),
    n_inner: cfg.n_inner === null || cfg.n_inner === undefined ? null : field<number>(cfg, label, "n_inner", "int"),
    activation_function: field(cfg, label, "activation_function", "string", "gelu_new"),
    layer_norm_epsilon: field(cfg, label, "layer_norm_epsilon", "number", 1e-5),
    scale_attn_weights: field(cfg, label, "scale_attn_weights", "bool", true),
    scale_attn_by_inverse_layer_idx: field(cfg, label, "scale_attn_by_inverse_layer_idx", "bool", false),
    // Only changes where PyTorch upcasts half-precision scores to f32: every score here is f32.
    reorder_and_upcast_attn: field(cfg, label, "reorder_and_upcast_attn", "bool", false),
    tie_word_embeddings: field(cfg, label, "tie_word_embeddings", "bool", true),
    bos_token_id: field(cfg, label, "bos_token_id", "int", 50256 < vocab ? 50256 : 0),
    eos_token_id: tokenIds(cfg, label, "eos_token_id", vocab, [50256 < vocab ? 50256 : 0]),
  };
  checkSizes(label, {
    vocab_size: c.vocab_size,
    n_embd: c.n_embd,
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_positions: c.n_positions,
    n_inner: c.n_inner ?? 4 * c.n_embd,
  });
  if (c.n_embd % c.n_head !== 0) throw new Error(`${label}: n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`);
  if (!(c.layer_norm_epsilon > 0)) throw new Error(`${label}: field 'layer_norm_epsilon' = ${c.layer_norm_epsilon} must be positive`);
  activation(label, "activation_function", c.activation_function);
  if (c.bos_token_id < 0 || c.bos_token_id >= vocab)
    throw new Error(`${label}: field 'bos_token_id' = ${c.bos_token_id} is outside the vocabulary [0, ${vocab})`);
  return c;
}

function dims(c: Gpt2Config): Dims {
  const H = c.n_head;
  const D = c.n_embd / H;
  return {
    family: "gpt2",
    V: c.vocab_size,
    C: c.n_embd,
    E: c.n_embd,
    L: c.n_layer,
    H,
    Hkv: H,
    D,
    KV: H * D,
    F: c.n_inner ?? 4 * c.n_embd,
    maxPositions: c.n_positions,
    norm: "layer",
    normEps: c.layer_norm_epsilon,
    normAffine: true,
    preNorm: true,
    finalNorm: true,
    project: false,
    positions: "learned",
    positionOffset: 0,
    P: c.n_positions,
    ropeTheta: 0,
    ropeFactor: 1,
    mlp: "plain",
    activation: activation("config.json", "activation_function", c.activation_function),
    qkvBias: true,
    oBias: true,
    mlpBias: true,
    tied: c.tie_word_embeddings,
    attnScaled: c.scale_attn_weights,
    attnScaleByLayer: c.scale_attn_by_inverse_layer_idx,
    eos: Array.isArray(c.eos_token_id) ? c.eos_token_id : [c.eos_token_id],
  };
}

/** openai-community/gpt2's config (the synthetic preset). */
export const GPT2_124M: Gpt2Config = {
  model_type: "gpt2",
  vocab_size: 50257,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_positions: 1024,
  n_inner: null,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
  scale_attn_weights: true,
  scale_attn_by_inverse_layer_idx: false,
  reorder_and_upcast_attn: false,
  tie_word_embeddings: true,
  bos_token_id: 50256,
  eos_token_id: 50256,
};

export const GPT2: Family<Gpt2Config> = {
  name: "gpt2",
  title: "GPT-2",
  modelTypes: ["gpt2"],
  architecture: "GPT2LMHeadModel",
  parse,
  dims,
  prefixes: ["transformer.", ""],
  globals: (d) => [
    { field: "embedTokens", name: "wte.weight", shape: [d.V, d.C] },
    { field: "embedPositions", name: "wpe.weight", shape: [d.P, d.C] },
    { field: "finalNormW", name: "ln_f.weight", shape: [d.C] },
    { field: "finalNormB", name: "ln_f.bias", shape: [d.C] },
  ],
  layer(d, i) {
    const p = `h.${i}.`;
    const { C, F } = d;
    const qkv = (field: "q" | "k" | "v", col: number) => ({
      field,
      name: `${p}attn.c_attn.weight`,
      shape: [C, 3 * C],
      conv: { col, n: C },
    });
    const qkvB = (field: "qB" | "kB" | "vB", col: number) => ({ field, name: `${p}attn.c_attn.bias`, shape: [3 * C], conv: { col, n: C } });
    return [
      { field: "attnNormW", name: `${p}ln_1.weight`, shape: [C] },
      { field: "attnNormB", name: `${p}ln_1.bias`, shape: [C] },
      qkv("q", 0),
      qkvB("qB", 0),
      qkv("k", C),
      qkvB("kB", C),
      qkv("v", 2 * C),
      qkvB("vB", 2 * C),
      { field: "o", name: `${p}attn.c_proj.weight`, shape: [C, C], conv: { col: 0, n: C } },
      { field: "oB", name: `${p}attn.c_proj.bias`, shape: [C] },
      { field: "mlpNormW", name: `${p}ln_2.weight`, shape: [C] },
      { field: "mlpNormB", name: `${p}ln_2.bias`, shape: [C] },
      { field: "up", name: `${p}mlp.c_fc.weight`, shape: [C, F], conv: { col: 0, n: F } },
      { field: "upB", name: `${p}mlp.c_fc.bias`, shape: [F] },
      { field: "down", name: `${p}mlp.c_proj.weight`, shape: [F, C], conv: { col: 0, n: C } },
      { field: "downB", name: `${p}mlp.c_proj.bias`, shape: [C] },
    ];
  },
  // The causal-mask buffers older files carry.
  ignored: /(^|\.)attn\.(bias|masked_bias)$/,
  presets: { gpt2: GPT2_124M },
};
