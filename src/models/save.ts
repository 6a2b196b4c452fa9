// Writing a loaded model's weights back out as safetensors, in the dtype they are held in — how
// int8 weights made at load are saved and reloaded without quantizing again.
//
// Layout (keys as transformers writes them, `model.decoder.*`):
//   layer matrices (q/k/v/out_proj, fc1, fc2)   F32 | F16 | I8 (N, K), and for I8
//   <name>_scale                                F32 (N, K / group): w ≈ q · scale per group of inputs
//   embed_tokens.weight (= the tied lm_head)    F32, or F16 for f16 and int8 models
//   biases, LayerNorms, embed_positions         F32
//   __metadata__: format "pt", wasm_lm_dtype, wasm_lm_int8_group
import type { TensorToWrite } from "../../formats/safetensors.js";
import type { OptModel } from "./model.js";
import { globalSpecs, layerSpecs, numelOf, type Mat, type OptLayerWeights } from "./weights.js";

const DTYPE = { f32: "F32", f16: "F16", int8: "I8" } as const;
const BYTES = { f32: 4, f16: 2, int8: 1 } as const;

export function modelTensors(model: OptModel): { tensors: TensorToWrite[]; metadata: Record<string, string> } {
  const { d, weights: w, arena } = model;
  if (w.layers.length !== d.L) throw new Error("wasm-lm: saving needs every layer resident (residentLayers: true)");
  const copy = (ptr: number, bytes: number) => arena.u8(ptr, bytes).slice();
  const out: TensorToWrite[] = [];
  const vec = (name: string, ptr: number, shape: number[]) =>
    out.push({ name, dtype: "F32", shape, data: copy(ptr, numelOf(shape) * 4) });
  const mat = (name: string, m: Mat, shape: number[]) => {
    const [N, K] = shape;
    out.push({ name, dtype: DTYPE[m.dtype], shape, data: copy(m.w, N * K * BYTES[m.dtype]) });
    if (m.dtype === "int8") out.push({ name: `${name}_scale`, dtype: "F32", shape: [N, K / m.g], data: copy(m.s, N * (K / m.g) * 4) });
  };
  const p = "model.decoder.";
  const globals: Record<string, number | Mat> = {
    "embed_tokens.weight": w.embedTokens, "embed_positions.weight": w.embedPositions,
    "project_in.weight": w.projectIn, "project_out.weight": w.projectOut,
    "final_layer_norm.weight": w.finalNormW, "final_layer_norm.bias": w.finalNormB,
  };
  for (const s of globalSpecs(d)) {
    const v = globals[s.name];
    if (typeof v === "number") vec(p + s.name, v, s.shape);
    else mat(p + s.name, v, s.shape);
  }
  for (let i = 0; i < d.L; i++) {
    for (const s of layerSpecs(d, i)) {
      const v = w.layers[i][s.field as keyof OptLayerWeights];
      if (typeof v === "number") vec(p + s.name, v, s.shape);
      else mat(p + s.name, v, s.shape);
    }
  }
  if (!d.tied) mat("lm_head.weight", w.lmHead, [d.V, d.E]);
  const metadata: Record<string, string> = { format: "pt", wasm_lm_dtype: model.dtype };
  if (model.dtype === "int8") metadata.wasm_lm_int8_group = String(w.format.group);
  return { tensors: out, metadata };
}
