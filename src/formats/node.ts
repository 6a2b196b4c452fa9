// Node-only: open the checkpoint in a model directory.
//
// Files are read whole into memory. fs.readFileSync refuses files above 2 GiB, so large files
// are read in chunks into one buffer; the ceiling is then buffer.constants.MAX_LENGTH (4 GiB
// on Node 20, more on Node 22+). Sharded checkpoints have no such limit per model, only per
// shard (HF shards are ≤ 10 GB by default, usually 2–5 GB).

import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { constants } from "node:buffer";
import { join } from "node:path";
import zlib from "node:zlib";
import { type TensorSource, CheckpointError } from "./types.js";
import { openCheckpoint } from "./index.js";
import { crc32, openZip, type Crc32 } from "./zip.js";

export interface CheckpointDirOptions {
  /**
   * Check each pytorch_model*.bin's zip entries against their CRC-32s before reading it (default
   * false: +0.22 s for a 478 MiB file here, with zlib's CRC-32). Safetensors files carry no checksum.
   */
  verifyChecksums?: boolean;
}

/** zlib's CRC-32 where the runtime has it (Node ≥ 20.15 / 22.2): ~10× the table-driven one. */
const fastCrc32: Crc32 = typeof zlib.crc32 === "function" ? (b) => zlib.crc32(b) : (b) => crc32(b);

/** Opens model.safetensors, model.safetensors.index.json, pytorch_model.bin or its index, in that order. */
export function openCheckpointDir(dir: string, opts: CheckpointDirOptions = {}): TensorSource {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new CheckpointError(`${dir}: not a directory`);
  }
  const read = (file: string): Uint8Array | undefined => {
    const p = join(dir, file);
    if (!existsSync(p)) return undefined;
    const bytes = readFileBytes(p);
    // Checked here, as each file is read: openCheckpoint opens the files (shards too) itself.
    if (opts.verifyChecksums && file.endsWith(".bin")) openZip(bytes, `${dir}/${file}`).verifyChecksums(fastCrc32);
    return bytes;
  };
  // Errors name `${dir}/<file>`; with no checkpoint, they list CHECKPOINT_FILES.
  return openCheckpoint(read, dir);
}

/** Reads a whole file, past readFileSync's 2 GiB limit, up to the largest Buffer Node allows. */
export function readFileBytes(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size > constants.MAX_LENGTH) {
      throw new CheckpointError(
        `${path}: ${size} bytes is more than this runtime can hold in one buffer ` + `(${constants.MAX_LENGTH}); use a sharded checkpoint`,
      );
    }
    const out = new Uint8Array(size);
    const CHUNK = 1 << 30;
    let done = 0;
    while (done < size) {
      const n = readSync(fd, out, done, Math.min(CHUNK, size - done), done);
      if (n === 0) throw new CheckpointError(`${path}: file shrank while reading (${done} of ${size} bytes)`);
      done += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
