// OPT (transformers' modeling_opt.py): config.json typed with Hugging Face's field names and
// validated, its Dims, and its checkpoint names. What modeling_opt.py supports and we do not is
// refused here, naming the field.
import { oneLine } from "../../formats/types.js";
import { activation, checkSizes, field, jsonObject, show, type Dims, type Json } from "../config.js";
import { when, type Family, type GlobalField, type TensorRef } from "../family.js";

export interface OptConfig {
  model_type?: "opt";
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

/** OPT stores positions shifted by 2 (fairseq's padding_idx + 1). */
export const POSITION_OFFSET = 2;
/** LayerNorm eps is fixed in modeling_opt.py (nn.LayerNorm default). */
export const LAYER_NORM_EPS = 1e-5;

/** Parse and validate an OPT config.json (text or parsed object). `label` names the file in errors. */
export function parseOptConfig(input: string | unknown, label = "config.json"): OptConfig {
  const cfg = jsonObject(input, label);
  if (cfg.model_type !== undefined && cfg.model_type !== "opt") {
    const t = typeof cfg.model_type === "string" ? `'${oneLine(cfg.model_type, 80)}'` : show(cfg.model_type);
    throw new Error(`${label}: model_type ${t} is not supported (only 'opt')`);
  }
  return readOptConfig(cfg, label);
}

function readOptConfig(cfg: Json, label: string): OptConfig {
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
  checkSizes(label, {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    ffn_dim: c.ffn_dim,
    max_position_embeddings: c.max_position_embeddings,
    word_embed_proj_dim: c.word_embed_proj_dim,
  });
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new Error(`${label}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  activation(label, "activation_function", c.activation_function);
  for (const k of ["pad_token_id", "bos_token_id", "eos_token_id"] as const) {
    if (c[k] < 0 || c[k] >= c.vocab_size)
      throw new Error(`${label}: field '${k}' = ${c[k]} is outside the vocabulary [0, ${c.vocab_size})`);
  }
  return c;
}

export function optDims(c: OptConfig): Dims {
  const H = c.num_attention_heads;
  const D = c.hidden_size / H;
  return {
    family: "opt",
    V: c.vocab_size,
    C: c.hidden_size,
    E: c.word_embed_proj_dim,
    L: c.num_hidden_layers,
    H,
    Hkv: H,
    D,
    KV: H * D,
    F: c.ffn_dim,
    maxPositions: c.max_position_embeddings,
    norm: "layer",
    normEps: LAYER_NORM_EPS,
    normAffine: c.layer_norm_elementwise_affine,
    preNorm: c.do_layer_norm_before,
    // modeling_opt.py: the final LayerNorm exists only for pre-LN models that do not remove it.
    finalNorm: c.do_layer_norm_before && !c._remove_final_layer_norm,
    project: c.word_embed_proj_dim !== c.hidden_size,
    positions: "learned",
    positionOffset: POSITION_OFFSET,
    P: c.max_position_embeddings + POSITION_OFFSET,
    ropeTheta: 0,
    ropeFactor: 1,
    mlp: "plain",
    activation: activation("config.json", "activation_function", c.activation_function),
    qkvBias: c.enable_bias,
    oBias: c.enable_bias,
    mlpBias: c.enable_bias,
    tied: c.tie_word_embeddings,
    attnScaled: true,
    attnScaleByLayer: false,
    eos: [c.eos_token_id],
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

export const OPT: Family<OptConfig> = {
  name: "opt",
  title: "OPT",
  modelTypes: ["opt"],
  architecture: "OPTForCausalLM",
  parse: readOptConfig,
  dims: optDims,
  // transformers writes model.decoder.*; Meta's facebook/opt-* files have decoder.*.
  prefixes: ["model.decoder.", "decoder."],
  globals(d) {
    const g: TensorRef<GlobalField>[] = [
      { field: "embedTokens", name: "embed_tokens.weight", shape: [d.V, d.E] },
      { field: "embedPositions", name: "embed_positions.weight", shape: [d.P, d.C] },
    ];
    if (d.project) {
      g.push({ field: "projectIn", name: "project_in.weight", shape: [d.C, d.E] });
      g.push({ field: "projectOut", name: "project_out.weight", shape: [d.E, d.C] });
    }
    if (d.finalNorm && d.normAffine) {
      g.push({ field: "finalNormW", name: "final_layer_norm.weight", shape: [d.C] });
      g.push({ field: "finalNormB", name: "final_layer_norm.bias", shape: [d.C] });
    }
    return g;
  },
  layer(d, i) {
    const p = `layers.${i}.`;
    const C = d.C;
    return [
      ...when(
        d.normAffine,
        { field: "attnNormW", name: `${p}self_attn_layer_norm.weight`, shape: [C] },
        { field: "attnNormB", name: `${p}self_attn_layer_norm.bias`, shape: [C] },
      ),
      { field: "q", name: `${p}self_attn.q_proj.weight`, shape: [C, C] },
      ...when(d.qkvBias, { field: "qB", name: `${p}self_attn.q_proj.bias`, shape: [C] }),
      { field: "k", name: `${p}self_attn.k_proj.weight`, shape: [C, C] },
      ...when(d.qkvBias, { field: "kB", name: `${p}self_attn.k_proj.bias`, shape: [C] }),
      { field: "v", name: `${p}self_attn.v_proj.weight`, shape: [C, C] },
      ...when(d.qkvBias, { field: "vB", name: `${p}self_attn.v_proj.bias`, shape: [C] }),
      { field: "o", name: `${p}self_attn.out_proj.weight`, shape: [C, C] },
      ...when(d.oBias, { field: "oB", name: `${p}self_attn.out_proj.bias`, shape: [C] }),
      ...when(
        d.normAffine,
        { field: "mlpNormW", name: `${p}final_layer_norm.weight`, shape: [C] },
        { field: "mlpNormB", name: `${p}final_layer_norm.bias`, shape: [C] },
      ),
      { field: "up", name: `${p}fc1.weight`, shape: [d.F, C] },
      ...when(d.mlpBias, { field: "upB", name: `${p}fc1.bias`, shape: [d.F] }),
      { field: "down", name: `${p}fc2.weight`, shape: [C, d.F] },
      ...when(d.mlpBias, { field: "downB", name: `${p}fc2.bias`, shape: [C] }),
    ];
  },
  presets: { "opt-125m": OPT_125M },
};
