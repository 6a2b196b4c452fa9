// A decoder of any family wasm-lm runs (OPT, GPT-2, LLaMA / Qwen2) as an ONNX graph, built from a
// TensorSource with ./onnx.ts: the peer's model in `npm run bench`. The family is data here as it is
// in src/models/: the graph is built from the config's `Dims` (norm kind, position kind, MLP kind,
// head layout, biases) and the weights are read through the family's TensorRefs and CheckpointNames
// — the same table the model loads from — so no checkpoint name is written in this file.
//
// One graph serves prefill and decode, as optimum's merged decoders do for transformers.js: it takes
// the new tokens and every layer's past keys/values (an empty past, P = 0, for a prefill) and returns
// the logits of the chosen rows and the presents (past + new). Batch 1, no padding; computed as
// transformers computes OPTForCausalLM, GPT2LMHeadModel and LlamaForCausalLM / Qwen2ForCausalLM:
//
//   x   = embed_tokens[input_ids] (+ embed_positions[P + t + offset])      learned positions (OPT: offset 2)
//   per layer (pre-norm):
//     h = norm(x)                                                         LayerNorm(eps) or RMSNorm(eps)
//     q = (h·Wqᵀ + bq) · scale;  k = h·Wkᵀ + bk;  v = h·Wvᵀ + bv            H query heads, Hkv key/value heads of D
//     q, k = rope(q), rope(k)                                             rotary (LLaMA): halves-rotated form
//     K = concat(past_k, k), V = concat(past_v, v)                        → presents, [1, Hkv, P+T, D]
//     a = softmax(q·Kᵀ + causal) · V                                      query head j reads key/value head j / (H/Hkv)
//     x = x + a·Woᵀ + bo
//     x = x + down(act(up(norm(x))))  or  x + down(silu(gate(h)) · up(h)) with h = norm(x)
//   logits = norm(x)[logits_index] · lm_headᵀ                             lm_head = embed_tokens when tied
//
// Inputs:  input_ids int64 [1, T]; logits_index int64 [R] (which of the T rows get logits: all, or
//          just T-1 for a first token / decode step); the past (see `pastNames`).
// Outputs: logits float [1, R, V]; the presents (see `presentNames`), in the same order as the pasts.
//
// Variants (the bench times the ones asked for; README says which ran fastest, per family):
//   standard  opset-17 ops only, as an optimum export gives: Gather, Add, LayerNormalization or
//             RMSNorm as Pow→ReduceMean→Add→Sqrt→Div→Mul (ORT fuses it), MatMul (weights transposed
//             once here to (in, out), so ORT runs a plain MatMul on MLAS-prepacked weights; GPT-2's
//             Conv1D weights are (in, out) already), Mul, Reshape, Transpose, Concat, Softmax, Where
//             (the causal mask); Relu / tanh-GELU (Tanh, Pow…: ORT fuses it) / Sigmoid·x (SiLU).
//             Rotary: precomputed cos and ±sin tables [positions, D] gathered by position,
//             q·cos + concat(q₂, q₁)·(−sin, sin). Grouped-query attention without repeating K/V:
//             q [1, H, T, D] is viewed as [1, Hkv, (H/Hkv)·T, D] — the H/Hkv heads that share a
//             key/value head become rows of one MatMul against it — and the causal mask is tiled
//             H/Hkv times. Past/present per layer: past_key_values.{i}.key / .value and
//             present.{i}.key / .value, [1, Hkv, P, D].
//   fused     ORT's com.microsoft CPU contrib ops, as its transformers optimizer (OPT, GPT-2) or
//             onnxruntime-genai's model builder (LLaMA) emit them:
//             OPT, GPT-2: Attention (packed QKV projection, unidirectional, past/present
//               [2, 1, H, P, D] per layer: past.{i} / present.{i}), SkipLayerNormalization (residual
//               add + bias + LayerNorm in one op), GPT-2's gelu_new as FastGelu with its bias.
//             LLaMA: GroupQueryAttention on the packed QKV projection, with the rotary embedding
//               inside it (do_rotary, cos/sin caches [positions, D/2]) and past/present
//               [1, Hkv, P, D] (BNSH) as in `standard`; SimplifiedLayerNormalization and
//               SkipSimplifiedLayerNormalization (residual add + RMSNorm); gate and up projections
//               packed into one MatMul.
//   mixed     (LLaMA / Qwen2 only) `fused` without GroupQueryAttention: the contrib norms and packed
//             projections, com.microsoft RotaryEmbedding on q and k, and the attention itself with
//             the opset-17 ops of `standard` (grouped rows, no repeated K/V). Added because ORT Web's
//             CPU GroupQueryAttention is slow at prefill here (see bench/README.md).
// lmHead:  "gemm" — Gemm(h, table, transB = 1) on the (V, E) table itself (tied: the gather's own
//          table, one copy); "matmul" — MatMul with a pre-transposed copy (tied: a second copy).
// weights (what transformers.js users download besides the f32 file; built on `standard`, the graph
//          optimum exports and transformers.js' scripts/quantize.py quantizes; see ./onnx-quant.ts):
//   f32    as above
//   q8     quantize_dynamic's rewrite: every MatMul on a weight → DynamicQuantizeLinear (one per
//          input value, shared by q, k and v) → MatMulInteger on int8 weights, per tensor (or per
//          column) → Cast → Mul(x_scale · W_scale), then the bias Add; the embedding (and position)
//          Gathers on uint8 tables → DequantizeLinear; the lm_head a MatMulInteger on an int8 (E, V)
//          copy (Gemm is not quantized by quantize_dynamic, so the lm_head is MatMul here).
//   q4     MatMul4BitsQuantizer's rewrite: every MatMul on a weight, the lm_head included →
//          com.microsoft MatMulNBits, 4 bits, blocks of 32, symmetric (transformers.js' default; no
//          zero_points) or with packed uint8 zero_points; the embedding Gather stays f32.
import type { TensorSource } from "../src/formats/types.js";
import { attnScale, type Dims } from "../src/models/config.js";
import { familyOf, type ModelConfig } from "../src/models/families/index.js";
import { LM_HEAD, type Family, type GlobalField, type LayerField, type TensorRef } from "../src/models/family.js";
import { CheckpointNames } from "../src/models/weights.js";
import { numel } from "../src/formats/types.js";
import { DataType, OnnxGraph } from "./onnx.js";
import {
  dequantizeNBits4,
  dynamicQuantize,
  type GraphSink,
  nbitsMatMul,
  q8Gather,
  q8MatMul,
  Q4_BLOCK_SIZE,
  quantizeNBits4,
  quantizeWeightI8,
} from "./onnx-quant.js";

export type GraphVariant = "standard" | "fused" | "mixed";
export type GraphWeights = "f32" | "q8" | "q4";
export const GRAPH_WEIGHTS: readonly GraphWeights[] = ["f32", "q8", "q4"];
export type LmHeadVariant = "gemm" | "matmul";
export const GRAPH_VARIANTS: readonly GraphVariant[] = ["standard", "fused", "mixed"];

/** The variants a family's graph has ("mixed" exists for rotary families only). */
export const graphVariants = (d: Pick<Dims, "positions">): GraphVariant[] =>
  d.positions === "rope" ? ["standard", "fused", "mixed"] : ["standard", "fused"];

export interface DecoderOnnxOptions {
  variant?: GraphVariant;
  /** Ignored for q8 / q4 graphs, whose lm_head is the quantized MatMul. */
  lmHead?: LmHeadVariant;
  label?: string;
  /** f32 (default), q8 or q4 (standard variant only). */
  weights?: GraphWeights;
  /** q8: one scale per output column instead of per tensor (quantize_dynamic's per_channel). */
  q8PerChannel?: boolean;
  /** q4: symmetric (default, no zero_points) or asymmetric with packed zero_points. */
  q4Symmetric?: boolean;
  /** q4: MatMulNBits' accuracy_level attribute (default: absent, as transformers.js writes it). */
  q4AccuracyLevel?: number;
  /**
   * q4, for checks: plain f32 MatMuls on the q4-rounded (dequantized) weights instead of
   * MatMulNBits — the graph the q4 one must equal when it computes in f32.
   */
  q4Dequantized?: boolean;
}

/** How the exporter writes matrices (the options' quantization part). */
interface Quant {
  weights: GraphWeights;
  q8PerChannel: boolean;
  q4Symmetric: boolean;
  q4AccuracyLevel?: number;
  q4Dequantized: boolean;
}

export interface DecoderOnnx {
  bytes: Uint8Array;
  variant: GraphVariant;
  lmHead: LmHeadVariant;
  weights: GraphWeights;
  /** Past inputs and present outputs, in matching order. */
  pastNames: string[];
  presentNames: string[];
  /** The dims of every past input for a past of P positions. */
  pastDims(P: number): number[];
  /** Operator counts, e.g. "MatMul×72, Attention×12, …" (what the graph is made of). */
  ops: string;
}

/** float32's most negative value: what transformers fills masked attention scores with. */
const MASK_MIN = -3.4028234663852886e38;
const MS = "com.microsoft";

export function exportDecoderOnnx(config: ModelConfig, source: TensorSource, o: DecoderOnnxOptions = {}): DecoderOnnx {
  const variant = o.variant ?? "standard";
  const weights = o.weights ?? "f32";
  const lmHead = weights === "f32" ? (o.lmHead ?? "gemm") : "matmul";
  const label = o.label ?? "checkpoint";
  const family = familyOf(config);
  const d = family.dims(config);
  const unsupported = [
    !d.preNorm && "post-norm (OPT's do_layer_norm_before = false)",
    !d.finalNorm && "no final norm",
    d.project && "word_embed_proj_dim ≠ hidden_size (project_in/out)",
    !d.normAffine && "norms without weights",
    d.H * d.D !== d.C && "H · head_dim ≠ hidden_size",
  ].filter(Boolean);
  if (unsupported.length) throw new Error(`decoder-onnx: ${label}: the exporter does not cover ${unsupported.join(", ")}`);

  if (!graphVariants(d).includes(variant)) {
    throw new Error(`decoder-onnx: graph variant '${variant}' does not exist for ${d.family} (${graphVariants(d).join(", ")})`);
  }
  if (weights !== "f32" && variant !== "standard") {
    throw new Error(`decoder-onnx: ${weights} graphs are built on the standard variant (asked: ${variant})`);
  }
  const g = new OnnxGraph(`${d.family}_${variant}${weights === "f32" ? "" : `_${weights}`}`);
  if (variant !== "standard" || weights === "q4") g.useOpset(MS, 1);
  const quant: Quant = {
    weights,
    q8PerChannel: o.q8PerChannel ?? false,
    q4Symmetric: o.q4Symmetric ?? true,
    q4AccuracyLevel: o.q4AccuracyLevel,
    q4Dequantized: o.q4Dequantized ?? false,
  };
  const ex = new Exporter(g, d, new Weights(source, family, d, label), quant);
  const io = ex.graph(variant, lmHead);
  const counts = new Map<string, number>();
  for (const op of ex.ops) counts.set(op, (counts.get(op) ?? 0) + 1);
  return {
    bytes: g.toBytes(),
    variant,
    lmHead,
    weights,
    ...io,
    ops: [...counts].map(([op, n]) => `${op}×${n}`).join(", "),
  };
}

/**
 * The model's weights as f32 arrays in the layouts the graph wants, read through the family's refs:
 * matrices as (in, out) for MatMul (a GPT-2 Conv1D field: its columns of the (in, width) tensor).
 */
class Weights {
  private names: CheckpointNames;
  private globals: Map<GlobalField, TensorRef<GlobalField>>;
  private layerRefs: { i: number; refs: Map<LayerField, TensorRef<LayerField>> } | null = null;
  /** The current layer's Conv1D tensors, read whole once (c_attn holds q, k and v). */
  private whole = new Map<string, Float32Array>();

  constructor(
    private src: TensorSource,
    private family: Family,
    private d: Dims,
    label: string,
  ) {
    this.names = new CheckpointNames(src, family, d, label);
    this.globals = new Map(family.globals(d).map((r) => [r.field, r]));
  }

  private read(full: string, shape: number[]): Float32Array {
    const a = new Float32Array(numel(shape));
    this.src.readF32(full, a);
    return a;
  }

  private ref(i: number, field: LayerField): TensorRef<LayerField> | undefined {
    if (this.layerRefs?.i !== i) {
      this.layerRefs = { i, refs: new Map(this.family.layer(this.d, i).map((r) => [r.field, r])) };
      this.whole.clear();
    }
    return this.layerRefs.refs.get(field);
  }

  private wholeOf(r: TensorRef<string>): Float32Array {
    const full = this.names.full(r.name);
    let t = this.whole.get(full);
    if (!t) this.whole.set(full, (t = this.read(full, r.shape)));
    return t;
  }

  /** The checkpoint's name of a layer field (to name initializers after it). */
  name(i: number, field: LayerField): string {
    return this.names.full(this.ref(i, field)!.name);
  }

  has(i: number, field: LayerField): boolean {
    return this.ref(i, field) !== undefined;
  }

  /** A layer vector (bias, norm weight), or null when the family has none. */
  vector(i: number, field: LayerField): Float32Array | null {
    const r = this.ref(i, field);
    if (!r) return null;
    if (!r.conv) return this.read(this.names.full(r.name), r.shape);
    return this.wholeOf(r).slice(r.conv.col, r.conv.col + r.conv.n);
  }

  /** A layer matrix as (in, out): [K, N] for the field's (N, K). */
  matT(i: number, field: LayerField): { w: Float32Array; K: number; N: number } {
    const r = this.ref(i, field);
    if (!r) throw new Error(`decoder-onnx: layer ${i} has no ${field}`);
    if (r.conv) {
      const [K, width] = r.shape;
      const { col, n: N } = r.conv;
      const t = this.wholeOf(r);
      const w = new Float32Array(K * N);
      for (let k = 0; k < K; k++) w.set(t.subarray(k * width + col, k * width + col + N), k * N);
      return { w, K, N };
    }
    const [N, K] = r.shape;
    return { w: transpose(this.read(this.names.full(r.name), r.shape), N, K), K, N };
  }

  /** A layer matrix as stored for a Linear: (N, K) = (out, in). */
  mat(i: number, field: LayerField): { w: Float32Array; K: number; N: number } {
    const r = this.ref(i, field);
    if (!r) throw new Error(`decoder-onnx: layer ${i} has no ${field}`);
    if (r.conv) {
      const { w, K, N } = this.matT(i, field);
      return { w: transpose(w, K, N), K, N };
    }
    const [N, K] = r.shape;
    return { w: this.read(this.names.full(r.name), r.shape), K, N };
  }

  /** A global tensor (as stored), by field. */
  global(field: GlobalField): { name: string; data: Float32Array; shape: number[] } {
    const r = this.globals.get(field);
    if (!r) throw new Error(`decoder-onnx: this ${this.family.name} model has no ${field}`);
    const name = this.names.full(r.name);
    return { name, data: this.read(name, r.shape), shape: r.shape };
  }

  /** The untied lm_head (V, E). */
  lmHead(): Float32Array {
    return this.read(LM_HEAD, [this.d.V, this.d.E]);
  }
}

class Exporter {
  readonly ops: string[] = [];
  private n = 0;
  private readonly shared = new Map<string, string>();

  /** q8: each value's DynamicQuantizeLinear outputs, made once however many MatMuls read it. */
  private readonly quantized = new Map<string, [string, string, string]>();
  /** ./onnx-quant.ts writes its node patterns through this. */
  private readonly sink: GraphSink = {
    node: (op, inputs, attrs = {}, nOut = 1, domain = "") => this.node(op, inputs, attrs, nOut, domain),
    init: (name, data, dims, dataType) => {
      this.g.addInitializer(name, data, dims, dataType);
      return name;
    },
  };

  constructor(
    private g: OnnxGraph,
    private d: Dims,
    private w: Weights,
    private quant: Quant,
  ) {}

  /** A fresh value name. */
  private v(hint: string): string {
    return `${hint}_${this.n++}`;
  }

  private node(op: string, inputs: string[], attrs: Record<string, unknown> = {}, nOut = 1, domain = ""): string[] {
    const outs = Array.from({ length: nOut }, () => this.v(op.toLowerCase()));
    this.g.addNode(op, inputs, outs, attrs as never, domain ? { domain } : {});
    this.ops.push(op);
    return outs;
  }
  private op(op: string, inputs: string[], attrs: Record<string, unknown> = {}, domain = ""): string {
    return this.node(op, inputs, attrs, 1, domain)[0];
  }
  /** A node writing to the given (graph output) names. */
  private named(op: string, inputs: string[], outputs: string[], attrs: Record<string, unknown> = {}, domain = ""): void {
    this.g.addNode(op, inputs, outputs, attrs as never, domain ? { domain } : {});
    this.ops.push(op);
  }

  private f32(name: string, data: Float32Array, dims: number[]): string {
    this.g.addInitializer(name, data, dims);
    return name;
  }
  /** A constant made once per graph, whatever the number of layers asking for it. */
  private constant(name: string, make: () => void): string {
    if (!this.shared.has(name)) {
      make();
      this.shared.set(name, name);
    }
    return name;
  }
  private i64(name: string, values: number[]): string {
    return this.constant(name, () => this.g.addInitializer(name, BigInt64Array.from(values.map(BigInt)), [values.length]));
  }
  private scalarI64(name: string, v: number): string {
    return this.constant(name, () => this.g.addInitializer(name, BigInt64Array.of(BigInt(v)), []));
  }
  private scalarF32(name: string, v: number): string {
    return this.constant(name, () => this.g.addInitializer(name, Float32Array.of(v), []));
  }

  /** A layer vector as an initializer named after its checkpoint tensor, or "" when absent. */
  private vec(i: number, field: LayerField): string {
    const a = this.w.vector(i, field);
    return a ? this.f32(`${this.w.name(i, field)}:${field}`, a, [a.length]) : "";
  }

  /** x·W (W as (in, out)), without the bias: MatMul, or its q8 / q4 rewrite. */
  private matmul(x: string, i: number, field: LayerField): string {
    const name = `${this.w.name(i, field)}:${field}`;
    if (this.quant.weights === "q4") {
      const { w, K, N } = this.w.mat(i, field);
      return this.nbits(x, name, w, N, K);
    }
    const { w, K, N } = this.w.matT(i, field);
    if (this.quant.weights === "q8") return this.q8(x, name, w, K, N);
    return this.op("MatMul", [x, this.f32(`${name}.T`, w, [K, N])]);
  }

  /** The q8 rewrite of x·W for W (K, N). */
  private q8(x: string, name: string, wT: Float32Array, K: number, N: number): string {
    let xq = this.quantized.get(x);
    if (!xq) this.quantized.set(x, (xq = dynamicQuantize(this.sink, x)));
    return q8MatMul(this.sink, xq, `${name}.T`, quantizeWeightI8(wT, K, N, this.quant.q8PerChannel));
  }

  /** The q4 rewrite of x·Wᵀ for W (N, K). */
  private nbits(x: string, name: string, w: Float32Array, N: number, K: number): string {
    const m = quantizeNBits4(w, N, K, this.quant.q4Symmetric, Q4_BLOCK_SIZE);
    if (this.quant.q4Dequantized) return this.op("MatMul", [x, this.f32(`${name}.q4.T`, transpose(dequantizeNBits4(m), N, K), [K, N])]);
    return nbitsMatMul(this.sink, x, name, m, this.quant.q4AccuracyLevel);
  }

  /** y = x·Wᵀ + b for a layer field (the bias field when the family has it). */
  private linear(x: string, i: number, field: LayerField, bias: LayerField): string {
    const y = this.matmul(x, i, field);
    const b = this.vec(i, bias);
    return b ? this.op("Add", [y, b]) : y;
  }

  /**
   * The fields' (in, out) matrices side by side as one initializer (one MatMul for several
   * projections of one input), and their biases likewise ("" when the family has none).
   */
  private packedInit(i: number, fields: LayerField[], biases: LayerField[]): { w: string; bias: string; K: number; N: number } {
    const mats = fields.map((f) => this.w.matT(i, f));
    const K = mats[0].K;
    const N = mats.reduce((a, m) => a + m.N, 0);
    const wp = new Float32Array(K * N);
    let col = 0;
    for (const m of mats) {
      for (let k = 0; k < K; k++) wp.set(m.w.subarray(k * m.N, (k + 1) * m.N), k * N + col);
      col += m.N;
    }
    const w = this.f32(`layers.${i}.${fields.join("|")}.T`, wp, [K, N]);
    let bias = "";
    if (biases.some((b) => this.w.has(i, b))) {
      const b = new Float32Array(N);
      let at = 0;
      biases.forEach((f, j) => {
        const v = this.w.vector(i, f);
        if (v) b.set(v, at);
        at += mats[j].N;
      });
      bias = this.f32(`layers.${i}.${biases.join("|")}`, b, [N]);
    }
    return { w, bias, K, N };
  }

  /** x·[W₁ | W₂ | …] + [b₁ | b₂ | …]. */
  private packed(x: string, i: number, fields: LayerField[], biases: LayerField[]): string {
    const p = this.packedInit(i, fields, biases);
    const y = this.op("MatMul", [x, p.w]);
    return p.bias ? this.op("Add", [y, p.bias]) : y;
  }

  /** The family's norm with opset-17 ops (RMSNorm as the pattern ORT fuses into SimplifiedLayerNormalization). */
  private norm(x: string, wName: string, w: Float32Array, bName: string, b: Float32Array | null): string {
    const { C, normEps } = this.d;
    const wi = this.f32(wName, w, [C]);
    if (this.d.norm === "layer") {
      return this.op("LayerNormalization", [x, wi, this.f32(bName, b!, [C])], { axis: -1, epsilon: normEps });
    }
    const ms = this.op("ReduceMean", [this.op("Pow", [x, this.scalarF32("two", 2)])], { axes: [-1], keepdims: 1 });
    const rms = this.op("Sqrt", [this.op("Add", [ms, this.scalarF32("norm_eps", normEps)])]);
    return this.op("Mul", [this.op("Div", [x, rms]), wi]);
  }
  private layerNorm(x: string, i: number, which: "attn" | "mlp"): string {
    const [wf, bf]: LayerField[] = which === "attn" ? ["attnNormW", "attnNormB"] : ["mlpNormW", "mlpNormB"];
    return this.norm(
      x,
      `${this.w.name(i, wf)}:${wf}`,
      this.w.vector(i, wf)!,
      this.w.has(i, bf) ? `${this.w.name(i, bf)}:${bf}` : "",
      this.w.vector(i, bf),
    );
  }
  private finalNorm(x: string): string {
    const wt = this.w.global("finalNormW");
    const bt = this.d.norm === "layer" ? this.w.global("finalNormB") : null;
    return this.norm(x, wt.name, wt.data, bt?.name ?? "", bt?.data ?? null);
  }

  /** The activation of a plain MLP with opset-17 ops (ORT fuses the tanh-GELU pattern into FastGelu). */
  private activation(x: string): string {
    const f = (v: number) => this.scalarF32(`c${v}`, v);
    switch (this.d.activation) {
      case "relu":
        return this.op("Relu", [x]);
      case "silu":
        return this.op("Mul", [x, this.op("Sigmoid", [x])]);
      case "gelu": {
        // 0.5·x·(1 + erf(x/√2))
        const e = this.op("Erf", [this.op("Div", [x, f(Math.SQRT2)])]);
        return this.op("Mul", [this.op("Mul", [x, f(0.5)]), this.op("Add", [e, f(1)])]);
      }
      case "gelu_tanh": {
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        const x3 = this.op("Mul", [this.op("Pow", [x, f(3)]), f(0.044715)]);
        const t = this.op("Tanh", [this.op("Mul", [this.op("Add", [x, x3]), f(Math.sqrt(2 / Math.PI))])]);
        return this.op("Mul", [this.op("Mul", [x, f(0.5)]), this.op("Add", [t, f(1)])]);
      }
    }
  }

  /**
   * Rotary tables as the model computes them (decoder.ts rotaryTable, transformers' LLaMA): angle =
   * f32(f32(position / factor) · inv_freq_i), inv_freq_i = f32(1 / f32(θ^(2i/D))); cos and sin in f32.
   */
  private ropeTables(): { cos: Float32Array; sin: Float32Array; rows: number } {
    const { D, ropeTheta, ropeFactor, maxPositions } = this.d;
    const half = D / 2;
    const inv = new Float32Array(half);
    for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.fround(Math.pow(ropeTheta, Math.fround((2 * i) / D))));
    const cos = new Float32Array(maxPositions * half);
    const sin = new Float32Array(maxPositions * half);
    for (let p = 0; p < maxPositions; p++) {
      const t = Math.fround(p / ropeFactor);
      for (let i = 0; i < half; i++) {
        const a = Math.fround(t * inv[i]);
        cos[p * half + i] = Math.cos(a);
        sin[p * half + i] = Math.sin(a);
      }
    }
    return { cos, sin, rows: maxPositions };
  }

  graph(variant: GraphVariant, lmHead: LmHeadVariant): Pick<DecoderOnnx, "pastNames" | "presentNames" | "pastDims"> {
    const { g, d } = this;
    const { V, E, H, Hkv, D, L } = d;
    // OPT / GPT-2's fused graph keeps keys and values together, [2, 1, H, P, D] (ORT's Attention).
    const packedPast = variant === "fused" && d.positions === "learned";
    g.addInput("input_ids", DataType.INT64, [1, "T"]);
    g.addInput("logits_index", DataType.INT64, ["R"]);
    const pastNames: string[] = [];
    const presentNames: string[] = [];
    for (let i = 0; i < L; i++) {
      if (packedPast) {
        pastNames.push(`past.${i}`);
        presentNames.push(`present.${i}`);
        g.addInput(`past.${i}`, DataType.FLOAT, [2, 1, H, "P", D]);
      } else {
        for (const kv of ["key", "value"]) {
          pastNames.push(`past_key_values.${i}.${kv}`);
          presentNames.push(`present.${i}.${kv}`);
          g.addInput(`past_key_values.${i}.${kv}`, DataType.FLOAT, [1, Hkv, "P", D]);
        }
      }
    }

    // Lengths: T new tokens after P cached ones; positions P … P+T-1.
    const T1 = this.op("Shape", ["input_ids"], { start: 1, end: 2 });
    const P1 = this.op("Shape", [pastNames[0]], packedPast ? { start: 3, end: 4 } : { start: 2, end: 3 });
    const S1 = this.op("Add", [P1, T1]);
    const axis0 = this.i64("axis0", [0]);
    const Ps = this.op("Squeeze", [P1, axis0]);
    const Ss = this.op("Squeeze", [S1, axis0]);
    const one = this.scalarI64("one", 1);
    const pos = this.op("Range", [Ps, Ss, one]); // [T]

    // Embeddings.
    // q8: Gathers on uint8 tables, then DequantizeLinear (GatherQuant); f32 and q4: on the f32 tables.
    const q8 = this.quant.weights === "q8";
    const gather = (name: string, data: Float32Array, dims: number[], ids: string) =>
      q8 ? q8Gather(this.sink, name, data, dims, ids) : this.op("Gather", [this.f32(name, data, dims), ids], { axis: 0 });
    const emb = this.w.global("embedTokens");
    const tok = gather(emb.name, emb.data, [V, E], "input_ids"); // [1, T, C]
    let posEmb = "";
    if (d.positions === "learned") {
      const pt = this.w.global("embedPositions");
      const posIds = d.positionOffset ? this.op("Add", [pos, this.scalarI64("position_offset", d.positionOffset)]) : pos;
      posEmb = this.op("Unsqueeze", [gather(pt.name, pt.data, pt.shape, posIds), axis0]); // [1, T, C]
    }

    const xf =
      variant === "standard"
        ? this.standardLayers(tok, posEmb, pos, Ss, pastNames, presentNames)
        : d.positions === "learned"
          ? this.fusedLearnedLayers(tok, posEmb, pastNames, presentNames)
          : this.fusedRotaryLayers(tok, pos, S1, Ss, variant === "fused", pastNames, presentNames);

    // lm_head on the chosen rows only.
    const rowsF = this.op("Gather", [xf, "logits_index"], { axis: 1 }); // [1, R, C]
    const headW = () => (d.tied ? emb.data : this.w.lmHead()); // (V, E)
    if (this.quant.weights !== "f32") {
      const y =
        this.quant.weights === "q4"
          ? this.nbits(rowsF, "lm_head.weight", headW(), V, E)
          : this.q8(rowsF, "lm_head.weight", transpose(headW(), V, E), E, V);
      this.named("Identity", [y], ["logits"]);
    } else if (lmHead === "gemm") {
      // The Gather's own table when tied (one copy).
      const table = d.tied ? emb.name : this.f32(LM_HEAD, this.w.lmHead(), [V, E]);
      const flat = this.op("Reshape", [rowsF, this.i64("rows_shape", [-1, E])]);
      const y = this.op("Gemm", [flat, table], { transB: 1 });
      this.named("Reshape", [y, this.i64("logits_shape", [1, -1, V])], ["logits"]);
    } else {
      this.named("MatMul", [rowsF, this.f32("lm_head.weight.T", transpose(headW(), V, E), [E, V])], ["logits"]);
    }
    g.addOutput("logits", DataType.FLOAT, [1, "R", V]);
    for (const name of presentNames) g.addOutput(name, DataType.FLOAT, packedPast ? [2, 1, H, "S", D] : [1, Hkv, "S", D]);
    return {
      pastNames,
      presentNames,
      pastDims: (P: number) => (packedPast ? [2, 1, H, P, D] : [1, Hkv, P, D]),
    };
  }

  /**
   * Attention with opset-17 ops, shared by every layer: the causal mask (tiled for grouped-query
   * attention) and the rotary rows are computed once per run. `rope` (when true) rotates q and k
   * here with gathered cos/±sin tables; "none" leaves them as given (already rotated elsewhere).
   */
  private opsAttention(pos: string, Ss: string, rope: boolean) {
    const { d } = this;
    const { C, H, Hkv, D } = d;
    const G = H / Hkv;
    const one = this.scalarI64("one", 1);
    // Causal mask [T, S]: key s is hidden from query t (at position P + t) when s > P + t.
    const cols = this.op("Range", [this.scalarI64("zero", 0), Ss, one]); // [S]
    const rows = this.op("Unsqueeze", [pos, this.i64("axis1", [1])]); // [T, 1]
    const hidden = this.op("Greater", [cols, rows]); // [T, S]
    let mask = this.op("Where", [hidden, this.scalarF32("mask_min", MASK_MIN), this.scalarF32("mask_zero", 0)]);
    // Grouped-query attention: the G query heads of a key/value head are G·T rows against it.
    if (G > 1) mask = this.op("Tile", [mask, this.i64("mask_tiles", [G, 1])]); // [G·T, S]
    const hiddenShape = this.i64("hidden_shape", [1, -1, C]);
    const heads = (y: string, n: number) =>
      this.op("Transpose", [this.op("Reshape", [y, this.i64(`heads_shape_${n}`, [1, -1, n, D])])], { perm: [0, 2, 1, 3] });

    // Rotary: q·cos + concat(q₂, q₁)·(−sin, sin), the tables' rows gathered once per run.
    let rotate = (x: string) => x;
    if (rope) {
      const { cos, sin, rows: R } = this.ropeTables();
      const half = D / 2;
      const cosFull = new Float32Array(R * D);
      const sinSigned = new Float32Array(R * D);
      for (let p = 0; p < R; p++) {
        for (let i = 0; i < half; i++) {
          cosFull[p * D + i] = cosFull[p * D + half + i] = cos[p * half + i];
          sinSigned[p * D + i] = -sin[p * half + i];
          sinSigned[p * D + half + i] = sin[p * half + i];
        }
      }
      const cosT = this.op("Gather", [this.f32("rope_cos", cosFull, [R, D]), pos], { axis: 0 }); // [T, D]
      const sinT = this.op("Gather", [this.f32("rope_sin_signed", sinSigned, [R, D]), pos], { axis: 0 });
      const halves = this.i64("rope_halves", [half, half]);
      rotate = (x) => {
        const [x1, x2] = this.node("Split", [x, halves], { axis: -1 }, 2);
        const swapped = this.op("Concat", [x2, x1], { axis: -1 });
        return this.op("Add", [this.op("Mul", [x, cosT]), this.op("Mul", [swapped, sinT])]);
      };
    }

    /** softmax(q·Kᵀ + causal)·V for layer i from q [1, T, H·D] (scaled), k and v [1, T, Hkv·D]; → [1, T, C]. */
    return (i: number, q: string, k: string, v: string, pastNames: string[], presentNames: string[]): string => {
      const qh = rotate(heads(q, H)); // [1, H, T, D]
      const kh = rotate(heads(k, Hkv)); // [1, Hkv, T, D]
      const vh = heads(v, Hkv);
      this.named("Concat", [pastNames[2 * i], kh], [presentNames[2 * i]], { axis: 2 });
      this.named("Concat", [pastNames[2 * i + 1], vh], [presentNames[2 * i + 1]], { axis: 2 });
      const kT = this.op("Transpose", [presentNames[2 * i]], { perm: [0, 1, 3, 2] }); // [1, Hkv, D, S]
      const qg = G > 1 ? this.op("Reshape", [qh, this.i64("group_shape", [1, Hkv, -1, D])]) : qh; // [1, Hkv, G·T, D]
      const scores = this.op("Add", [this.op("MatMul", [qg, kT]), mask]);
      const probs = this.op("Softmax", [scores], { axis: -1 });
      let ctx = this.op("MatMul", [probs, presentNames[2 * i + 1]]); // [1, Hkv, G·T, D]
      if (G > 1) ctx = this.op("Reshape", [ctx, this.i64("query_heads_shape", [1, H, -1, D])]);
      return this.op("Reshape", [this.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }), hiddenShape]);
    };
  }

  /** q scaled by layer i's attention scale (a Mul unless the scale is 1). */
  private scaled(q: string, i: number): string {
    const scale = attnScale(this.d, i);
    return scale === 1 ? q : this.op("Mul", [q, this.scalarF32(`scaling_${scale}`, scale)]);
  }

  /** Every layer and the final norm with opset-17 ops; returns the final norm's output [1, T, C]. */
  private standardLayers(tok: string, posEmb: string, pos: string, Ss: string, pastNames: string[], presentNames: string[]): string {
    const { d } = this;
    const attention = this.opsAttention(pos, Ss, d.positions === "rope");
    let x = posEmb ? this.op("Add", [tok, posEmb]) : tok;
    for (let i = 0; i < d.L; i++) {
      const h = this.layerNorm(x, i, "attn");
      const q = this.scaled(this.linear(h, i, "q", "qB"), i);
      const merged = attention(i, q, this.linear(h, i, "k", "kB"), this.linear(h, i, "v", "vB"), pastNames, presentNames);
      x = this.op("Add", [x, this.linear(merged, i, "o", "oB")]);
      const f = this.layerNorm(x, i, "mlp");
      let a: string;
      if (d.mlp === "gated") {
        const gate = this.linear(f, i, "gate", "gateB");
        a = this.op("Mul", [this.op("Mul", [gate, this.op("Sigmoid", [gate])]), this.linear(f, i, "up", "upB")]);
      } else {
        a = this.activation(this.linear(f, i, "up", "upB"));
      }
      x = this.op("Add", [x, this.linear(a, i, "down", "downB")]);
    }
    return this.finalNorm(x);
  }

  /**
   * OPT / GPT-2 with ORT's contrib ops: Attention on packed QKV with [2, 1, H, P, D] past/present,
   * SkipLayerNormalization fusing each residual add (and the bias before it) with the next LayerNorm.
   */
  private fusedLearnedLayers(tok: string, posEmb: string, pastNames: string[], presentNames: string[]): string {
    const { d } = this;
    const { H, L } = d;
    const norm = (i: number | null, which: "attn" | "mlp"): string[] => {
      if (i === null) {
        const w = this.w.global("finalNormW");
        const b = this.w.global("finalNormB");
        return [this.f32(w.name, w.data, w.shape), this.f32(b.name, b.data, b.shape)];
      }
      const [wf, bf]: LayerField[] = which === "attn" ? ["attnNormW", "attnNormB"] : ["mlpNormW", "mlpNormB"];
      return [this.vec(i, wf), this.vec(i, bf)];
    };
    // SkipLayerNormalization(input, skip, gamma, beta, bias) → [LN(input + skip + bias), mean, inv_std, input + skip + bias].
    const skipLn = (input: string, skip: string, gammaBeta: string[], bias: string): [string, string] => {
      const inputs = [input, skip, ...gammaBeta];
      if (bias) inputs.push(bias);
      const [y, , , sum] = this.node("SkipLayerNormalization", inputs, { epsilon: d.normEps }, 4, MS);
      return [y, sum];
    };
    let [h, x] = skipLn(tok, posEmb, norm(0, "attn"), "");
    for (let i = 0; i < L; i++) {
      // Packed QKV: weights (C, 3C) = [Wqᵀ | Wkᵀ | Wvᵀ] (GPT-2's c_attn as stored), bias (3C), zeros when absent.
      const qkv = this.packedInit(i, ["q", "k", "v"], ["qB", "kB", "vB"]);
      const bias = qkv.bias || this.f32(`layers.${i}.qkv.zero_bias`, new Float32Array(qkv.N), [qkv.N]);
      const scale = attnScale(d, i);
      const attrs: Record<string, unknown> = { num_heads: H, unidirectional: 1 };
      if (Math.abs(scale - 1 / Math.sqrt(d.D)) > 1e-12) attrs.scale = scale;
      const att = this.v("attention");
      this.named("Attention", [h, qkv.w, bias, "", pastNames[i]], [att, presentNames[i]], attrs, MS);
      const o = this.matmul(att, i, "o");
      const [f, x2] = skipLn(o, x, norm(i, "mlp"), this.vec(i, "oB"));
      let a: string;
      if (d.activation === "gelu_tanh" || d.activation === "gelu") {
        // FastGelu(x, bias) = tanh-GELU(x + bias); BiasGelu(x, bias) = erf-GELU(x + bias).
        const up = this.matmul(f, i, "up");
        const ub = this.vec(i, "upB");
        a =
          d.activation === "gelu_tanh"
            ? this.op("FastGelu", ub ? [up, ub] : [up], {}, MS)
            : ub
              ? this.op("BiasGelu", [up, ub], {}, MS)
              : this.op("Gelu", [up], {}, MS);
      } else {
        a = this.activation(this.linear(f, i, "up", "upB"));
      }
      const y = this.matmul(a, i, "down");
      [h, x] = skipLn(y, x2, i + 1 < L ? norm(i + 1, "attn") : norm(null, "attn"), this.vec(i, "downB"));
    }
    return h;
  }

  /**
   * LLaMA / Qwen2 with ORT's contrib ops, as onnxruntime-genai's builder emits them:
   * GroupQueryAttention (packed QKV, rotary inside, BNSH past/present), SimplifiedLayerNormalization
   * and SkipSimplifiedLayerNormalization, gate|up in one MatMul.
   */
  private fusedRotaryLayers(
    tok: string,
    pos: string,
    S1: string,
    Ss: string,
    gqa: boolean,
    pastNames: string[],
    presentNames: string[],
  ): string {
    const { d } = this;
    const { C, H, Hkv, D, F, KV, L, normEps } = d;
    const { cos, sin, rows } = this.ropeTables();
    const cosCache = this.f32("rope_cos_cache", cos, [rows, D / 2]);
    const sinCache = this.f32("rope_sin_cache", sin, [rows, D / 2]);
    const gamma = (i: number | null, which: "attn" | "mlp") => {
      if (i === null) {
        const w = this.w.global("finalNormW");
        return this.f32(w.name, w.data, w.shape);
      }
      return this.vec(i, which === "attn" ? "attnNormW" : "mlpNormW");
    };
    // SkipSimplifiedLayerNormalization(input, skip, gamma, bias) → [RMSNorm(input + skip + bias), mean, inv_std, input + skip + bias].
    const skipRms = (input: string, skip: string, w: string, bias: string): [string, string] => {
      const inputs = [input, skip, w];
      if (bias) inputs.push(bias);
      const [y, , , sum] = this.node("SkipSimplifiedLayerNormalization", inputs, { epsilon: normEps }, 4, MS);
      return [y, sum];
    };
    let attention: (i: number, qkv: string) => string;
    if (gqa) {
      // GroupQueryAttention's lengths: seqlens_k = S − 1 per sequence (int32 [1]), total length S (int32 scalar).
      const seqlensK = this.op("Cast", [this.op("Sub", [S1, this.i64("one_1d", [1])])], { to: DataType.INT32 });
      const total = this.op("Cast", [this.op("Squeeze", [S1, this.i64("axis0", [0])])], { to: DataType.INT32 });
      attention = (i, qkv) => {
        const att = this.v("gqa");
        this.named(
          "GroupQueryAttention",
          [qkv, "", "", pastNames[2 * i], pastNames[2 * i + 1], seqlensK, total, cosCache, sinCache],
          [att, presentNames[2 * i], presentNames[2 * i + 1]],
          { num_heads: H, kv_num_heads: Hkv, scale: attnScale(d, i), do_rotary: 1, rotary_interleaved: 0 },
          MS,
        );
        return att;
      };
    } else {
      // RotaryEmbedding on the [1, T, n·D] projections (position ids [1, T]), then attention with opset-17 ops.
      const ops = this.opsAttention(pos, Ss, false);
      const posIds = this.op("Unsqueeze", [pos, this.i64("axis0", [0])]);
      const split = this.i64("qkv_split", [C, KV, KV]);
      const rope = (x: string, n: number) =>
        this.op("RotaryEmbedding", [x, posIds, cosCache, sinCache], { num_heads: n, interleaved: 0 }, MS);
      attention = (i, qkv) => {
        const [q, k, v] = this.node("Split", [qkv, split], { axis: -1 }, 3);
        return ops(i, this.scaled(rope(q, H), i), rope(k, Hkv), v, pastNames, presentNames);
      };
    }
    let x = tok;
    let h = this.op("SimplifiedLayerNormalization", [tok, gamma(0, "attn")], { axis: -1, epsilon: normEps });
    for (let i = 0; i < L; i++) {
      const att = attention(i, this.packed(h, i, ["q", "k", "v"], ["qB", "kB", "vB"]));
      const o = this.matmul(att, i, "o");
      const [f, x2] = skipRms(o, x, gamma(i, "mlp"), this.vec(i, "oB"));
      const gu = this.packed(f, i, ["gate", "up"], ["gateB", "upB"]);
      const [gate, up] = this.node("Split", [gu, this.i64("mlp_halves", [F, F])], { axis: -1 }, 2);
      const a = this.op("Mul", [this.op("Mul", [gate, this.op("Sigmoid", [gate])]), up]);
      const y = this.matmul(a, i, "down");
      [h, x] = skipRms(y, x2, i + 1 < L ? gamma(i + 1, "attn") : gamma(null, "attn"), this.vec(i, "downB"));
    }
    return h;
  }
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) t[c * rows + r] = a[row + c];
  }
  return t;
}
