// A full-size model of any family with seeded random weights, made on demand tensor by tensor (no file, no copy).
// Real weights cannot be downloaded on every machine, so this is the built-in default model and
// what speed is measured on. Values: linear weights and embeddings uniform with std 0.02 (OPT's
// init_std), biases std 0.01, LayerNorm weights 1 ± 0.1 — so activations have realistic scales.
import type { TensorInfo, TensorSource } from "../formats/types.js";
import { LM_HEAD } from "./family.js";
import { familyOf, type ModelConfig } from "./families/index.js";
import { numel } from "../formats/types.js";

export { SYNTHETIC_PRESETS, syntheticConfig } from "./families/index.js";

// FNV-1a: a per-tensor seed, so a tensor's values do not depend on the order tensors are read.
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Values [start, start + dst.length) of a tensor: a counter-based hash of (seed, index), so any
 * range can be made without the ones before it (layers streamed and rows converted in chunks).
 */
function fill(dst: Float32Array, seed: number, start: number, center: number, std: number): void {
  const a = (std * Math.sqrt(3) * 2) / 4294967296; // uniform on [-std·√3, std·√3]
  const c = center - std * Math.sqrt(3);
  for (let i = 0; i < dst.length; i++) {
    // murmur3's finalizer over (index, seed)
    let x = (Math.imul(start + i, 0x9e3779b1) ^ seed) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    dst[i] = c + (x >>> 0) * a;
  }
}

export class SyntheticSource implements TensorSource {
  private infos: TensorInfo[];
  private byName: Map<string, TensorInfo>;

  constructor(
    readonly config: ModelConfig,
    readonly seed = 0,
  ) {
    const family = familyOf(config);
    const d = family.dims(config);
    const prefix = family.prefixes[0];
    const refs = [...family.globals(d)];
    for (let i = 0; i < d.L; i++) refs.push(...(family.layer(d, i) as never[]));
    this.infos = [];
    this.byName = new Map();
    for (const r of refs) {
      const name = prefix + r.name;
      if (this.byName.has(name)) continue; // GPT-2's c_attn holds q, k and v
      const info: TensorInfo = { name, dtype: "F32", shape: r.shape };
      this.infos.push(info);
      this.byName.set(name, info);
    }
    if (!d.tied) {
      const info: TensorInfo = { name: LM_HEAD, dtype: "F32", shape: [d.V, d.E] };
      this.infos.push(info);
      this.byName.set(LM_HEAD, info);
    }
  }

  tensors(): TensorInfo[] {
    return this.infos;
  }
  get(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }
  readF32(name: string, dst: Float32Array): void {
    const info = this.byName.get(name);
    if (!info) throw new Error(`synthetic: no tensor '${name}'`);
    if (dst.length !== numel(info.shape))
      throw new Error(`synthetic: '${name}' has ${numel(info.shape)} elements, destination ${dst.length}`);
    this.readF32Range(name, 0, dst);
  }

  /** Elements [start, start + dst.length) of a tensor. */
  readF32Range(name: string, start: number, dst: Float32Array): void {
    const info = this.byName.get(name);
    if (!info) throw new Error(`synthetic: no tensor '${name}'`);
    if (start < 0 || start + dst.length > numel(info.shape)) throw new Error(`synthetic: range past the end of '${name}'`);
    const seed = (hash(name) ^ Math.imul(this.seed + 1, 0x9e3779b1)) >>> 0;
    const isNorm = /(layer_?norm|\.norm|(^|\.)ln_\w+)\.weight$/.test(name);
    const isBias = name.endsWith(".bias");
    if (isNorm && !isBias) fill(dst, seed, start, 1, 0.1);
    else if (isBias) fill(dst, seed, start, 0, 0.01);
    else fill(dst, seed, start, 0, 0.02);
  }
  readRaw(name: string): Uint8Array {
    const info = this.byName.get(name);
    if (!info) throw new Error(`synthetic: no tensor '${name}'`);
    const out = new Float32Array(numel(info.shape));
    this.readF32(name, out);
    return new Uint8Array(out.buffer);
  }
}
