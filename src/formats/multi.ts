// Sharded checkpoints: `model.safetensors.index.json` / `pytorch_model.bin.index.json` map
// each tensor name to the shard file that holds it ({"weight_map": {name: file}}).

import { type TensorInfo, type TensorSource, fail, oneLine, q } from "./types.js";

export interface Shard {
  file: string;
  source: TensorSource;
}

/** Several sources seen as one; with a weight map, each tensor comes from the shard it names. */
export class MultiSource implements TensorSource {
  private readonly owner = new Map<string, TensorSource>();
  private readonly order: string[] = [];

  /**
   * Without `weightMap`, the union of the shards (a name in two shards is an error). With it,
   * exactly the mapped tensors; every file it names must be among `shards` and hold the tensor.
   */
  constructor(
    shards: Shard[],
    weightMap?: Map<string, string>,
    readonly label = "checkpoint",
  ) {
    const byFile = new Map<string, TensorSource>();
    for (const s of shards) {
      if (byFile.has(s.file)) fail(label, `shard ${q(s.file)} given twice`);
      byFile.set(s.file, s.source);
    }
    if (weightMap) {
      for (const [name, file] of weightMap) {
        const src = byFile.get(file);
        if (!src) fail(label, `tensor ${q(name)}: shard ${q(file)} named by the index is missing`);
        if (!src.get(name)) fail(label, `tensor ${q(name)}: not in shard ${q(file)} where the index puts it`);
        this.owner.set(name, src);
        this.order.push(name);
      }
      return;
    }
    for (const s of shards) {
      for (const t of s.source.tensors()) {
        if (this.owner.has(t.name)) fail(label, `tensor ${q(t.name)} appears in more than one shard`);
        this.owner.set(t.name, s.source);
        this.order.push(t.name);
      }
    }
  }

  tensors(): TensorInfo[] {
    return this.order.map((n) => this.owner.get(n)!.get(n)!);
  }

  get(name: string): TensorInfo | undefined {
    return this.owner.get(name)?.get(name);
  }

  readF32(name: string, dst: Float32Array): void {
    this.source(name).readF32(name, dst);
  }

  readRaw(name: string): Uint8Array {
    return this.source(name).readRaw(name);
  }

  private source(name: string): TensorSource {
    const s = this.owner.get(name);
    if (!s) fail(this.label, `no tensor named ${q(name)}`);
    return s;
  }
}

/**
 * Parses a shard index into its weight map (name → file, in index order). File names must be
 * plain names: an index is untrusted and is used to build local paths and download URLs.
 */
export function parseShardIndex(text: string | Uint8Array, label: string): Map<string, string> {
  const s = typeof text === "string" ? text : new TextDecoder().decode(text);
  let json: unknown;
  try {
    json = JSON.parse(s);
  } catch (e) {
    fail(label, `not JSON (${oneLine((e as Error).message)})`);
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) fail(label, "no 'weight_map' object");
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== "string") fail(label, `weight_map entry ${q(name)} is not a file name`);
    if (!isPlainFileName(file)) fail(label, `weight_map entry ${q(name)}: ${q(file)} is not a plain file name`);
    out.set(name, file);
  }
  if (out.size === 0) fail(label, "'weight_map' is empty");
  return out;
}

/** A file name without directories, `..`, control characters or a leading dot. */
export function isPlainFileName(f: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(f) && f.length <= 255;
}

/** The distinct shard files of a weight map, in first-use order. */
export function shardFiles(weightMap: Map<string, string>): string[] {
  return [...new Set(weightMap.values())];
}
