// safetensors: u64 little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}},
// then the data section that the offsets index into.
//
// The header comes from an untrusted file, so every field is checked before use and every
// problem is a one-line CheckpointError naming the file and the tensor.

import {
  type AnyDType,
  type TensorInfo,
  type TensorSource,
  DTYPE_SIZE,
  isAnyDType,
  isSupportedDType,
  fail,
  q,
  oneLine,
  numel,
  checkDst,
} from "./types.js";
import { convertToF32 } from "./dtype.js";

/** HF's own reader refuses headers above 100 MB; a real one is a few hundred KB. */
const MAX_HEADER = 100_000_000;

type Entry = SafetensorsEntry;

export class SafetensorsSource implements TensorSource {
  readonly label: string;
  /** The `__metadata__` map (string → string), empty when absent. */
  readonly metadata: Record<string, string>;
  private readonly bytes: Uint8Array;
  private readonly entries: Map<string, Entry>;

  /** Use `openSafetensors`; the constructor trusts its (already validated) arguments. */
  constructor(bytes: Uint8Array, label: string, entries: Map<string, Entry>, metadata: Record<string, string>) {
    this.bytes = bytes;
    this.label = label;
    this.entries = entries;
    this.metadata = metadata;
  }

  tensors(): TensorInfo[] {
    return [...this.entries.values()].map(publicInfo);
  }

  get(name: string): TensorInfo | undefined {
    const e = this.entries.get(name);
    return e && publicInfo(e);
  }

  readRaw(name: string): Uint8Array {
    const e = this.entry(name);
    return this.bytes.subarray(e.begin, e.end);
  }

  readF32(name: string, dst: Float32Array): void {
    const e = this.entry(name);
    if (!isSupportedDType(e.dtype)) {
      fail(this.label, `tensor ${q(name)} has dtype ${e.dtype}, which cannot be read as f32 ` + "(supported: F32, F16, BF16)");
    }
    checkDst(this.label, e, dst);
    convertToF32(e.dtype, this.bytes.subarray(e.begin, e.end), dst);
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) fail(this.label, `no tensor named ${q(name)}`);
    return e;
  }
}

function publicInfo(e: Entry): TensorInfo {
  return { name: e.name, dtype: e.dtype, shape: [...e.shape] };
}

/** Parses and validates a safetensors file held in memory; tensor data stays a view. */
export function openSafetensors(bytes: Uint8Array, label = "model.safetensors"): SafetensorsSource {
  if (!(bytes instanceof Uint8Array)) fail(label, "expected a Uint8Array");
  const headerLen = safetensorsHeaderLength(bytes, bytes.length, label);
  const { entries, metadata } = parseSafetensorsHeader(bytes.subarray(8, 8 + headerLen), bytes.length, label);
  return new SafetensorsSource(bytes, label, entries, metadata);
}

/**
 * The JSON header's length from a file's first 8 bytes, checked against the file's size. Readers
 * that fetch parts of a file (HTTP ranges) call this, then `parseSafetensorsHeader`.
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileSize: number, label: string): number {
  if (fileSize < 8 || first8.length < 8) fail(label, `file is ${fileSize} bytes, too short for a safetensors header`);
  const lo = readU32(first8, 0);
  const hi = readU32(first8, 4);
  const headerLen = hi * 2 ** 32 + lo;
  if (headerLen > MAX_HEADER) {
    fail(label, `header length ${headerLen} is absurd (limit ${MAX_HEADER}); not a safetensors file?`);
  }
  if (8 + headerLen > fileSize) {
    fail(label, `header length ${headerLen} runs past the end of the file (${fileSize} bytes)`);
  }
  return headerLen;
}

/** A tensor's place in the file: absolute byte offsets [begin, end). */
export interface SafetensorsEntry extends TensorInfo {
  begin: number;
  end: number;
}

/**
 * Validates the JSON header (the bytes after the 8-byte length) of a file of `fileSize` bytes:
 * every entry's dtype, shape and offsets, and no two tensors sharing bytes. Entries in file order.
 */
export function parseSafetensorsHeader(
  json: Uint8Array,
  fileSize: number,
  label: string,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string>; dataStart: number } {
  const header = parseHeaderJson(json, label);
  const dataStart = 8 + json.length;
  const dataLen = fileSize - dataStart;

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const name of Object.keys(header)) {
    const v = header[name];
    if (name === "__metadata__") {
      metadata = parseMetadata(v, label);
      continue;
    }
    entries.push(parseEntry(name, v, label, dataStart, dataLen));
  }

  // File order, then no overlaps: two tensors sharing bytes would make one silently alias
  // another, which HF's writer never produces.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const p = entries[i - 1],
      c = entries[i];
    if (c.begin < p.end) {
      fail(
        label,
        `tensor ${q(c.name)} bytes [${c.begin - dataStart}, ${c.end - dataStart}) overlap ` +
          `tensor ${q(p.name)} [${p.begin - dataStart}, ${p.end - dataStart})`,
      );
    }
  }
  return { entries: new Map(entries.map((e) => [e.name, e])), metadata, dataStart };
}

function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function parseHeaderJson(raw: Uint8Array, label: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    fail(label, "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    // V8 quotes the text around the error, raw: a CR or an ESC from the file must not reach a terminal.
    fail(label, `header is not JSON (${oneLine((e as Error).message)})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail(label, "header is not a JSON object");
  }
  return header as Record<string, unknown>;
}

function parseMetadata(v: unknown, label: string): Record<string, string> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    fail(label, "__metadata__ is not an object");
  }
  const out: Record<string, string> = Object.create(null);
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== "string") fail(label, `__metadata__ field ${q(k)} is not a string`);
    out[k] = s;
  }
  return out;
}

function parseEntry(name: string, v: unknown, label: string, dataStart: number, dataLen: number): Entry {
  const where = `tensor ${q(name)}`;
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(label, `${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
  if (!isAnyDType(dtype)) {
    fail(label, `${where}: unknown dtype ${typeof dtype === "string" ? q(dtype) : String(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    fail(label, `${where}: shape must be an array of non-negative integers`);
  }
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount)) {
    fail(label, `${where}: data_offsets must be two non-negative integers`);
  }
  const [begin, end] = offs as number[];
  if (end < begin) fail(label, `${where}: data_offsets end ${end} < begin ${begin}`);
  const n = numel(shape as number[]);
  const want = n * DTYPE_SIZE[dtype as AnyDType];
  if (!Number.isSafeInteger(want) || end - begin !== want) {
    fail(label, `${where}: ${end - begin} bytes for shape [${(shape as number[]).join(", ")}] ${dtype}, ` + `expected ${want}`);
  }
  if (end > dataLen) {
    fail(label, `${where}: data_offsets [${begin}, ${end}) past the end of the data section ` + `(${dataLen} bytes; file truncated?)`);
  }
  return {
    name,
    dtype: dtype as AnyDType,
    shape: (shape as number[]).slice(),
    begin: dataStart + begin,
    end: dataStart + end,
  };
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

export interface TensorToWrite {
  name: string;
  dtype: AnyDType;
  shape: number[];
  /** Raw little-endian elements; length must be product(shape) × dtype size. */
  data: Uint8Array;
}

/**
 * Writes a safetensors file like HF's writer: tensors in the given order, the header padded
 * with spaces so the data section starts 8-byte aligned. Used to build synthetic checkpoints.
 */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  // No prototype: a tensor named "__proto__" must become a key, not replace the prototype.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  const seen = new Set<string>();
  let off = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__") throw new Error("writeSafetensors: '__metadata__' is reserved");
    if (seen.has(t.name)) throw new Error(`writeSafetensors: duplicate tensor ${q(t.name)}`);
    seen.add(t.name);
    if (!isAnyDType(t.dtype)) throw new Error(`writeSafetensors: tensor ${q(t.name)}: unknown dtype ${t.dtype}`);
    if (!t.shape.every(isCount)) throw new Error(`writeSafetensors: tensor ${q(t.name)}: bad shape`);
    const want = numel(t.shape) * DTYPE_SIZE[t.dtype];
    if (t.data.length !== want) {
      throw new Error(`writeSafetensors: tensor ${q(t.name)}: ${t.data.length} bytes, expected ${want}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + want] };
    off += want;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(json.length + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + off);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.length % 2 ** 32, true);
  dv.setUint32(4, Math.floor(json.length / 2 ** 32), true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}
