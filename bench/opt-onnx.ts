// OPT as an ONNX graph, built from a TensorSource with ./onnx.ts: the peer's model in `npm run bench`.
//
// One graph serves prefill and decode, as optimum's merged decoders do for transformers.js: it takes
// the new tokens and every layer's past keys/values (an empty past, P = 0, for a prefill) and returns
// the logits of the chosen rows and the presents (past + new). Computed as transformers'
// modeling_opt.py computes OPTForCausalLM (pre-LN OPT, batch 1, no padding):
//
//   x   = embed_tokens[input_ids] + embed_positions[P + t + 2]            t = 0 … T-1
//   per layer:
//     h = LayerNorm(x)                                                     eps 1e-5
//     q = (h·Wqᵀ + bq) · head_dim^-0.5;  k = h·Wkᵀ + bk;  v = h·Wvᵀ + bv   12 heads of 64
//     K = concat(past_k, k), V = concat(past_v, v)                         → presents
//     a = softmax(q·Kᵀ + causal) · V                                       key s visible to query t iff s ≤ P + t
//     x = x + a·Woᵀ + bo
//     x = x + relu(LayerNorm(x)·W1ᵀ + b1)·W2ᵀ + b2
//   logits = LayerNorm(x)[logits_index] · embed_tokensᵀ                   tied lm_head
//
// Inputs:  input_ids int64 [1, T]; logits_index int64 [R] (which of the T rows get logits: all, or
//          just T-1 for a first token / decode step); the past (see `pastNames`).
// Outputs: logits float [1, R, V]; the presents (see `presentNames`), in the same order as the pasts.
//
// Variants (the bench times the one given; README says which ran fastest):
//   standard  opset-17 ops only: Gather, Add, LayerNormalization, MatMul (weights pre-transposed
//             once here to (in, out), so ORT runs a plain MatMul on MLAS-prepacked weights), Mul,
//             Reshape, Transpose, Concat, Softmax, Where (the causal mask), Relu. Past/present per
//             layer: past_key_values.{i}.key / .value and present.{i}.key / .value, [1, 12, P, 64].
//   fused     ORT's com.microsoft CPU contrib ops, as ORT's transformers optimizer emits for GPT-style
//             decoders: Attention (packed QKV projection, unidirectional, past/present [2, 1, 12, P, 64]
//             per layer: past.{i} / present.{i}) and SkipLayerNormalization (residual add + bias +
//             LayerNorm in one op). Attention's default scale is 1/√head_dim, OPT's scaling.
// lmHead:  "gemm" — Gemm(h, embed_tokens, transB = 1) on the gather table itself (one copy of the
//          154 MB matrix); "matmul" — MatMul with a pre-transposed copy (a second 154 MB initializer).
import { LAYER_NORM_EPS, optDims, POSITION_OFFSET, type OptConfig, type OptDims } from "../src/models/opt/config.js";
import { CheckpointNames, numelOf } from "../src/models/opt/weights.js";
import type { TensorSource } from "../src/formats/types.js";
import { DataType, OnnxGraph } from "./onnx.js";

export type OptOnnxVariant = "standard" | "fused";
export type LmHeadVariant = "gemm" | "matmul";
export const OPT_ONNX_VARIANTS: readonly OptOnnxVariant[] = ["standard", "fused"];

export interface OptOnnxOptions {
  variant?: OptOnnxVariant;
  lmHead?: LmHeadVariant;
  label?: string;
}

export interface OptOnnx {
  bytes: Uint8Array;
  variant: OptOnnxVariant;
  lmHead: LmHeadVariant;
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

export function exportOptOnnx(config: OptConfig, source: TensorSource, o: OptOnnxOptions = {}): OptOnnx {
  const variant = o.variant ?? "standard";
  const lmHead = o.lmHead ?? "gemm";
  const label = o.label ?? "checkpoint";
  const d = optDims(config);
  const unsupported = [
    !d.preNorm && "do_layer_norm_before = false (post-LN)",
    !d.finalNorm && "no final layer norm",
    d.project && "word_embed_proj_dim ≠ hidden_size (project_in/out)",
    !d.bias && "enable_bias = false",
    !d.affine && "layer_norm_elementwise_affine = false",
    d.activation !== "relu" && `activation ${d.activation}`,
    !d.tied && "untied lm_head",
  ].filter(Boolean);
  if (unsupported.length) throw new Error(`opt-onnx: the exporter covers OPT-125M-style configs; not: ${unsupported.join(", ")}`);

  const names = new CheckpointNames(source, d, label);
  const read = (name: string, shape: number[]): Float32Array => {
    const a = new Float32Array(numelOf(shape));
    source.readF32(names.full(name), a);
    return a;
  };

  const g = new OnnxGraph(`opt_${variant}`);
  if (variant === "fused") g.useOpset("com.microsoft", 1);
  const ex = new Exporter(g, d, read);
  const io = ex.graph(variant, lmHead);
  const counts = new Map<string, number>();
  for (const op of ex.ops) counts.set(op, (counts.get(op) ?? 0) + 1);
  return {
    bytes: g.toBytes(),
    variant,
    lmHead,
    ...io,
    ops: [...counts].map(([op, n]) => `${op}×${n}`).join(", "),
  };
}

class Exporter {
  readonly ops: string[] = [];
  private n = 0;

  constructor(private g: OnnxGraph, private d: OptDims, private read: (name: string, shape: number[]) => Float32Array) {}

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

  private i64(name: string, values: number[]): string {
    this.g.addInitializer(name, BigInt64Array.from(values.map(BigInt)), [values.length]);
    return name;
  }
  private f32(name: string, data: Float32Array, dims: number[]): string {
    this.g.addInitializer(name, data, dims);
    return name;
  }
  private scalarI64(name: string, v: number): string {
    this.g.addInitializer(name, BigInt64Array.of(BigInt(v)), []);
    return name;
  }
  private scalarF32(name: string, v: number): string {
    this.g.addInitializer(name, Float32Array.of(v), []);
    return name;
  }

  /** y = x·Wᵀ + b with W (out, in) as stored: MatMul on Wᵀ, transposed here once. */
  private linear(x: string, name: string, out: number, inp: number, bias = true): string {
    const wT = this.f32(`${name}.weight.T`, transpose(this.read(`${name}.weight`, [out, inp]), out, inp), [inp, out]);
    const y = this.op("MatMul", [x, wT]);
    return bias ? this.op("Add", [y, this.f32(`${name}.bias`, this.read(`${name}.bias`, [out]), [out])]) : y;
  }

  private layerNorm(x: string, name: string): string {
    const { C } = this.d;
    return this.op("LayerNormalization", [x, this.f32(`${name}.weight`, this.read(`${name}.weight`, [C]), [C]),
      this.f32(`${name}.bias`, this.read(`${name}.bias`, [C]), [C])], { axis: -1, epsilon: LAYER_NORM_EPS });
  }

  graph(variant: OptOnnxVariant, lmHead: LmHeadVariant): Pick<OptOnnx, "pastNames" | "presentNames" | "pastDims"> {
    const { g, d } = this;
    const { V, C, H, D, L, P: posRows } = d;
    g.addInput("input_ids", DataType.INT64, [1, "T"]);
    g.addInput("logits_index", DataType.INT64, ["R"]);
    const pastNames: string[] = [];
    const presentNames: string[] = [];
    for (let i = 0; i < L; i++) {
      if (variant === "standard") {
        for (const kv of ["key", "value"]) {
          pastNames.push(`past_key_values.${i}.${kv}`);
          presentNames.push(`present.${i}.${kv}`);
          g.addInput(`past_key_values.${i}.${kv}`, DataType.FLOAT, [1, H, "P", D]);
        }
      } else {
        pastNames.push(`past.${i}`);
        presentNames.push(`present.${i}`);
        g.addInput(`past.${i}`, DataType.FLOAT, [2, 1, H, "P", D]);
      }
    }

    // Lengths: T new tokens after P cached ones; positions P … P+T-1.
    const T1 = this.op("Shape", ["input_ids"], { start: 1, end: 2 });
    const P1 = this.op("Shape", [pastNames[0]], variant === "standard" ? { start: 2, end: 3 } : { start: 3, end: 4 });
    const S1 = this.op("Add", [P1, T1]);
    const axis0 = this.i64("axis0", [0]);
    const Ps = this.op("Squeeze", [P1, axis0]);
    const Ss = this.op("Squeeze", [S1, axis0]);
    const one = this.scalarI64("one", 1);
    const pos = this.op("Range", [Ps, Ss, one]); // [T]

    // Embeddings.
    const embed = this.f32("embed_tokens.weight", this.read("embed_tokens.weight", [V, C]), [V, C]);
    const posTable = this.f32("embed_positions.weight", this.read("embed_positions.weight", [posRows, C]), [posRows, C]);
    const tok = this.op("Gather", [embed, "input_ids"], { axis: 0 }); // [1, T, C]
    const posIds = this.op("Add", [pos, this.scalarI64("position_offset", POSITION_OFFSET)]);
    const posEmb = this.op("Unsqueeze", [this.op("Gather", [posTable, posIds], { axis: 0 }), axis0]); // [1, T, C]

    let xf: string; // the final LayerNorm's output, [1, T, C]
    if (variant === "standard") {
      // Causal mask [T, S]: key s is hidden from query t (at position P + t) when s > P + t.
      const zero = this.scalarI64("zero", 0);
      const cols = this.op("Range", [zero, Ss, one]); // [S]
      const rows = this.op("Unsqueeze", [pos, this.i64("axis1", [1])]); // [T, 1]
      const hidden = this.op("Greater", [cols, rows]); // [T, S]
      const mask = this.op("Where", [hidden, this.scalarF32("mask_min", MASK_MIN), this.scalarF32("mask_zero", 0)]);
      const headsShape = this.i64("heads_shape", [1, -1, H, D]);
      const hiddenShape = this.i64("hidden_shape", [1, -1, C]);
      const scaling = this.scalarF32("scaling", D ** -0.5);

      let x = this.op("Add", [tok, posEmb]);
      for (let i = 0; i < L; i++) {
        const p = `layers.${i}`;
        const h = this.layerNorm(x, `${p}.self_attn_layer_norm`);
        const heads = (y: string) => this.op("Transpose", [this.op("Reshape", [y, headsShape])], { perm: [0, 2, 1, 3] });
        const q = heads(this.op("Mul", [this.linear(h, `${p}.self_attn.q_proj`, C, C), scaling])); // [1, H, T, D]
        const k = heads(this.linear(h, `${p}.self_attn.k_proj`, C, C));
        const v = heads(this.linear(h, `${p}.self_attn.v_proj`, C, C));
        g.addNode("Concat", [pastNames[2 * i], k], [presentNames[2 * i]], { axis: 2 });
        g.addNode("Concat", [pastNames[2 * i + 1], v], [presentNames[2 * i + 1]], { axis: 2 });
        this.ops.push("Concat", "Concat");
        const kT = this.op("Transpose", [presentNames[2 * i]], { perm: [0, 1, 3, 2] }); // [1, H, D, S]
        const scores = this.op("Add", [this.op("MatMul", [q, kT]), mask]); // [1, H, T, S]
        const probs = this.op("Softmax", [scores], { axis: -1 });
        const ctx = this.op("MatMul", [probs, presentNames[2 * i + 1]]); // [1, H, T, D]
        const merged = this.op("Reshape", [this.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }), hiddenShape]);
        x = this.op("Add", [x, this.linear(merged, `${p}.self_attn.out_proj`, C, C)]);
        const f = this.layerNorm(x, `${p}.final_layer_norm`);
        const a = this.op("Relu", [this.linear(f, `${p}.fc1`, d.F, C)]);
        x = this.op("Add", [x, this.linear(a, `${p}.fc2`, C, d.F)]);
      }
      xf = this.layerNorm(x, "final_layer_norm");
    } else {
      // SkipLayerNormalization(input, skip, gamma, beta, bias) → [LN(input + skip + bias), mean, inv_std, input + skip + bias]:
      // each residual add is fused with the LayerNorm that follows it (the next layer's, or the final one).
      const ln = (name: string) => [
        this.f32(`${name}.weight`, this.read(`${name}.weight`, [C]), [C]),
        this.f32(`${name}.bias`, this.read(`${name}.bias`, [C]), [C]),
      ];
      const skipLn = (input: string, skip: string, norm: string, bias: string): [string, string] => {
        const inputs = [input, skip, ...ln(norm)];
        if (bias) inputs.push(bias);
        const [y, , , sum] = this.node("SkipLayerNormalization", inputs,
          { epsilon: LAYER_NORM_EPS }, 4, "com.microsoft");
        return [y, sum];
      };
      const noBias = "";
      let [h, x] = skipLn(tok, posEmb, "layers.0.self_attn_layer_norm", noBias);
      for (let i = 0; i < L; i++) {
        const p = `layers.${i}.self_attn`;
        // Packed QKV: weights (C, 3C) = [Wqᵀ | Wkᵀ | Wvᵀ], bias (3C).
        const w = new Float32Array(C * 3 * C);
        const b = new Float32Array(3 * C);
        ["q_proj", "k_proj", "v_proj"].forEach((m, j) => {
          const wm = this.read(`${p}.${m}.weight`, [C, C]);
          for (let r = 0; r < C; r++) for (let c = 0; c < C; c++) w[c * 3 * C + j * C + r] = wm[r * C + c];
          b.set(this.read(`${p}.${m}.bias`, [C]), j * C);
        });
        const [att] = (() => {
          const outs = [this.v("attention"), presentNames[i]];
          g.addNode("Attention", [h, this.f32(`${p}.qkv.weight`, w, [C, 3 * C]), this.f32(`${p}.qkv.bias`, b, [3 * C]), "",
            pastNames[i]], outs, { num_heads: H, unidirectional: 1 }, { domain: "com.microsoft" });
          this.ops.push("Attention");
          return outs;
        })();
        const o = this.linear(att, `${p}.out_proj`, C, C, false);
        const oB = this.f32(`${p}.out_proj.bias`, this.read(`${p}.out_proj.bias`, [C]), [C]);
        const [f, x2] = skipLn(o, x, `layers.${i}.final_layer_norm`, oB);
        const a = this.op("Relu", [this.linear(f, `layers.${i}.fc1`, d.F, C)]);
        const y = this.linear(a, `layers.${i}.fc2`, C, d.F, false);
        const yB = this.f32(`layers.${i}.fc2.bias`, this.read(`layers.${i}.fc2.bias`, [C]), [C]);
        const nextNorm = i + 1 < L ? `layers.${i + 1}.self_attn_layer_norm` : "final_layer_norm";
        [h, x] = skipLn(y, x2, nextNorm, yB);
      }
      xf = h;
    }

    // lm_head on the chosen rows only.
    const rowsF = this.op("Gather", [xf, "logits_index"], { axis: 1 }); // [1, R, C]
    if (lmHead === "gemm") {
      const flat = this.op("Reshape", [rowsF, this.i64("rows_shape", [-1, C])]);
      const y = this.op("Gemm", [flat, embed], { transB: 1 });
      g.addNode("Reshape", [y, this.i64("logits_shape", [1, -1, V])], ["logits"]);
      this.ops.push("Reshape");
    } else {
      const embT = this.f32("lm_head.weight.T", transpose(this.read("embed_tokens.weight", [V, C]), V, C), [C, V]);
      g.addNode("MatMul", [rowsF, embT], ["logits"]);
      this.ops.push("MatMul");
    }
    g.addOutput("logits", DataType.FLOAT, [1, "R", V]);
    for (const name of presentNames) {
      g.addOutput(name, DataType.FLOAT, variant === "standard" ? [1, H, "S", D] : [2, 1, H, "S", D]);
    }
    return {
      pastNames,
      presentNames,
      pastDims: (P: number) => (variant === "standard" ? [1, H, P, D] : [2, 1, H, P, D]),
    };
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
