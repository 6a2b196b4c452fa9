// Common types for every checkpoint format. Platform-neutral: only Uint8Array and typed
// arrays, no `fs`, so the same readers run in Node, browsers, Deno, Bun and edge runtimes.

/** Element types that can be converted to f32 (what OPT checkpoints actually use). */
export type DType = "F32" | "F16" | "BF16";

/**
 * Every element type a checkpoint may *list*. Tensors of the types outside `DType` can be
 * enumerated (an I64 `position_ids` buffer, say) but reading them as f32 is refused.
 */
export type AnyDType = DType | "F64" | "I64" | "I32" | "I16" | "I8" | "U64" | "U32" | "U16" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2";

export interface TensorInfo {
  name: string;
  dtype: AnyDType;
  shape: number[];
}

export interface TensorSource {
  /** Every tensor in the checkpoint, in file order. */
  tensors(): TensorInfo[];
  get(name: string): TensorInfo | undefined;
  /**
   * Converts the tensor to f32 into `dst`, which may be a view into WebAssembly memory.
   * `dst.length` must equal the element count.
   */
  readF32(name: string, dst: Float32Array): void;
  /** The raw little-endian bytes: a view into the file when possible, so do not mutate. */
  readRaw(name: string): Uint8Array;
}

/**
 * A checkpoint whose tensor bytes are fetched when asked for (HTTP range requests, slices of a
 * File, an object store): its index is known up front, its data is not held in memory. The model
 * streams layers from one of these (see DecoderModel.load's residentLayers).
 */
export interface AsyncTensorSource {
  /** Every tensor in the checkpoint, in file order. */
  tensors(): TensorInfo[];
  get(name: string): TensorInfo | undefined;
  /**
   * `length` raw bytes from byte `offset` of tensor `name` (default: the whole tensor). With
   * `scratch` large enough, the bytes land in it and a view of it is returned (reusing one buffer
   * keeps a stream of reads from leaving garbage behind).
   */
  readRawAsync(name: string, offset?: number, length?: number, scratch?: Uint8Array): Promise<Uint8Array>;
  /**
   * The raw bytes of several whole tensors, with as few reads as their places in the files allow;
   * reads that fit in `scratch` land there (the views are valid until it is used again).
   */
  readRawMany(names: string[], scratch?: Uint8Array): Promise<Map<string, Uint8Array>>;
}

export function isAsyncSource(s: TensorSource | AsyncTensorSource): s is AsyncTensorSource {
  return typeof (s as AsyncTensorSource).readRawMany === "function";
}

/** Bytes per element (safetensors names; torch storages map onto the same names). */
export const DTYPE_SIZE: Readonly<Record<AnyDType, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export function isAnyDType(s: unknown): s is AnyDType {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

export function isSupportedDType(s: AnyDType): s is DType {
  return s === "F32" || s === "F16" || s === "BF16";
}

/**
 * Every malformed-file problem is reported with this class, so callers (and the property
 * tests) can tell "this file is bad" apart from a bug in the reader.
 */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/**
 * Quotes a name taken from an untrusted file for an error message: control characters
 * escaped (messages stay one line) and long names cut (messages stay readable).
 */
export function q(s: string): string {
  return "'" + oneLine(s) + "'";
}

/**
 * Untrusted text for a message (a name, or a parser's excerpt of the file), cut at `max` and with
 * control characters escaped: C0 and C1 (CR, ESC and CSI included, so nothing can rewrite the
 * terminal) and the Unicode line separators.
 */
export function oneLine(s: string, max = 200): string {
  return escapeControls(s.length > max ? s.slice(0, max) + "…" : s);
}

/** Control characters (C0, C1, U+2028/9) as \\uXXXX, so a message stays one inert line. */
export function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** A fetch failure as one line: undici's "fetch failed" with its cause ("ECONNREFUSED", …). */
export function errorText(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string; code?: string } };
  const cause = err?.cause?.message ?? err?.cause?.code;
  return oneLine((cause ? `${err.message}: ${cause}` : (err?.message ?? String(e))).replace(/\s+/g, " "));
}

/** Throws a one-line CheckpointError prefixed with the file label. */
export function fail(label: string, msg: string): never {
  throw new CheckpointError(`${q(label).slice(1, -1)}: ${msg}`);
}

/** Element count; shapes are validated before this is called. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Checks a caller-supplied destination before conversion (shared by every format). */
export function checkDst(label: string, info: TensorInfo, dst: Float32Array): void {
  const n = numel(info.shape);
  if (!(dst instanceof Float32Array)) {
    fail(label, `tensor ${q(info.name)}: destination must be a Float32Array`);
  }
  if (dst.length !== n) {
    fail(label, `tensor ${q(info.name)}: destination has ${dst.length} elements, ` + `tensor has ${n} (shape [${info.shape.join(", ")}])`);
  }
}
