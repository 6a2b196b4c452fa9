// Plain float64 forward passes of transformers' LlamaForCausalLM, Qwen2ForCausalLM and
// GPT2LMHeadModel (v4.36 line, eager attention as on torch < 2.1.1), written from
// modeling_llama.py / modeling_qwen2.py / modeling_gpt2.py line by line, for checking the runtime
// on configurations the fixtures do not cover. Slow and obvious on purpose: every row of the batch
// is computed on its own, every sum runs in f64, nothing is cached between calls.
//
// Inputs and outputs:
//   config  — the checkpoint's config.json object (HF field names and HF defaults).
//   get     — tensor by HF name ({shape, data}), or undefined/null when the checkpoint lacks it.
//   ids     — token id rows (B × T); attentionMask optional (left padding); position ids are
//             generate()'s: cumsum(mask) − 1, masked positions set to 1 (arange without a mask).
// Result: logits (B·T·V) and hidden states (B·T·C each), like the model's forward with
// outputHiddenStates: embeddings = input of layer 0, layers[i] = raw output of layer i,
// final = after the final norm = lm_head input.
//
// Padded query positions (every key masked) are not garbage-in-garbage-out here but what HF's eager
// attention computes: its masks add finfo(f32).min, so such a row's softmax is uniform over the keys
// whose score became exactly `min` (LLaMA/Qwen2: all keys; GPT-2: all but padded future keys, where
// causal min + padding min overflow to −inf). Valid positions never see padded keys either way.
import { writeSafetensors, type TensorToWrite } from "../src/formats/safetensors.js";
import type { TensorSource } from "../src/formats/types.js";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { gelu, geluTanh, relu, silu } from "./ref.js";

export type Family = "llama" | "qwen2" | "gpt2";
export interface Tensor {
  shape: number[];
  data: Float64Array | Float32Array;
}
export type GetTensor = (name: string) => Tensor | undefined | null;
/** A config.json object: HF field names. */
export type HfConfig = Record<string, unknown>;

export interface HiddenStates {
  embeddings: Float64Array;
  layers: Float64Array[];
  final: Float64Array;
}
export interface ReferenceResult {
  /** (B, T, V) row-major. */
  logits: Float64Array;
  /** Each (B, T, C) row-major. */
  hiddenStates: HiddenStates;
  batch: number;
  seqLen: number;
  vocab: number;
  hidden: number;
}
export interface ForwardOptions {
  /** 1 = token, 0 = padding; default all ones. */
  attentionMask?: number[][];
  /** Overrides the position ids derived from the mask (e.g. to probe rope scaling). */
  positionIds?: number[][];
}
export interface GreedyOptions {
  attentionMask?: number[][];
  /** Stop a row at this token (then it emits padTokenId, as generate() does); default: never. */
  eosTokenId?: number;
  padTokenId?: number;
}

// ---------------------------------------------------------------------------------------------
// configuration

export function familyOf(config: HfConfig): Family {
  const mt = config.model_type;
  if (mt === "llama" || mt === "qwen2" || mt === "gpt2") return mt;
  const arch = Array.isArray(config.architectures) ? String(config.architectures[0]) : "";
  if (arch === "LlamaForCausalLM") return "llama";
  if (arch === "Qwen2ForCausalLM") return "qwen2";
  if (arch === "GPT2LMHeadModel") return "gpt2";
  throw new Error(`family-reference: unsupported model_type ${String(mt)} / architecture ${arch}`);
}

const num = (config: HfConfig, key: string, dflt?: number): number => {
  const v = config[key];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new Error(`family-reference: config.${key} is required`);
    return dflt;
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`family-reference: config.${key} = ${String(v)}`);
  return v;
};
const bool = (config: HfConfig, key: string, dflt: boolean): boolean => {
  const v = config[key];
  return v === undefined || v === null ? dflt : Boolean(v);
};

interface LlamaDims {
  family: "llama" | "qwen2";
  V: number;
  C: number;
  L: number;
  H: number;
  Hkv: number;
  D: number;
  F: number;
  eps: number;
  theta: number;
  ropeFactor: number;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  act: (x: number) => number;
  slidingWindow: number | null;
}
interface Gpt2Dims {
  family: "gpt2";
  V: number;
  C: number;
  L: number;
  H: number;
  D: number;
  F: number;
  P: number;
  eps: number;
  tied: boolean;
  scaleWeights: boolean;
  scaleByLayer: boolean;
  act: (x: number) => number;
}
type Dims = LlamaDims | Gpt2Dims;

/** transformers' ACT2FN, in f64. */
export function activation(name: string): (x: number) => number {
  switch (name) {
    case "gelu":
      return gelu; // exact erf form
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return geluTanh; // 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))
    case "gelu_fast":
      return (x) => 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)));
    case "quick_gelu":
      return (x) => x / (1 + Math.exp(-1.702 * x));
    case "gelu_10":
      return (x) => Math.min(10, Math.max(-10, gelu(x)));
    case "relu":
      return relu;
    case "relu2":
      return (x) => relu(x) ** 2;
    case "relu6":
      return (x) => Math.min(6, relu(x));
    case "leaky_relu":
      return (x) => (x >= 0 ? x : 0.01 * x);
    case "silu":
    case "swish":
      return silu;
    case "sigmoid":
      return (x) => 1 / (1 + Math.exp(-x));
    case "tanh":
      return Math.tanh;
    case "mish":
      return (x) => x * Math.tanh(Math.log1p(Math.exp(x)));
    case "linear":
      return (x) => x;
    default:
      throw new Error(`family-reference: unsupported activation ${name}`);
  }
}

export function dimsOf(config: HfConfig): Dims {
  const family = familyOf(config);
  if (family === "gpt2") {
    const C = num(config, "n_embd", 768),
      H = num(config, "n_head", 12);
    if (C % H) throw new Error(`family-reference: n_embd ${C} not divisible by n_head ${H}`);
    return {
      family,
      V: num(config, "vocab_size", 50257),
      C,
      L: num(config, "n_layer", 12),
      H,
      D: C / H,
      F: num(config, "n_inner", 4 * C),
      P: num(config, "n_positions", 1024),
      eps: num(config, "layer_norm_epsilon", 1e-5),
      tied: bool(config, "tie_word_embeddings", true),
      scaleWeights: bool(config, "scale_attn_weights", true),
      scaleByLayer: bool(config, "scale_attn_by_inverse_layer_idx", false),
      act: activation(String(config.activation_function ?? "gelu_new")),
    };
  }
  const C = num(config, "hidden_size"),
    H = num(config, "num_attention_heads");
  const Hkv = num(config, "num_key_value_heads", H);
  if (C % H) throw new Error(`family-reference: hidden_size ${C} not divisible by num_attention_heads ${H}`);
  if (H % Hkv) throw new Error(`family-reference: num_attention_heads ${H} not divisible by num_key_value_heads ${Hkv}`);
  const D = C / H;
  if (config.head_dim !== undefined && config.head_dim !== null && config.head_dim !== D) {
    throw new Error(`family-reference: head_dim ${String(config.head_dim)} ≠ hidden_size / num_attention_heads (not in v4.36)`);
  }
  if (D % 2) throw new Error(`family-reference: odd head_dim ${D}`);
  let ropeFactor = 1;
  const rs = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs !== undefined && rs !== null) {
    const type = rs.type ?? rs.rope_type;
    if (type !== "linear") throw new Error(`family-reference: rope_scaling type ${String(type)} is not supported (only linear)`);
    ropeFactor = Number(rs.factor);
    if (!(ropeFactor > 0)) throw new Error(`family-reference: rope_scaling factor ${String(rs.factor)}`);
  }
  const attnBias = family === "llama" && bool(config, "attention_bias", false);
  const sw = family === "qwen2" ? (config.sliding_window ?? 4096) : null;
  return {
    family,
    V: num(config, "vocab_size", family === "qwen2" ? 151936 : 32000),
    C,
    L: num(config, "num_hidden_layers"),
    H,
    Hkv,
    D,
    F: num(config, "intermediate_size"),
    eps: num(config, "rms_norm_eps", 1e-6),
    theta: num(config, "rope_theta", 10000),
    ropeFactor,
    tied: bool(config, "tie_word_embeddings", false),
    qkvBias: family === "qwen2" || attnBias,
    oBias: attnBias,
    mlpBias: family === "llama" && bool(config, "mlp_bias", false),
    act: activation(String(config.hidden_act ?? "silu")),
    slidingWindow: typeof sw === "number" ? sw : null,
  };
}

/** Every tensor the model reads, with its shape, as HF's save_pretrained names them (no tied head). */
export function checkpointLayout(config: HfConfig, opts: { gpt2Prefix?: boolean } = {}): { name: string; shape: number[] }[] {
  const d = dimsOf(config);
  const out: { name: string; shape: number[] }[] = [];
  const add = (name: string, ...shape: number[]) => out.push({ name, shape });
  if (d.family === "gpt2") {
    const p = opts.gpt2Prefix === false ? "" : "transformer.";
    add(p + "wte.weight", d.V, d.C);
    add(p + "wpe.weight", d.P, d.C);
    for (let i = 0; i < d.L; i++) {
      const l = `${p}h.${i}.`;
      add(l + "ln_1.weight", d.C);
      add(l + "ln_1.bias", d.C);
      add(l + "attn.c_attn.weight", d.C, 3 * d.C);
      add(l + "attn.c_attn.bias", 3 * d.C);
      add(l + "attn.c_proj.weight", d.C, d.C);
      add(l + "attn.c_proj.bias", d.C);
      add(l + "ln_2.weight", d.C);
      add(l + "ln_2.bias", d.C);
      add(l + "mlp.c_fc.weight", d.C, d.F);
      add(l + "mlp.c_fc.bias", d.F);
      add(l + "mlp.c_proj.weight", d.F, d.C);
      add(l + "mlp.c_proj.bias", d.C);
    }
    add(p + "ln_f.weight", d.C);
    add(p + "ln_f.bias", d.C);
    if (!d.tied) add("lm_head.weight", d.V, d.C);
    return out;
  }
  const { C, H, Hkv, D, F } = d;
  add("model.embed_tokens.weight", d.V, C);
  for (let i = 0; i < d.L; i++) {
    const l = `model.layers.${i}.`;
    add(l + "input_layernorm.weight", C);
    add(l + "self_attn.q_proj.weight", H * D, C);
    if (d.qkvBias) add(l + "self_attn.q_proj.bias", H * D);
    add(l + "self_attn.k_proj.weight", Hkv * D, C);
    if (d.qkvBias) add(l + "self_attn.k_proj.bias", Hkv * D);
    add(l + "self_attn.v_proj.weight", Hkv * D, C);
    if (d.qkvBias) add(l + "self_attn.v_proj.bias", Hkv * D);
    add(l + "self_attn.o_proj.weight", C, H * D);
    if (d.oBias) add(l + "self_attn.o_proj.bias", C);
    add(l + "post_attention_layernorm.weight", C);
    add(l + "mlp.gate_proj.weight", F, C);
    if (d.mlpBias) add(l + "mlp.gate_proj.bias", F);
    add(l + "mlp.up_proj.weight", F, C);
    if (d.mlpBias) add(l + "mlp.up_proj.bias", F);
    add(l + "mlp.down_proj.weight", C, F);
    if (d.mlpBias) add(l + "mlp.down_proj.bias", C);
  }
  add("model.norm.weight", C);
  if (!d.tied) add("lm_head.weight", d.V, C);
  return out;
}

// ---------------------------------------------------------------------------------------------
// maths (x is (T, K) row-major)

type Vec = Float64Array;

/** nn.Linear: weight (N, K), y = x·Wᵀ + b. */
function linear(x: Vec, T: number, K: number, w: Vec, b: Vec | null, N: number): Vec {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < N; o++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[o * K + k];
      y[t * N + o] = s + (b ? b[o] : 0);
    }
  return y;
}

/** GPT-2's Conv1D: weight (K, N) = (in, out), y = x·W + b. */
function conv1d(x: Vec, T: number, K: number, w: Vec, b: Vec, N: number): Vec {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < N; o++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[k * N + o];
      y[t * N + o] = s + b[o];
    }
  return y;
}

function rmsNorm(x: Vec, C: number, w: Vec, eps: number): Vec {
  const y = new Float64Array(x.length);
  for (let t = 0; t < x.length / C; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = w[c] * (x[t * C + c] * r);
  }
  return y;
}

function layerNorm(x: Vec, C: number, w: Vec, b: Vec, eps: number): Vec {
  const y = new Float64Array(x.length);
  for (let t = 0; t < x.length / C; t++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[t * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[t * C + c] - m) ** 2;
    v /= C; // biased variance, as torch's layer_norm
    const r = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = (x[t * C + c] - m) * r * w[c] + b[c];
  }
  return y;
}

/**
 * Rotary embedding in transformers' halves-rotated form, in place on (T, nHeads·D):
 * x' = x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁], θᵢ = (pos / factor) / theta^(2i/D).
 */
function rope(x: Vec, T: number, nHeads: number, D: number, pos: number[], theta: number, factor: number): void {
  const half = D / 2;
  for (let t = 0; t < T; t++) {
    const p = pos[t] / factor;
    for (let h = 0; h < nHeads; h++) {
      const o = t * nHeads * D + h * D;
      for (let i = 0; i < half; i++) {
        const ang = p * (1 / theta ** ((2 * i) / D));
        const c = Math.cos(ang),
          s = Math.sin(ang);
        const x1 = x[o + i],
          x2 = x[o + i + half];
        x[o + i] = x1 * c - x2 * s;
        x[o + i + half] = x2 * c + x1 * s;
      }
    }
  }
}

/**
 * Causal self-attention of one row: q (T, H·D), k and v (T, Hkv·D); query head h reads KV head
 * floor(h / (H / Hkv)) (repeat_kv). Scores are q·k · scale; masking as HF's eager path (see top).
 */
function attention(
  q: Vec,
  k: Vec,
  v: Vec,
  mask: number[],
  T: number,
  H: number,
  Hkv: number,
  D: number,
  scale: number,
  style: "llama" | "gpt2",
): Vec {
  const out = new Float64Array(T * H * D);
  const group = H / Hkv;
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      // kind per key: 0 = visible (score), 1 = score became finfo.min, 2 = −inf
      const kind = new Array<number>(T);
      const score = new Float64Array(T);
      for (let j = 0; j < T; j++) {
        const future = j > t,
          padded = !mask[j];
        if (style === "llama") kind[j] = future || padded ? 1 : 0;
        else kind[j] = future ? (padded ? 2 : 1) : padded ? 1 : 0;
        if (kind[j] === 0) {
          let s = 0;
          for (let e = 0; e < D; e++) s += q[t * H * D + h * D + e] * k[j * Hkv * D + kh * D + e];
          score[j] = s * scale;
        }
      }
      const keep = kind.includes(0) ? 0 : 1; // nothing visible: uniform over the `min` keys
      let m = -Infinity;
      for (let j = 0; j < T; j++) if (kind[j] === keep) m = Math.max(m, keep === 0 ? score[j] : 0);
      const p = new Float64Array(T);
      let z = 0;
      for (let j = 0; j < T; j++) if (kind[j] === keep) z += p[j] = keep === 0 ? Math.exp(score[j] - m) : 1;
      for (let j = 0; j < T; j++) {
        if (!p[j]) continue;
        const w = p[j] / z;
        for (let e = 0; e < D; e++) out[t * H * D + h * D + e] += w * v[j * Hkv * D + kh * D + e];
      }
    }
  }
  return out;
}

const add = (a: Vec, b: Vec): Vec => a.map((x, i) => x + b[i]);

// ---------------------------------------------------------------------------------------------
// weights

function loader(get: GetTensor) {
  const load = (name: string, shape: number[], required: boolean): Vec | null => {
    const t = get(name);
    if (t === undefined || t === null) {
      if (required) throw new Error(`family-reference: checkpoint has no tensor ${name}`);
      return null;
    }
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new Error(`family-reference: ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    if (t.data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`family-reference: ${name}: data length ${t.data.length}`);
    return Float64Array.from(t.data);
  };
  return {
    need: (name: string, ...shape: number[]): Vec => load(name, shape, true)!,
    has: (name: string) => {
      const t = get(name);
      return t !== undefined && t !== null;
    },
  };
}

/** Loads the weights once; the returned function runs the forward pass of one row. */
function prepare(
  config: HfConfig,
  get: GetTensor,
): {
  d: Dims;
  row: (
    ids: number[],
    mask: number[],
    pos: number[],
  ) => {
    logits: Vec;
    emb: Vec;
    layers: Vec[];
    final: Vec;
  };
} {
  const d = dimsOf(config);
  const { need, has } = loader(get);
  if (d.family === "gpt2") {
    const { C, H, D, F, V, P } = d;
    const p = has("transformer.wte.weight") ? "transformer." : "";
    const wte = need(p + "wte.weight", V, C),
      wpe = need(p + "wpe.weight", P, C);
    const layers = Array.from({ length: d.L }, (_, i) => {
      const l = `${p}h.${i}.`;
      return {
        ln1w: need(l + "ln_1.weight", C),
        ln1b: need(l + "ln_1.bias", C),
        attnW: need(l + "attn.c_attn.weight", C, 3 * C),
        attnB: need(l + "attn.c_attn.bias", 3 * C),
        projW: need(l + "attn.c_proj.weight", C, C),
        projB: need(l + "attn.c_proj.bias", C),
        ln2w: need(l + "ln_2.weight", C),
        ln2b: need(l + "ln_2.bias", C),
        fcW: need(l + "mlp.c_fc.weight", C, F),
        fcB: need(l + "mlp.c_fc.bias", F),
        mprojW: need(l + "mlp.c_proj.weight", F, C),
        mprojB: need(l + "mlp.c_proj.bias", C),
      };
    });
    const lnfw = need(p + "ln_f.weight", C),
      lnfb = need(p + "ln_f.bias", C);
    const head = d.tied ? wte : need("lm_head.weight", V, C);
    return {
      d,
      row(ids, mask, pos) {
        const T = ids.length;
        let x: Vec = new Float64Array(T * C);
        for (let t = 0; t < T; t++) {
          if (!(ids[t] >= 0 && ids[t] < V)) throw new Error(`family-reference: token id ${ids[t]} out of range`);
          if (!(pos[t] >= 0 && pos[t] < P)) throw new Error(`family-reference: position ${pos[t]} ≥ n_positions ${P}`);
          for (let c = 0; c < C; c++) x[t * C + c] = wte[ids[t] * C + c] + wpe[pos[t] * C + c];
        }
        const emb = x,
          outs: Vec[] = [];
        layers.forEach((w, i) => {
          const h = layerNorm(x, C, w.ln1w, w.ln1b, d.eps);
          const qkv = conv1d(h, T, C, w.attnW, w.attnB, 3 * C);
          const q = new Float64Array(T * C),
            k = new Float64Array(T * C),
            v = new Float64Array(T * C);
          for (let t = 0; t < T; t++) {
            q.set(qkv.subarray(t * 3 * C, t * 3 * C + C), t * C);
            k.set(qkv.subarray(t * 3 * C + C, t * 3 * C + 2 * C), t * C);
            v.set(qkv.subarray(t * 3 * C + 2 * C, t * 3 * C + 3 * C), t * C);
          }
          let scale = 1;
          if (d.scaleWeights) scale /= Math.sqrt(D);
          if (d.scaleByLayer) scale /= i + 1;
          const a = attention(q, k, v, mask, T, H, H, D, scale, "gpt2");
          x = add(x, conv1d(a, T, C, w.projW, w.projB, C));
          const h2 = layerNorm(x, C, w.ln2w, w.ln2b, d.eps);
          const f = conv1d(h2, T, C, w.fcW, w.fcB, F).map(d.act);
          x = add(x, conv1d(f, T, F, w.mprojW, w.mprojB, C));
          outs.push(x);
        });
        const final = layerNorm(x, C, lnfw, lnfb, d.eps);
        return { logits: linear(final, T, C, head, null, V), emb, layers: outs, final };
      },
    };
  }
  const { C, H, Hkv, D, F, V } = d;
  const opt = (cond: boolean, name: string, n: number) => (cond ? need(name, n) : null);
  const embed = need("model.embed_tokens.weight", V, C);
  const layers = Array.from({ length: d.L }, (_, i) => {
    const l = `model.layers.${i}.`;
    return {
      n1: need(l + "input_layernorm.weight", C),
      qW: need(l + "self_attn.q_proj.weight", H * D, C),
      qB: opt(d.qkvBias, l + "self_attn.q_proj.bias", H * D),
      kW: need(l + "self_attn.k_proj.weight", Hkv * D, C),
      kB: opt(d.qkvBias, l + "self_attn.k_proj.bias", Hkv * D),
      vW: need(l + "self_attn.v_proj.weight", Hkv * D, C),
      vB: opt(d.qkvBias, l + "self_attn.v_proj.bias", Hkv * D),
      oW: need(l + "self_attn.o_proj.weight", C, H * D),
      oB: opt(d.oBias, l + "self_attn.o_proj.bias", C),
      n2: need(l + "post_attention_layernorm.weight", C),
      gW: need(l + "mlp.gate_proj.weight", F, C),
      gB: opt(d.mlpBias, l + "mlp.gate_proj.bias", F),
      uW: need(l + "mlp.up_proj.weight", F, C),
      uB: opt(d.mlpBias, l + "mlp.up_proj.bias", F),
      dW: need(l + "mlp.down_proj.weight", C, F),
      dB: opt(d.mlpBias, l + "mlp.down_proj.bias", C),
    };
  });
  const norm = need("model.norm.weight", C);
  const head = d.tied ? embed : need("lm_head.weight", V, C);
  return {
    d,
    row(ids, mask, pos) {
      const T = ids.length;
      if (d.slidingWindow !== null && T > d.slidingWindow) {
        throw new Error(`family-reference: ${T} positions exceed Qwen2's sliding_window ${d.slidingWindow} (not modelled)`);
      }
      let x: Vec = new Float64Array(T * C);
      for (let t = 0; t < T; t++) {
        if (!(ids[t] >= 0 && ids[t] < V)) throw new Error(`family-reference: token id ${ids[t]} out of range`);
        x.set(embed.subarray(ids[t] * C, (ids[t] + 1) * C), t * C);
      }
      const emb = x,
        outs: Vec[] = [];
      for (const w of layers) {
        const h = rmsNorm(x, C, w.n1, d.eps);
        const q = linear(h, T, C, w.qW, w.qB, H * D);
        const k = linear(h, T, C, w.kW, w.kB, Hkv * D);
        const v = linear(h, T, C, w.vW, w.vB, Hkv * D);
        rope(q, T, H, D, pos, d.theta, d.ropeFactor);
        rope(k, T, Hkv, D, pos, d.theta, d.ropeFactor);
        const a = attention(q, k, v, mask, T, H, Hkv, D, 1 / Math.sqrt(D), "llama");
        x = add(x, linear(a, T, H * D, w.oW, w.oB, C));
        const h2 = rmsNorm(x, C, w.n2, d.eps);
        const g = linear(h2, T, C, w.gW, w.gB, F),
          u = linear(h2, T, C, w.uW, w.uB, F);
        x = add(
          x,
          linear(
            g.map((gv, n) => d.act(gv) * u[n]),
            T,
            F,
            w.dW,
            w.dB,
            C,
          ),
        );
        outs.push(x);
      }
      const final = rmsNorm(x, C, norm, d.eps);
      return { logits: linear(final, T, C, head, null, V), emb, layers: outs, final };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// public entry points

/** generate()'s position ids: cumsum(mask) − 1, with masked positions set to 1. */
export function positionIdsFromMask(mask: number[][]): number[][] {
  return mask.map((row) => {
    let seen = 0;
    return row.map((m) => (m ? seen++ : 1));
  });
}

function checkBatch(ids: number[][], opts: ForwardOptions) {
  const B = ids.length;
  if (B === 0 || ids[0].length === 0) throw new Error("family-reference: empty input");
  const T = ids[0].length;
  const mask = opts.attentionMask ?? ids.map((r) => r.map(() => 1));
  const pos = opts.positionIds ?? positionIdsFromMask(mask);
  for (const [what, rows] of [
    ["input_ids", ids],
    ["attention_mask", mask],
    ["position_ids", pos],
  ] as const) {
    if (rows.length !== B || rows.some((r) => r.length !== T)) throw new Error(`family-reference: ${what} is not ${B} × ${T}`);
  }
  return { B, T, mask, pos };
}

function runBatch(model: ReturnType<typeof prepare>, ids: number[][], opts: ForwardOptions): ReferenceResult {
  const { B, T, mask, pos } = checkBatch(ids, opts);
  const { C, V, L } = model.d;
  const logits = new Float64Array(B * T * V);
  const hs: HiddenStates = {
    embeddings: new Float64Array(B * T * C),
    layers: Array.from({ length: L }, () => new Float64Array(B * T * C)),
    final: new Float64Array(B * T * C),
  };
  for (let b = 0; b < B; b++) {
    const r = model.row(ids[b], mask[b], pos[b]);
    logits.set(r.logits, b * T * V);
    hs.embeddings.set(r.emb, b * T * C);
    r.layers.forEach((l, i) => hs.layers[i].set(l, b * T * C));
    hs.final.set(r.final, b * T * C);
  }
  return { logits, hiddenStates: hs, batch: B, seqLen: T, vocab: V, hidden: C };
}

/** The whole forward pass of a batch: logits for every position and every hidden state. */
export function referenceForward(config: HfConfig, get: GetTensor, inputIds: number[][], opts: ForwardOptions = {}): ReferenceResult {
  return runBatch(prepare(config, get), inputIds, opts);
}

/** First index of the largest value in [from, to) (torch.argmax on CPU). */
export function argmaxRange(x: ArrayLike<number>, from = 0, to = x.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (x[i] > x[best]) best = i;
  return best - from;
}

/**
 * Greedy generation, recomputing the whole (left-padded) batch every step: the new token gets
 * mask 1 and the next position id, exactly as generate() with the KV cache. Returns the new
 * tokens of each row (all rows stop early only when every row has produced eosTokenId).
 */
export function referenceGreedy(
  config: HfConfig,
  get: GetTensor,
  inputIds: number[][],
  maxNewTokens: number,
  opts: GreedyOptions = {},
): number[][] {
  const model = prepare(config, get);
  const seqs = inputIds.map((r) => [...r]);
  const mask = (opts.attentionMask ?? inputIds.map((r) => r.map(() => 1))).map((r) => [...r]);
  const done = inputIds.map(() => false);
  const out: number[][] = inputIds.map(() => []);
  for (let step = 0; step < maxNewTokens && !done.every(Boolean); step++) {
    const r = runBatch(model, seqs, { attentionMask: mask });
    const { seqLen: T, vocab: V } = r;
    seqs.forEach((row, b) => {
      const tok = done[b] ? (opts.padTokenId ?? opts.eosTokenId!) : argmaxRange(r.logits, (b * T + T - 1) * V, (b * T + T) * V);
      if (opts.eosTokenId !== undefined && tok === opts.eosTokenId) done[b] = true;
      row.push(tok);
      mask[b].push(1);
      out[b].push(tok);
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// checkpoints

export type Checkpoint = Map<string, { shape: number[]; data: Float32Array }>;

/** A GetTensor over a TensorSource (safetensors, pytorch .bin, ...), read as f32. */
export function getterFromSource(src: TensorSource): GetTensor {
  return (name) => {
    const info = src.get(name);
    if (!info) return undefined;
    const data = new Float32Array(info.shape.reduce((a, b) => a * b, 1));
    src.readF32(name, data);
    return { shape: info.shape, data };
  };
}

export const getterFromMap =
  (m: Map<string, Tensor>): GetTensor =>
  (name) =>
    m.get(name);

/**
 * A seeded random checkpoint for `config` (all tensors the model reads, HF names, f32), scaled
 * like the fixtures' so that a wrong kernel moves the top tokens: projections N(0, k/√fan_in),
 * norm weights U(0.5, 1.5), biases N(0, 0.1) (GPT-2's c_fc N(−0.2, 0.5)). A tied checkpoint has no
 * lm_head.weight, as save_pretrained writes it. `gpt2Prefix: false` gives the hub's names without
 * "transformer.".
 */
export function randomCheckpoint(config: HfConfig, seed: number, opts: { gpt2Prefix?: boolean } = {}): Checkpoint {
  const rng = xoroshiro128plus(seed);
  const normal = () => {
    const u = 1 - uniformFloat64(rng),
      v = uniformFloat64(rng);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const d = dimsOf(config);
  const out: Checkpoint = new Map();
  for (const { name, shape } of checkpointLayout(config, opts)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const fill = (f: () => number) => {
      for (let i = 0; i < n; i++) data[i] = f();
    };
    const fanIn =
      d.family === "gpt2" && shape.length === 2 && !name.endsWith("wte.weight") && !name.endsWith("wpe.weight")
        ? shape[0]
        : shape[shape.length - 1];
    if (/norm|ln_/.test(name) && name.endsWith("weight")) fill(() => 0.5 + uniformFloat64(rng));
    else if (/norm|ln_/.test(name)) fill(() => 0.05 * normal());
    else if (name.includes("mlp.c_fc.bias")) fill(() => -0.2 + 0.5 * normal());
    else if (name.endsWith(".bias")) fill(() => 0.1 * normal());
    else if (/embed_tokens|wte|wpe/.test(name)) fill(() => (d.family === "gpt2" ? 0.05 : 0.5) * normal());
    else if (name === "lm_head.weight") fill(() => 0.5 * normal());
    else {
      const k = /q_proj|k_proj|c_attn/.test(name) ? 1.6 : /o_proj|down_proj|attn\.c_proj|mlp\.c_proj/.test(name) ? 0.5 : 1;
      fill(() => (k / Math.sqrt(fanIn)) * normal());
    }
    out.set(name, { shape, data });
  }
  return out;
}

/** The checkpoint as a safetensors file (F32, in the given order), via the project's writer. */
export function checkpointToSafetensors(
  ckpt: Map<string, { shape: number[]; data: Float32Array }>,
  metadata: Record<string, string> = { format: "pt" },
): Uint8Array {
  const tensors: TensorToWrite[] = [...ckpt].map(([name, t]) => ({
    name,
    dtype: "F32",
    shape: t.shape,
    data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  }));
  return writeSafetensors(tensors, metadata);
}
