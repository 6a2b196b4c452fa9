// Writing a loaded model's weights back out as safetensors, in the dtype they are held in — how
// int8 weights made at load are saved and reloaded without quantizing again.
//
// Layout (the family's checkpoint names, with its first prefix: `model.decoder.*` for OPT, `model.*`
// for LLaMA and Qwen2):
//   layer matrices                              F32 | F16 | I8 (N, K), and for I8
//   <name>_scale                                F32 (N, K / group): w ≈ q · scale per group of inputs
//   the token embedding (= a tied lm_head)      F32, or F16 for f16, int8 and q4 models (I8 with --embed-dtype int8,
//                                               U8 + BF16 _scale as a q4 matrix with --embed-dtype q4)
//   biases, norms, learned positions            F32
//   __metadata__: format "pt", wasm_lm_dtype, wasm_lm_int8_group
import type { TensorToWrite } from "../formats/safetensors.js";
import type { DecoderModel } from "./decoder.js";
import { fieldShape, LM_HEAD, type TensorRef } from "./family.js";
import type { Mat } from "./weights.js";
import { numel } from "../formats/types.js";

const DTYPE = { f32: "F32", f16: "F16", int8: "I8", q4: "U8" } as const;
const BYTES = { f32: 4, f16: 2, int8: 1, q4: 0.5 } as const;

export function modelTensors(model: DecoderModel): { tensors: TensorToWrite[]; metadata: Record<string, string> } {
  const { dims: d, weights: w, arena, family } = model;
  if (w.layers.length !== d.L) throw new Error("wasm-lm: saving needs every layer resident (residentLayers: true)");
  const refs: TensorRef<string>[] = [...family.globals(d)];
  for (let i = 0; i < d.L; i++) refs.push(...family.layer(d, i));
  const packed = refs.find((r) => r.conv);
  if (packed) {
    // GPT-2's Conv1D matrices are held transposed and split (and int8 rows cannot be transposed
    // back): a saved file would need a layout of its own.
    throw new Error(`wasm-lm: saving a ${family.name} model is not supported yet ('${packed.name}' is repacked at load)`);
  }
  const copy = (ptr: number, bytes: number) => arena.u8(ptr, bytes).slice();
  const out: TensorToWrite[] = [];
  const mat = (name: string, m: Mat, shape: number[]) => {
    const [N, K] = shape;
    if (m.dtype === "q4") {
      // Two 4-bit values a byte, (N, K/2), and per row K/32 bf16 scales then K/32 bf16 minimums.
      out.push({ name, dtype: "U8", shape: [N, K / 2], data: copy(m.w, (N * K) / 2) });
      out.push({ name: `${name}_scale`, dtype: "BF16", shape: [N, (2 * K) / 32], data: copy(m.s, N * (K / 32) * 4) });
      return;
    }
    out.push({ name, dtype: DTYPE[m.dtype], shape, data: copy(m.w, N * K * BYTES[m.dtype]) });
    if (m.dtype === "int8") out.push({ name: `${name}_scale`, dtype: "F32", shape: [N, K / m.g], data: copy(m.s, N * (K / m.g) * 4) });
  };
  const p = family.prefixes[0];
  const put = (r: TensorRef<string>, v: number | Mat) => {
    const shape = fieldShape(r);
    if (typeof v === "number") out.push({ name: p + r.name, dtype: "F32", shape, data: copy(v, numel(shape) * 4) });
    else mat(p + r.name, v, shape);
  };
  for (const r of family.globals(d)) put(r, w[r.field]);
  for (let i = 0; i < d.L; i++) for (const r of family.layer(d, i)) put(r, w.layers[i][r.field]);
  if (!d.tied) mat(LM_HEAD, w.lmHead, [d.V, d.E]);
  const metadata: Record<string, string> = { format: "pt", wasm_lm_dtype: model.dtype };
  if (model.dtype === "int8" || model.dtype === "q4") metadata.wasm_lm_int8_group = String(w.format.group);
  return { tensors: out, metadata };
}
