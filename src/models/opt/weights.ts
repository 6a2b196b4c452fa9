// One table of OPT weight names and shapes drives loading and validation: a missing, extra or
// mis-shaped tensor fails at load, naming it — never in the middle of a forward pass.
//
// Names are those of transformers' OPTForCausalLM after stripping the decoder prefix:
//   model.decoder.*  (files saved by transformers)   or   decoder.*  (Meta's facebook/opt-* files)
// plus the optional top-level lm_head.weight.
import type { Arena } from "../../arena.js";
import type { TensorSource } from "../../formats/types.js";
import type { OptDims } from "./config.js";

export interface WeightSpec {
  /** Name without the decoder prefix, e.g. "layers.0.fc1.weight", or "lm_head.weight". */
  name: string;
  shape: number[];
}

/** Pointers to one decoder layer's weights (0 = absent). Shapes in the comments: (out, in). */
export interface OptLayerWeights {
  attnNormW: number; attnNormB: number; // (C)
  qW: number; qB: number; // (C, C), (C)
  kW: number; kB: number; // (C, C), (C)
  vW: number; vB: number; // (C, C), (C)
  oW: number; oB: number; // (C, C), (C)
  ffnNormW: number; ffnNormB: number; // (C)
  fc1W: number; fc1B: number; // (F, C), (F)
  fc2W: number; fc2B: number; // (C, F), (C)
}

export interface OptWeights {
  embedTokens: number; // (V, E)
  embedPositions: number; // (P, C)
  projectIn: number; // (C, E) or 0
  projectOut: number; // (E, C) or 0
  finalNormW: number; finalNormB: number; // (C) or 0
  lmHead: number; // (V, E): embedTokens when tied
  layers: OptLayerWeights[];
}

const LAYER_FIELDS: [keyof OptLayerWeights, string, (d: OptDims) => number[], "bias" | "affine" | null][] = [
  ["attnNormW", "self_attn_layer_norm.weight", (d) => [d.C], "affine"],
  ["attnNormB", "self_attn_layer_norm.bias", (d) => [d.C], "affine"],
  ["qW", "self_attn.q_proj.weight", (d) => [d.C, d.C], null],
  ["qB", "self_attn.q_proj.bias", (d) => [d.C], "bias"],
  ["kW", "self_attn.k_proj.weight", (d) => [d.C, d.C], null],
  ["kB", "self_attn.k_proj.bias", (d) => [d.C], "bias"],
  ["vW", "self_attn.v_proj.weight", (d) => [d.C, d.C], null],
  ["vB", "self_attn.v_proj.bias", (d) => [d.C], "bias"],
  ["oW", "self_attn.out_proj.weight", (d) => [d.C, d.C], null],
  ["oB", "self_attn.out_proj.bias", (d) => [d.C], "bias"],
  ["ffnNormW", "final_layer_norm.weight", (d) => [d.C], "affine"],
  ["ffnNormB", "final_layer_norm.bias", (d) => [d.C], "affine"],
  ["fc1W", "fc1.weight", (d) => [d.F, d.C], null],
  ["fc1B", "fc1.bias", (d) => [d.F], "bias"],
  ["fc2W", "fc2.weight", (d) => [d.C, d.F], null],
  ["fc2B", "fc2.bias", (d) => [d.C], "bias"],
];

const present = (d: OptDims, cond: "bias" | "affine" | null) => cond === null || (cond === "bias" ? d.bias : d.affine);

/** The tensors of decoder layer i, keyed by the OptLayerWeights field they fill. */
export function layerSpecs(d: OptDims, i: number): (WeightSpec & { field: keyof OptLayerWeights })[] {
  return LAYER_FIELDS.filter(([, , , cond]) => present(d, cond))
    .map(([field, suffix, shape]) => ({ field, name: `layers.${i}.${suffix}`, shape: shape(d) }));
}

/** Every tensor outside the layers, in load order. */
export function globalSpecs(d: OptDims): WeightSpec[] {
  const s: WeightSpec[] = [
    { name: "embed_tokens.weight", shape: [d.V, d.E] },
    { name: "embed_positions.weight", shape: [d.P, d.C] },
  ];
  if (d.project) {
    s.push({ name: "project_in.weight", shape: [d.C, d.E] });
    s.push({ name: "project_out.weight", shape: [d.E, d.C] });
  }
  if (d.finalNorm && d.affine) {
    s.push({ name: "final_layer_norm.weight", shape: [d.C] });
    s.push({ name: "final_layer_norm.bias", shape: [d.C] });
  }
  return s;
}

export const numelOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Bytes of f32 weights the model needs (the tied lm_head costs nothing). */
export function weightBytes(d: OptDims, residentLayers = d.L): number {
  let n = 0;
  for (const s of globalSpecs(d)) n += numelOf(s.shape);
  for (const s of layerSpecs(d, 0)) n += numelOf(s.shape) * residentLayers;
  if (!d.tied) n += d.V * d.E;
  return n * 4;
}

/**
 * Maps the table's names to the checkpoint's: finds the decoder prefix, checks that every expected
 * tensor exists with the expected shape and that nothing unexpected is there.
 */
export class CheckpointNames {
  readonly prefix: string;
  readonly hasLmHead: boolean;

  constructor(private src: TensorSource, private d: OptDims, label: string) {
    const names = src.tensors().map((t) => t.name);
    const prefixes = ["model.decoder.", "decoder."];
    const prefix = prefixes.find((p) => names.some((n) => n === `${p}embed_tokens.weight`));
    if (!prefix) {
      throw new Error(`${label}: no 'model.decoder.embed_tokens.weight' or 'decoder.embed_tokens.weight': ` +
        `not an OPT checkpoint (first tensors: ${names.slice(0, 3).join(", ") || "none"})`);
    }
    this.prefix = prefix;
    const lmHeadName = "lm_head.weight";
    this.hasLmHead = names.includes(lmHeadName);
    if (!d.tied && !this.hasLmHead) throw new Error(`${label}: missing tensor 'lm_head.weight' (tie_word_embeddings is false)`);

    const expected = new Map<string, number[]>();
    for (const s of globalSpecs(d)) expected.set(prefix + s.name, s.shape);
    for (let i = 0; i < d.L; i++) for (const s of layerSpecs(d, i)) expected.set(prefix + s.name, s.shape);
    if (this.hasLmHead) expected.set(lmHeadName, [d.V, d.E]);

    for (const [name, shape] of expected) {
      const info = src.get(name);
      if (!info) throw new Error(`${label}: missing tensor '${name}' (expected shape [${shape}])`);
      if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
        throw new Error(`${label}: tensor '${name}' has shape [${info.shape}], config.json implies [${shape}]`);
      }
    }
    for (const name of names) {
      if (!expected.has(name)) throw new Error(`${label}: unexpected tensor '${name}' (not part of this OPT config)`);
    }
  }

  full(name: string): string {
    return name === "lm_head.weight" ? name : this.prefix + name;
  }
}

/** Copy one tensor from the checkpoint into a fresh arena region, converting to f32. */
export function loadTensor(arena: Arena, src: TensorSource, name: string, n: number): number {
  const ptr = arena.alloc(n * 4);
  src.readF32(name, arena.f32(ptr, n));
  return ptr;
}

/** Room for one decoder layer's weights (a slot that layers can be streamed through). */
export function allocLayerSlot(arena: Arena, d: OptDims): OptLayerWeights {
  const w = Object.fromEntries(LAYER_FIELDS.map(([f]) => [f, 0])) as unknown as OptLayerWeights;
  for (const s of layerSpecs(d, 0)) w[s.field] = arena.alloc(numelOf(s.shape) * 4);
  return w;
}

/** Read decoder layer i's tensors from the checkpoint into a slot. */
export function fillLayer(arena: Arena, src: TensorSource, names: CheckpointNames, d: OptDims, i: number, slot: OptLayerWeights): void {
  for (const s of layerSpecs(d, i)) src.readF32(names.full(s.name), arena.f32(slot[s.field], numelOf(s.shape)));
}

/** Load decoder layer i's weights into a fresh arena region (where they live is the caller's choice). */
export function loadLayerWeights(arena: Arena, src: TensorSource, names: CheckpointNames, d: OptDims, i: number): OptLayerWeights {
  const w = allocLayerSlot(arena, d);
  fillLayer(arena, src, names, d, i, w);
  return w;
}

/** Bytes of one decoder layer's f32 weights. */
export const layerBytes = (d: OptDims) => layerSpecs(d, 0).reduce((a, s) => a + numelOf(s.shape) * 4, 0);

/**
 * Load the weights (progress: called after each tensor with bytes done / total). With
 * residentLayers false only the embeddings, norms and heads are loaded and `layers` is empty:
 * the caller streams layers through a slot (OptModel does this for you).
 */
export function loadOptWeights(arena: Arena, src: TensorSource, names: CheckpointNames, d: OptDims,
  onProgress?: (done: number, total: number) => void, residentLayers = true): OptWeights {
  const total = weightBytes(d, residentLayers ? d.L : 0);
  arena.reserve(total + 64 * 64); // grow memory once, with room for alignment padding
  let done = 0;
  const g = (name: string, shape: number[]) => {
    const n = numelOf(shape);
    const p = loadTensor(arena, src, names.full(name), n);
    done += n * 4;
    onProgress?.(done, total);
    return p;
  };
  const embedTokens = g("embed_tokens.weight", [d.V, d.E]);
  const embedPositions = g("embed_positions.weight", [d.P, d.C]);
  const projectIn = d.project ? g("project_in.weight", [d.C, d.E]) : 0;
  const projectOut = d.project ? g("project_out.weight", [d.E, d.C]) : 0;
  const finalNormW = d.finalNorm && d.affine ? g("final_layer_norm.weight", [d.C]) : 0;
  const finalNormB = d.finalNorm && d.affine ? g("final_layer_norm.bias", [d.C]) : 0;
  const layers: OptLayerWeights[] = [];
  for (let i = 0; residentLayers && i < d.L; i++) {
    layers.push(loadLayerWeights(arena, src, names, d, i));
    done += layerBytes(d);
    onProgress?.(done, total);
  }
  // transformers ties lm_head to embed_tokens when tie_word_embeddings is true, even if the file has one.
  const lmHead = d.tied ? embedTokens : g("lm_head.weight", [d.V, d.E]);
  return { embedTokens, embedPositions, projectIn, projectOut, finalNormW, finalNormB, lmHead, layers };
}
