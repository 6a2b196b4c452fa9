// Checkpoint formats, platform-neutral (Uint8Array in, TensorSource out). The Node-only
// directory reader is in ./node.js and the hub download in ./hub.js.

import { type TensorSource, fail } from "./types.js";
import { openSafetensors } from "./safetensors.js";
import { openPytorchBin } from "./pytorch.js";
import { MultiSource, parseShardIndex, shardFiles } from "./multi.js";

export {
  type DType,
  type AnyDType,
  type TensorInfo,
  type TensorSource,
  type AsyncTensorSource,
  CheckpointError,
  isAsyncSource,
  DTYPE_SIZE,
  isAnyDType,
  isSupportedDType,
  numel,
} from "./types.js";
export {
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  convertToF32,
  f32ArrayToF16Bytes,
  f32ArrayToBf16Bytes,
  f32ArrayToBytes,
} from "./dtype.js";
export {
  openSafetensors,
  writeSafetensors,
  SafetensorsSource,
  safetensorsHeaderLength,
  parseSafetensorsHeader,
  type SafetensorsEntry,
  type TensorToWrite,
} from "./safetensors.js";
export { openPytorchBin, PytorchSource } from "./pytorch.js";
export { MultiSource, parseShardIndex, shardFiles, isPlainFileName, type Shard } from "./multi.js";
export {
  httpRangeReader,
  blobRangeReader,
  bytesRangeReader,
  openRangedSafetensors,
  openRangedCheckpoint,
  openRangedSafetensorsCheckpoint,
  RangedSafetensors,
  RangeReadError,
  type RangeReader,
  type RangeOpener,
  type HttpRangeOptions,
} from "./ranged.js";

/** The checkpoint files looked for in a model directory, in order of preference. */
export const CHECKPOINT_FILES = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
] as const;

/** Opens one tensor file, telling a torch zip ("PK\x03\x04") from safetensors by its magic. */
export function openTensorFile(bytes: Uint8Array, label: string): TensorSource {
  const zip = bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3 && bytes[3] === 4;
  return zip ? openPytorchBin(bytes, label) : openSafetensors(bytes, label);
}

/** A model directory's files: a map of name → bytes, or a reader returning undefined when absent. */
export type FileProvider = Map<string, Uint8Array> | ((file: string) => Uint8Array | undefined);

/**
 * Opens the checkpoint among `files`, trying CHECKPOINT_FILES in order. With a reader function
 * only the files needed are read. `label` prefixes file names in errors (e.g. the directory).
 */
export function openCheckpoint(files: FileProvider, label = ""): TensorSource {
  const read = typeof files === "function" ? files : (f: string) => files.get(f);
  const name = (f: string) => (label ? `${label}/${f}` : f);
  for (const file of CHECKPOINT_FILES) {
    const bytes = read(file);
    if (!bytes) continue;
    if (!file.endsWith(".index.json")) {
      return file.endsWith(".bin") ? openPytorchBin(bytes, name(file)) : openSafetensors(bytes, name(file));
    }
    const weightMap = parseShardIndex(bytes, name(file));
    const open = file.startsWith("pytorch_model") ? openPytorchBin : openSafetensors;
    const shards = shardFiles(weightMap).map((shard) => {
      const b = read(shard);
      if (!b) fail(name(file), `shard ${shard} is missing`);
      return { file: shard, source: open(b, name(shard)) };
    });
    return new MultiSource(shards, weightMap, name(file));
  }
  fail(label || "checkpoint", `no checkpoint found (looked for ${CHECKPOINT_FILES.join(", ")})`);
}
