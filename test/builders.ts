// Builders for hostile checkpoint files, shared by test/hostile*.test.ts and fuzz/readers.ts:
// raw safetensors with any header, pickles written opcode by opcode, torch.save-style zips, and
// the tiny fixture's tensors as an editable list. No vitest import: the fuzzer runs outside it.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { strToU8, zipSync } from "fflate";
import { openSafetensors, writeSafetensors, type TensorToWrite } from "../src/formats/safetensors.js";

export const FIXTURE = fileURLToPath(new URL("./fixtures/opt-tiny/", import.meta.url));
export const fixtureBytes = (f: string) => new Uint8Array(readFileSync(FIXTURE + f));
export const fixtureConfigJson = () => JSON.parse(readFileSync(FIXTURE + "config.json", "utf8")) as Record<string, unknown>;

/** A safetensors file with an arbitrary header (object or raw JSON text) and `dataLen` zero data bytes. */
export function rawSafetensors(header: unknown, dataLen: number, headerLen?: number): Uint8Array {
  const json = strToU8(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  return out;
}

/** The fixture's tensors (F32), in file order, as writeSafetensors input: edit, then write. */
export function fixtureTensors(file = "model.safetensors"): TensorToWrite[] {
  const src = openSafetensors(fixtureBytes(file), file);
  return src.tensors().map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: src.readRaw(t.name).slice() }));
}

export const writeTensors = (ts: TensorToWrite[]) => writeSafetensors(ts, { format: "pt" });

/** A pickle assembled opcode by opcode (protocol 2, as torch.save writes). */
export class Pickle {
  private b: number[] = [0x80, 2];
  op(...bytes: number[]): this {
    this.b.push(...bytes);
    return this;
  }
  str(s: string): this {
    const u = strToU8(s);
    this.b.push(0x58, u.length & 0xff, (u.length >> 8) & 0xff, (u.length >> 16) & 0xff, u.length >>> 24, ...u);
    return this;
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    const v = new DataView(new ArrayBuffer(4));
    v.setInt32(0, n, true);
    return this.op(0x4a, ...new Uint8Array(v.buffer));
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...strToU8(`${module}\n${name}\n`));
  }
  stackGlobal(module: string, name: string): this {
    return this.str(module).str(name).op(0x93);
  }
  /** MARK ... TUPLE around what `f` pushes. */
  tuple(f: (p: this) => void): this {
    this.op(0x28);
    f(this);
    return this.op(0x74);
  }
  ints(xs: number[]): this {
    return this.tuple((p) => xs.forEach((x) => p.int(x)));
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.b);
  }
}

export interface FakeTensor {
  name: string;
  storage: string; // key
  type?: string; // default HalfStorage
  numel: number; // of the storage
  offset?: number;
  shape: number[];
  stride?: number[];
  /** Wrapped in torch._utils._rebuild_parameter, as nn.Parameter pickles. */
  param?: boolean;
}

export function contiguous(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** One `_rebuild_tensor_v2(...)` call (without the REDUCE), as torch.save pickles a tensor. */
export function rebuildTensor(p: Pickle, t: FakeTensor): Pickle {
  p.global("torch._utils", "_rebuild_tensor_v2");
  return p.tuple((q) => {
    q.tuple((r) =>
      r
        .str("storage")
        .global("torch", t.type ?? "HalfStorage")
        .str(t.storage)
        .str("cpu")
        .int(t.numel),
    );
    q.op(0x51); // BINPERSID
    q.int(t.offset ?? 0)
      .ints(t.shape)
      .ints(t.stride ?? contiguous(t.shape))
      .op(0x89);
    q.global("collections", "OrderedDict").op(0x29, 0x52);
  });
}

/** The pickle torch.save writes for an OrderedDict state dict (optionally with `_metadata`). */
export function stateDictPickle(tensors: FakeTensor[], withMetadata = false): Uint8Array {
  const p = new Pickle();
  p.global("collections", "OrderedDict").op(0x29, 0x52); // OrderedDict()
  p.op(0x28); // MARK for SETITEMS
  for (const t of tensors) {
    p.str(t.name);
    if (t.param) p.global("torch._utils", "_rebuild_parameter").op(0x28);
    rebuildTensor(p, t).op(0x52); // REDUCE
    if (t.param) p.op(0x89).global("collections", "OrderedDict").op(0x29, 0x52, 0x74, 0x52);
  }
  p.op(0x75); // SETITEMS
  if (withMetadata) {
    // BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}, as state_dict() produces.
    p.op(0x7d)
      .str("_metadata")
      .global("collections", "OrderedDict")
      .op(0x29, 0x52)
      .str("")
      .op(0x7d)
      .str("version")
      .int(1)
      .op(0x73, 0x73, 0x73, 0x62);
  }
  return p.op(0x2e).bytes(); // STOP
}

/** A torch.save-style zip: `<prefix>/data.pkl`, `<prefix>/data/<key>`, `<prefix>/version` (+ extra files). */
export function torchZip(
  pkl: Uint8Array,
  storages: Record<string, Uint8Array>,
  level: 0 | 6 = 0,
  prefix = "archive",
  extra: Record<string, Uint8Array> = {},
): Uint8Array {
  const files: Record<string, Uint8Array> = { [`${prefix}/data.pkl`]: pkl };
  for (const [k, v] of Object.entries(storages)) files[`${prefix}/data/${k}`] = v;
  for (const [k, v] of Object.entries(extra)) files[`${prefix}/${k}`] = v;
  files[`${prefix}/version`] = strToU8("3\n");
  return zipSync(files, { level });
}

/** The fixture's tensors as a torch.save zip (F32 storages, one per tensor, keys "0", "1", …). */
export function fixtureTorchZip(edit: (ts: TensorToWrite[]) => TensorToWrite[] = (t) => t, level: 0 | 6 = 0): Uint8Array {
  const ts = edit(fixtureTensors());
  const storages: Record<string, Uint8Array> = {};
  const fakes: FakeTensor[] = ts.map((t, i) => {
    storages[String(i)] = t.data;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    return { name: t.name, storage: String(i), type: "FloatStorage", numel, shape: t.shape };
  });
  return torchZip(stateDictPickle(fakes), storages, level);
}

/** Offset of the zip's end-of-central-directory record (no comment: the last 22 bytes). */
export function eocdOffset(zip: Uint8Array): number {
  for (let e = zip.length - 22; e >= 0; e--) {
    if (zip[e] === 0x50 && zip[e + 1] === 0x4b && zip[e + 2] === 5 && zip[e + 3] === 6) return e;
  }
  throw new Error("no EOCD");
}

/** Central-directory entries of a zip: name, offset of the entry's record, its local header offset. */
export function centralEntries(zip: Uint8Array): { name: string; at: number; local: number; method: number }[] {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const e = eocdOffset(zip);
  const count = dv.getUint16(e + 10, true);
  let p = dv.getUint32(e + 16, true);
  const out = [];
  for (let i = 0; i < count; i++) {
    const nameLen = dv.getUint16(p + 28, true);
    const name = new TextDecoder().decode(zip.subarray(p + 46, p + 46 + nameLen));
    out.push({ name, at: p, local: dv.getUint32(p + 42, true), method: dv.getUint16(p + 10, true) });
    p += 46 + nameLen + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  }
  return out;
}

/**
 * The fixture as a two-shard safetensors checkpoint in a model directory (file name → bytes):
 * config.json, model.safetensors.index.json and two shards holding alternate tensors.
 */
export function shardedRepo(): Record<string, Buffer> {
  const full = openSafetensors(fixtureBytes("model.safetensors"));
  const names = full.tensors().map((t) => t.name);
  const files: Record<string, Buffer> = { "config.json": Buffer.from(fixtureBytes("config.json")) };
  const weightMap: Record<string, string> = {};
  for (const s of [1, 2]) {
    const file = `model-0000${s}-of-00002.safetensors`;
    const mine = names.filter((_, i) => i % 2 === s - 1);
    for (const n of mine) weightMap[n] = file;
    files[file] = Buffer.from(
      writeSafetensors(
        mine.map((n) => {
          const t = full.get(n)!;
          return { name: n, dtype: t.dtype, shape: t.shape, data: full.readRaw(n) };
        }),
      ),
    );
  }
  files["model.safetensors.index.json"] = Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return files;
}
