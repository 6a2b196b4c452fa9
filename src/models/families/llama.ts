// LLaMA and Qwen2 (transformers' LlamaForCausalLM, Qwen2ForCausalLM): RMSNorm, rotary positions
// (the halves-rotated form), a gated SiLU MLP, grouped-query attention. Qwen2 is LLaMA with biases
// on q, k and v. TinyLlama, SmolLM2, Llama 2 / 3 fine-tunes and Qwen2 / 2.5 load through here.
// What transformers can run and we cannot (rope types other than linear, sliding windows, a
// head_dim that is not hidden_size / heads) is refused naming the field and its value.
import { activation, checkSizes, field, show, tokenIds, type Dims, type Json } from "../config.js";
import { when, type Family } from "../family.js";

export interface LlamaConfig {
  model_type: "llama" | "qwen2";
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: { type: "linear"; factor: number } | null;
  hidden_act: string;
  /** LLaMA: biases on q, k, v and o. Qwen2 always has q, k, v biases (and none on o). */
  attention_bias: boolean;
  mlp_bias: boolean;
  tie_word_embeddings: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[];
}

function ropeScaling(cfg: Json, label: string): LlamaConfig["rope_scaling"] {
  const r = cfg.rope_scaling;
  if (r === undefined || r === null) return null;
  if (typeof r !== "object" || Array.isArray(r))
    throw new Error(`${label}: field 'rope_scaling' must be an object or null, got ${show(r)}`);
  const o = r as Json;
  const type = o.rope_type ?? o.type;
  if (type === "default") return null;
  if (type !== "linear") throw new Error(`${label}: rope_scaling type ${show(type)} is not supported (supported: linear)`);
  const factor = o.factor;
  if (typeof factor !== "number" || !Number.isFinite(factor) || factor < 1)
    throw new Error(`${label}: rope_scaling factor ${show(factor)} must be a number ≥ 1`);
  return { type: "linear", factor };
}

function parse(cfg: Json, label: string): LlamaConfig {
  const type = cfg.model_type as "llama" | "qwen2";
  const vocab = field<number>(cfg, label, "vocab_size", "int");
  const hidden = field<number>(cfg, label, "hidden_size", "int");
  const heads = field<number>(cfg, label, "num_attention_heads", "int");
  const c: LlamaConfig = {
    model_type: type,
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: field(cfg, label, "intermediate_size", "int"),
    num_hidden_layers: field(cfg, label, "num_hidden_layers", "int"),
    num_attention_heads: heads,
    num_key_value_heads: field(cfg, label, "num_key_value_heads", "int", heads),
    max_position_embeddings: field(cfg, label, "max_position_embeddings", "int"),
    rms_norm_eps: field(cfg, label, "rms_norm_eps", "number", 1e-6),
    rope_theta: field(cfg, label, "rope_theta", "number", 10000),
    rope_scaling: ropeScaling(cfg, label),
    hidden_act: field(cfg, label, "hidden_act", "string", "silu"),
    attention_bias: type === "qwen2" ? true : field(cfg, label, "attention_bias", "bool", false),
    mlp_bias: type === "qwen2" ? false : field(cfg, label, "mlp_bias", "bool", false),
    tie_word_embeddings: field(cfg, label, "tie_word_embeddings", "bool", false),
    bos_token_id:
      cfg.bos_token_id === null || cfg.bos_token_id === undefined ? null : (tokenIds(cfg, label, "bos_token_id", vocab, [])[0] ?? null),
    eos_token_id: tokenIds(cfg, label, "eos_token_id", vocab, []),
  };
  checkSizes(label, {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    max_position_embeddings: c.max_position_embeddings,
  });
  if (hidden % heads !== 0) throw new Error(`${label}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
  if (heads % c.num_key_value_heads !== 0)
    throw new Error(`${label}: num_attention_heads ${heads} is not divisible by num_key_value_heads ${c.num_key_value_heads}`);
  const D = hidden / heads;
  if (D % 2 !== 0) throw new Error(`${label}: head dim ${D} (hidden_size / num_attention_heads) must be even for rotary embeddings`);
  if (cfg.head_dim !== undefined && cfg.head_dim !== null && cfg.head_dim !== D) {
    throw new Error(`${label}: head_dim ${show(cfg.head_dim)} is not supported (only hidden_size / num_attention_heads = ${D})`);
  }
  if (!(c.rms_norm_eps > 0)) throw new Error(`${label}: field 'rms_norm_eps' = ${c.rms_norm_eps} must be positive`);
  if (!(c.rope_theta > 0)) throw new Error(`${label}: field 'rope_theta' = ${c.rope_theta} must be positive`);
  activation(label, "hidden_act", c.hidden_act, ["silu", "swish"]);
  if (type === "qwen2" && cfg.use_sliding_window === true) {
    throw new Error(`${label}: use_sliding_window true is not supported (sliding-window attention)`);
  }
  if (cfg.partial_rotary_factor !== undefined && cfg.partial_rotary_factor !== 1)
    throw new Error(`${label}: partial_rotary_factor ${show(cfg.partial_rotary_factor)} is not supported (only 1)`);
  return c;
}

function dims(c: LlamaConfig): Dims {
  const H = c.num_attention_heads;
  const D = c.hidden_size / H;
  const qwen = c.model_type === "qwen2";
  return {
    family: c.model_type,
    V: c.vocab_size,
    C: c.hidden_size,
    E: c.hidden_size,
    L: c.num_hidden_layers,
    H,
    Hkv: c.num_key_value_heads,
    D,
    KV: c.num_key_value_heads * D,
    F: c.intermediate_size,
    maxPositions: c.max_position_embeddings,
    norm: "rms",
    normEps: c.rms_norm_eps,
    normAffine: true,
    preNorm: true,
    finalNorm: true,
    project: false,
    positions: "rope",
    positionOffset: 0,
    P: 0,
    ropeTheta: c.rope_theta,
    ropeFactor: c.rope_scaling?.factor ?? 1,
    mlp: "gated",
    activation: "silu",
    qkvBias: c.attention_bias,
    oBias: !qwen && c.attention_bias,
    mlpBias: c.mlp_bias,
    tied: c.tie_word_embeddings,
    attnScaled: true,
    attnScaleByLayer: false,
    eos: Array.isArray(c.eos_token_id) ? c.eos_token_id : [c.eos_token_id],
  };
}

/** HuggingFaceTB/SmolLM2-135M's config (the synthetic preset). */
export const SMOLLM2_135M: LlamaConfig = {
  model_type: "llama",
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  rope_scaling: null,
  hidden_act: "silu",
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: true,
  bos_token_id: 0,
  eos_token_id: 0,
};

/** Qwen/Qwen2.5-0.5B's config (the synthetic preset). */
export const QWEN25_05B: LlamaConfig = {
  model_type: "qwen2",
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_scaling: null,
  hidden_act: "silu",
  attention_bias: true,
  mlp_bias: false,
  tie_word_embeddings: true,
  bos_token_id: 151643,
  eos_token_id: 151643,
};

function llamaFamily(
  name: "llama" | "qwen2",
  title: string,
  architecture: string,
  presets: Record<string, LlamaConfig>,
): Family<LlamaConfig> {
  return {
    name,
    title,
    modelTypes: [name],
    architecture,
    parse,
    dims,
    prefixes: ["model."],
    globals: (d) => [
      { field: "embedTokens", name: "embed_tokens.weight", shape: [d.V, d.C] },
      { field: "finalNormW", name: "norm.weight", shape: [d.C] },
    ],
    layer(d, i) {
      const p = `layers.${i}.`;
      const { C, KV, F } = d;
      const a = `${p}self_attn.`;
      return [
        { field: "attnNormW", name: `${p}input_layernorm.weight`, shape: [C] },
        { field: "q", name: `${a}q_proj.weight`, shape: [C, C] },
        ...when(d.qkvBias, { field: "qB", name: `${a}q_proj.bias`, shape: [C] }),
        { field: "k", name: `${a}k_proj.weight`, shape: [KV, C] },
        ...when(d.qkvBias, { field: "kB", name: `${a}k_proj.bias`, shape: [KV] }),
        { field: "v", name: `${a}v_proj.weight`, shape: [KV, C] },
        ...when(d.qkvBias, { field: "vB", name: `${a}v_proj.bias`, shape: [KV] }),
        { field: "o", name: `${a}o_proj.weight`, shape: [C, C] },
        ...when(d.oBias, { field: "oB", name: `${a}o_proj.bias`, shape: [C] }),
        { field: "mlpNormW", name: `${p}post_attention_layernorm.weight`, shape: [C] },
        { field: "gate", name: `${p}mlp.gate_proj.weight`, shape: [F, C] },
        ...when(d.mlpBias, { field: "gateB", name: `${p}mlp.gate_proj.bias`, shape: [F] }),
        { field: "up", name: `${p}mlp.up_proj.weight`, shape: [F, C] },
        ...when(d.mlpBias, { field: "upB", name: `${p}mlp.up_proj.bias`, shape: [F] }),
        { field: "down", name: `${p}mlp.down_proj.weight`, shape: [C, F] },
        ...when(d.mlpBias, { field: "downB", name: `${p}mlp.down_proj.bias`, shape: [C] }),
      ];
    },
    // Older checkpoints carry the rotary inverse frequencies as a buffer.
    ignored: /\.rotary_emb\.inv_freq$/,
    presets,
  };
}

export const LLAMA = llamaFamily("llama", "LLaMA", "LlamaForCausalLM", { "smollm2-135m": SMOLLM2_135M });
export const QWEN2 = llamaFamily("qwen2", "Qwen2", "Qwen2ForCausalLM", { "qwen2.5-0.5b": QWEN25_05B });
