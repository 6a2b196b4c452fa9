// Mutation fuzzer for the checkpoint readers (not part of npm test): `npm run fuzz`, or
//   npx tsx fuzz/readers.ts [--n 100000] [--seed 1] [--workers 2] [--out dir] [--only index]
//
// Inputs are valid files mutated: bit flips, byte sets, insertions, deletions, truncations and
// splices biased towards the structural bytes (safetensors' header, the zip's headers and
// directory, the pickle), plus structure-aware edits (safetensors header fields swapped between
// tensors or set to boundary values; zip directory fields set to lies; pickle opcodes inserted).
// Each input is opened and every tensor read (raw, and as f32 when it is a float type).
//
// Outcomes: accepted; a clean error — a CheckpointError or a plain Error with a one-line message;
// or a CRASH — anything else (TypeError, RangeError, another class, a non-Error, a message with a
// raw line break or control character: a CR or an ESC from the file would reach the terminal), an
// accepted tensor whose bytes disagree with its shape, or a HANG (> 1 s for one input; a worker
// stuck for 30 s is killed). Crashing inputs are saved and the exit code is 1.
// Input i is a pure function of (seed, i): `--only i` replays one.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { availableParallelism, tmpdir } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { unzipSync, zipSync } from "fflate";
import {
  CheckpointError,
  DTYPE_SIZE,
  numel,
  openPytorchBin,
  openSafetensors,
  writeSafetensors,
  f32ArrayToBf16Bytes,
  f32ArrayToBytes,
  f32ArrayToF16Bytes,
  type TensorSource,
} from "../src/formats/index.js";
import { fixtureBytes, stateDictPickle, torchZip } from "../test/builders.js";

const TARGETS = ["safetensors-bytes", "safetensors-header", "pytorch-zip", "pytorch-pickle"] as const;
type Target = (typeof TARGETS)[number];
const HANG_MS = 1000;
const KILL_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness: input i of seed s always gets the same generator.

function rng(seed: number, index: number) {
  let a = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  const next = () => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof rng>;

// ---------------------------------------------------------------------------------------------
// Seed corpus

interface Seed {
  name: string;
  bytes: Uint8Array;
  hot: [number, number][];
}

function corpus() {
  const small = writeSafetensors(
    [
      { name: "model.decoder.embed_tokens.weight", dtype: "F32", shape: [2, 3], data: f32ArrayToBytes([1, 2, 3, 4, 5, 6]) },
      { name: "h", dtype: "F16", shape: [3], data: f32ArrayToF16Bytes([0.5, -1, 2]) },
      { name: "b", dtype: "BF16", shape: [1, 1], data: f32ArrayToBf16Bytes([-3]) },
      { name: "ids", dtype: "I64", shape: [2], data: new Uint8Array(16) },
      { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
      { name: "mask", dtype: "BOOL", shape: [4], data: new Uint8Array([1, 0, 1, 1]) },
      { name: "d", dtype: "F64", shape: [1], data: new Uint8Array(8) },
    ],
    { format: "pt" },
  );
  const fixture = fixtureBytes("model.fp16.safetensors");
  const stHot = (b: Uint8Array): [number, number][] => [[0, 8 + new DataView(b.buffer, b.byteOffset).getUint32(0, true)]];

  const halves = (n: number) => f32ArrayToF16Bytes(Array.from({ length: n }, (_, i) => i / 4));
  const pkl = stateDictPickle([
    { name: "a", storage: "0", numel: 10, offset: 4, shape: [2, 3] },
    { name: "tied", storage: "0", numel: 10, shape: [10] },
    { name: "f", storage: "1", numel: 3, shape: [3], type: "FloatStorage" },
    { name: "bf", storage: "2", numel: 2, shape: [1, 2], type: "BFloat16Storage" },
    { name: "ids", storage: "3", numel: 2, shape: [2], type: "LongStorage" },
    { name: "scalar", storage: "4", numel: 1, shape: [] },
  ]);
  const storages = {
    0: halves(10),
    1: f32ArrayToBytes([0.25, 0.5, 0.75]),
    2: f32ArrayToBf16Bytes([-1, 2]),
    3: new Uint8Array(16),
    4: halves(1),
  };
  const zipHot = (b: Uint8Array): [number, number][] => {
    const dv = new DataView(b.buffer, b.byteOffset);
    const cd = dv.getUint32(b.length - 22 + 16, true);
    return [
      [0, Math.min(b.length, 4096)],
      [cd, b.length],
    ];
  };
  const ptSmall = torchZip(pkl, storages);
  const ptDeflated = torchZip(pkl, storages, 6);
  const ptFixture = fixtureBytes("pytorch_model.bin");
  const fixturePkl = unzipSync(ptFixture, { filter: (f) => f.name.endsWith("data.pkl") });

  return {
    safetensors: [
      { name: "small.safetensors", bytes: small, hot: stHot(small) },
      { name: "opt-tiny.fp16.safetensors", bytes: fixture, hot: stHot(fixture) },
    ] as Seed[],
    zips: [
      { name: "small.bin", bytes: ptSmall, hot: zipHot(ptSmall) },
      { name: "small-deflated.bin", bytes: ptDeflated, hot: zipHot(ptDeflated) },
      { name: "opt-tiny.bin", bytes: ptFixture, hot: zipHot(ptFixture) },
    ] as Seed[],
    // For pickle mutations: the pickle and the archive entries it is zipped with.
    pickles: [
      {
        pkl,
        files: {
          "archive/version": new TextEncoder().encode("3\n"),
          ...Object.fromEntries(Object.entries(storages).map(([k, v]) => [`archive/data/${k}`, v])),
        },
        name: "archive",
      },
      {
        pkl: Object.values(fixturePkl)[0],
        files: Object.fromEntries(Object.entries(unzipSync(ptFixture)).filter(([n]) => !n.endsWith("data.pkl"))),
        name: Object.keys(fixturePkl)[0].split("/")[0],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Mutators

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x2d, 0x30, 0x39, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x65, 0x0a];
const INTERESTING_U32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function position(r: Rng, len: number, hot: [number, number][]): number {
  if (len === 0) return 0;
  if (hot.length && r.chance(0.7)) {
    const [a, b] = r.pick(hot);
    return Math.min(len - 1, a + r.int(Math.max(1, Math.min(b, len) - a)));
  }
  return r.int(len);
}

/** One byte-level mutation. */
function mutateBytes(r: Rng, b: Uint8Array, hot: [number, number][]): Uint8Array {
  const p = position(r, b.length, hot);
  switch (r.int(8)) {
    case 0: {
      const o = b.slice();
      o[p] ^= 1 << r.int(8);
      return o;
    } // bit flip
    case 1: {
      const o = b.slice();
      o[p] = r.pick(INTERESTING_BYTES);
      return o;
    }
    case 2: {
      const o = b.slice();
      o[p] = r.int(256);
      return o;
    }
    case 3: {
      // insert 1–16 bytes
      const ins = Uint8Array.from({ length: 1 + r.int(16) }, () => (r.chance(0.5) ? r.pick(INTERESTING_BYTES) : r.int(256)));
      return concat(b.subarray(0, p), ins, b.subarray(p));
    }
    case 4:
      return concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + r.int(16)))); // delete
    case 5:
      return b.slice(0, p); // truncate
    case 6: {
      // splice: copy a chunk elsewhere (overwrite)
      const o = b.slice();
      const from = position(r, b.length, hot),
        n = 1 + r.int(64);
      o.set(b.subarray(from, Math.min(b.length, from + n)).subarray(0, Math.max(0, o.length - p)), p);
      return o;
    }
    default: {
      // a little-endian u32 set to a boundary value
      const o = b.slice();
      if (p + 4 <= o.length) new DataView(o.buffer).setUint32(p, r.pick(INTERESTING_U32), true);
      return o;
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const BOUNDARY: unknown[] = [-1, 0, 1, 7, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e308, 1.5, -0, "8", null, [], {}, true];
const DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "I8", "F8_E4M3", "f32", "Q4", "", "__proto__"];
const NAMES = ["__metadata__", "__proto__", "constructor", "a\nb", "x".repeat(300), "", "model.decoder.embed_tokens.weight"];

/** A header-field mutation: the JSON is edited and re-serialized (with a right or a skewed length). */
function mutateHeader(r: Rng, file: Uint8Array): Uint8Array {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const hlen = dv.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + hlen))) as Record<string, Record<string, unknown>>;
  const data = file.subarray(8 + hlen);
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const a = r.pick(names),
    b = r.pick(names);
  for (let k = 1 + r.int(3); k > 0; k--) {
    switch (r.int(9)) {
      case 0:
        [header[a].data_offsets, header[b].data_offsets] = [header[b].data_offsets, header[a].data_offsets];
        break;
      case 1:
        [header[a].dtype, header[b].dtype] = [header[b].dtype, header[a].dtype];
        break;
      case 2:
        [header[a].shape, header[b].shape] = [header[b].shape, header[a].shape];
        break;
      case 3: {
        // one offset or dim to a boundary value
        const f = r.pick(["data_offsets", "shape"]);
        const arr = Array.isArray(header[a][f]) ? [...(header[a][f] as unknown[])] : [];
        arr[r.int(arr.length + 1)] = r.pick(BOUNDARY);
        header[a][f] = arr;
        break;
      }
      case 4:
        header[a].dtype = r.pick(DTYPES);
        break;
      case 5:
        header[a][r.pick(["dtype", "shape", "data_offsets"])] = r.pick(BOUNDARY);
        break;
      case 6:
        delete header[a][r.pick(["dtype", "shape", "data_offsets"])];
        break;
      case 7:
        header[r.pick(NAMES)] = { ...header[a] };
        break; // a duplicate (overlap) under a hostile name
      default:
        header.__metadata__ = r.pick([
          { k: 1 } as unknown as Record<string, unknown>,
          { k: "v" },
          [] as unknown as Record<string, unknown>,
          { "": "\u0000" },
        ]);
    }
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  const len = r.chance(0.8) ? json.length : Math.max(0, json.length + r.pick([-16, -1, 1, 8, 1 << 20]));
  new DataView(out.buffer).setUint32(0, len, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** A zip directory/header field set to a lie (or, when an earlier mutation broke the zip, a byte mutation). */
function mutateZipField(r: Rng, zip: Uint8Array): Uint8Array {
  const o = zip.slice();
  const dv = new DataView(o.buffer);
  const u16 = (at: number) => (at >= 0 && at + 2 <= o.length ? dv.getUint16(at, true) : -1);
  const u32 = (at: number) => (at >= 0 && at + 4 <= o.length ? dv.getUint32(at, true) : -1);
  let eocd = o.length - 22;
  while (eocd >= 0 && u32(eocd) !== 0x06054b50) eocd--;
  if (eocd < 0) return mutateBytes(r, zip, []);
  const entries: number[] = [];
  for (let p = u32(eocd + 16), i = 0; i < u16(eocd + 10) && p >= 0 && p + 46 <= eocd; i++) {
    entries.push(p);
    p += 46 + u16(p + 28) + u16(p + 30) + u16(p + 32);
  }
  if (entries.length === 0) return mutateBytes(r, zip, []);
  const e = r.pick(entries);
  const local = u32(e + 42);
  const v32 = () => (r.chance(0.3) ? o.length + r.int(64) - 32 : r.pick(INTERESTING_U32)) >>> 0;
  const fields: [number, 2 | 4][] = [
    [eocd + 8, 2],
    [eocd + 10, 2],
    [eocd + 12, 4],
    [eocd + 16, 4], // EOCD counts, size, offset
    [e + 10, 2],
    [e + 20, 4],
    [e + 24, 4],
    [e + 28, 2],
    [e + 30, 2],
    [e + 42, 4], // method, sizes, name/extra len, local offset
    [local + 26, 2],
    [local + 28, 2],
    [local, 4], // local name/extra lengths, signature
  ];
  const [at, w] = r.pick(fields);
  if (at >= 0 && at + w <= o.length) {
    if (w === 2) dv.setUint16(at, r.chance(0.5) ? r.pick([0, 1, 8, 12, 0xffff]) : r.int(65536), true);
    else dv.setUint32(at, v32(), true);
  }
  if (r.chance(0.15) && entries.length > 1) {
    // two entries swap local offsets
    const f = r.pick(entries);
    const t = dv.getUint32(e + 42, true);
    dv.setUint32(e + 42, dv.getUint32(f + 42, true), true);
    dv.setUint32(f + 42, t, true);
  }
  return o;
}

const OPCODE_SNIPPETS: number[][] = [
  [0x28],
  [0x74],
  [0x52],
  [0x62],
  [0x93],
  [0x51],
  [0x2e],
  [0x30],
  [0x31],
  [0x4e],
  [0x29],
  [0x5d],
  [0x7d],
  [0x73],
  [0x75],
  [0x61],
  [0x65],
  [0x71, 0],
  [0x71, 255],
  [0x68, 0],
  [0x68, 200],
  [0x6a, 0xff, 0xff, 0xff, 0xff],
  [0x72, 0xff, 0xff, 0xff, 0xff],
  [0x94],
  [0x4b, 0xff],
  [0x4a, 0xff, 0xff, 0xff, 0xff],
  [0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80],
  [0x8a, 255],
  [0x8b, 0xff, 0xff, 0xff, 0x7f],
  [0x58, 0xff, 0xff, 0xff, 0x7f],
  [0x8d, 0, 0, 0, 0, 0, 0, 0, 1],
  [0x8c, 5, 0x6f, 0x73],
  [0x47, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
  [...new TextEncoder().encode("cos\nsystem\n")],
  [...new TextEncoder().encode("cbuiltins\neval\n")],
  [...new TextEncoder().encode("ctorch\nFloatStorage\n")],
  [...new TextEncoder().encode("ctorch._utils\n_rebuild_tensor_v2\n")],
  [0x80, 5],
  [0x80, 200],
  [0x95, 1, 0, 0, 0, 0, 0, 0, 0],
  [0x32],
  [0x81],
  [0x69],
  [0xff],
  [0x00],
];

function mutatePickle(r: Rng, pkl: Uint8Array): Uint8Array {
  let out = pkl;
  for (let k = 1 + r.int(3); k > 0; k--) {
    if (r.chance(0.4)) {
      const p = r.int(out.length + 1);
      out = concat(out.subarray(0, p), Uint8Array.from(r.pick(OPCODE_SNIPPETS)), out.subarray(p));
    } else if (r.chance(0.3)) {
      // splice a slice of the pickle elsewhere (keeps opcodes plausible)
      const a = r.int(out.length),
        b = Math.min(out.length, a + 1 + r.int(40)),
        c = r.int(out.length + 1);
      out = concat(out.subarray(0, c), out.subarray(a, b), out.subarray(c));
    } else {
      out = mutateBytes(r, out, [[0, out.length]]);
    }
  }
  return out;
}

type Corpus = ReturnType<typeof corpus>;

/** Input `index`: which reader, which seed file, the mutated bytes. */
function makeInput(c: Corpus, seed: number, index: number): { target: Target; base: string; bytes: Uint8Array } {
  const r = rng(seed, index);
  const target = TARGETS[index % TARGETS.length];
  // The fixtures are large (~280 kB): one input in five uses them, the rest the small files.
  const big = r.chance(0.2);
  switch (target) {
    case "safetensors-bytes": {
      const s = c.safetensors[big ? 1 : 0];
      let b = s.bytes;
      for (let k = r.chance(0.5) ? 1 : 2 + r.int(3); k > 0; k--) b = mutateBytes(r, b, s.hot);
      return { target, base: s.name, bytes: b };
    }
    case "safetensors-header": {
      const s = c.safetensors[big ? 1 : 0];
      let b = mutateHeader(r, s.bytes);
      if (r.chance(0.3)) b = mutateBytes(r, b, [[0, Math.min(b.length, 256)]]);
      return { target, base: s.name, bytes: b };
    }
    case "pytorch-zip": {
      const s = c.zips[big ? 2 : r.int(2)];
      let b = s.bytes;
      for (let k = r.chance(0.5) ? 1 : 2 + r.int(2); k > 0; k--) b = r.chance(0.4) ? mutateZipField(r, b) : mutateBytes(r, b, s.hot);
      return { target, base: s.name, bytes: b };
    }
    case "pytorch-pickle": {
      const p = c.pickles[big ? 1 : 0];
      const pkl = mutatePickle(r, p.pkl);
      return { target, base: `${p.name}/data.pkl`, bytes: zipSync({ ...p.files, [`${p.name}/data.pkl`]: pkl }, { level: 0 }) };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running one input

type Outcome = { kind: "accepted" } | { kind: "error"; message: string } | { kind: "crash"; what: string };

function readEverything(open: () => TensorSource): void {
  const src = open();
  for (const t of src.tensors()) {
    const info = src.get(t.name);
    if (!info) throw new Error(`oracle: tensors() lists '${t.name}' but get() does not find it`);
    const raw = src.readRaw(t.name);
    const want = numel(t.shape) * DTYPE_SIZE[t.dtype];
    if (raw.length !== want)
      throw new OracleError(`tensor '${t.name}' has ${raw.length} bytes for shape [${t.shape}] ${t.dtype} (want ${want})`);
    if (t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16") src.readF32(t.name, new Float32Array(numel(t.shape)));
  }
}

class OracleError extends Error {}

function runOne(target: Target, bytes: Uint8Array): Outcome {
  const label = "fuzz.input";
  try {
    readEverything(() => (target.startsWith("safetensors") ? openSafetensors(bytes, label) : openPytorchBin(bytes, label)));
    return { kind: "accepted" };
  } catch (e) {
    if (e instanceof OracleError) return { kind: "crash", what: `accepted but inconsistent: ${e.message}` };
    const clean = e instanceof CheckpointError || (e instanceof Error && e.constructor === Error);
    if (!clean) return { kind: "crash", what: `${(e as Error)?.constructor?.name ?? typeof e}: ${String((e as Error)?.message ?? e)}` };
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(e.message)) {
      return { kind: "crash", what: `message not one inert line (a raw line break or control character): ${JSON.stringify(e.message)}` };
    }
    return { kind: "error", message: e.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Workers and the report

interface Stats {
  inputs: number;
  accepted: number;
  errors: number;
  crashes: number;
  hangs: number;
  slowestMs: number;
  kinds: Record<string, number>; // clean error messages with numbers and names blanked
  crashList: { index: number; target: Target; base: string; what: string; file?: string }[];
}
const emptyStats = (): Stats => ({ inputs: 0, accepted: 0, errors: 0, crashes: 0, hangs: 0, slowestMs: 0, kinds: {}, crashList: [] });

function errorKind(m: string): string {
  return m
    .replace(/^fuzz\.input: /, "")
    .replace(/'[^']*'/g, "'…'")
    .replace(/\d+/g, "N")
    .slice(0, 70);
}

function save(out: string, target: Target, index: number, bytes: Uint8Array): string {
  mkdirSync(out, { recursive: true });
  const f = join(out, `${target}-${index}.bin`);
  writeFileSync(f, bytes);
  return f;
}

function workerMain(): void {
  const { seed, from, to, out, progress } = workerData as {
    seed: number;
    from: number;
    to: number;
    out: string;
    progress: SharedArrayBuffer;
  };
  const cur = new Int32Array(progress);
  const c = corpus();
  const stats: Record<string, Stats> = Object.fromEntries(TARGETS.map((t) => [t, emptyStats()]));
  for (let i = from; i < to; i++) {
    Atomics.store(cur, 0, i);
    const input = makeInput(c, seed, i);
    const t0 = performance.now();
    const o = runOne(input.target, input.bytes);
    const ms = performance.now() - t0;
    const s = stats[input.target];
    s.inputs++;
    s.slowestMs = Math.max(s.slowestMs, ms);
    if (ms > HANG_MS) {
      s.hangs++;
      s.crashList.push({
        index: i,
        target: input.target,
        base: input.base,
        what: `hang: ${ms.toFixed(0)} ms`,
        file: save(out, input.target, i, input.bytes),
      });
    }
    if (o.kind === "accepted") s.accepted++;
    else if (o.kind === "error") {
      s.errors++;
      const k = errorKind(o.message);
      s.kinds[k] = (s.kinds[k] ?? 0) + 1;
    } else {
      s.crashes++;
      s.crashList.push({ index: i, target: input.target, base: input.base, what: o.what, file: save(out, input.target, i, input.bytes) });
    }
    if ((i - from) % 100 === 99) parentPort!.postMessage({ progress: i - from + 1, stats }); // cumulative, in case it is killed later
  }
  parentPort!.postMessage({ done: stats });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: "string", default: "100000" },
      seed: { type: "string", default: "1" },
      workers: { type: "string", default: String(availableParallelism()) },
      out: { type: "string", default: join(tmpdir(), "wasm-lm-fuzz") },
      only: { type: "string" },
    },
  });
  const seed = Number(values.seed);
  const out = values.out!;
  if (values.only !== undefined) {
    const i = Number(values.only);
    const input = makeInput(corpus(), seed, i);
    const f = save(out, input.target, i, input.bytes);
    const o = runOne(input.target, input.bytes);
    console.log(`input ${i} (${input.target}, from ${input.base}, ${input.bytes.length} bytes, saved to ${f}):`, o);
    process.exit(o.kind === "crash" ? 1 : 0);
  }
  const n = Number(values.n);
  const W = Math.max(1, Math.min(Number(values.workers), n));
  const t0 = performance.now();
  const total: Record<string, Stats> = Object.fromEntries(TARGETS.map((t) => [t, emptyStats()]));
  const merge = (s: Record<string, Stats>) => {
    for (const t of TARGETS) {
      const a = total[t],
        b = s[t];
      a.inputs += b.inputs;
      a.accepted += b.accepted;
      a.errors += b.errors;
      a.crashes += b.crashes;
      a.hangs += b.hangs;
      a.slowestMs = Math.max(a.slowestMs, b.slowestMs);
      for (const [k, v] of Object.entries(b.kinds)) a.kinds[k] = (a.kinds[k] ?? 0) + v;
      a.crashList.push(...b.crashList);
    }
  };
  let done = 0;
  let lost = 0;
  const api = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;

  /** Runs [from, to) in a worker; a worker stuck on one input for KILL_MS is killed and the rest resumed. */
  const runRange = (from: number, to: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const progress = new SharedArrayBuffer(4);
      const cur = new Int32Array(progress);
      const w = new Worker(boot, { eval: true, workerData: { seed, from, to, out, progress, worker: true } });
      let last = -1,
        since = performance.now(),
        reported = 0;
      let partial: Record<string, Stats> | undefined;
      const watch = setInterval(() => {
        const i = Atomics.load(cur, 0);
        if (i !== last) {
          last = i;
          since = performance.now();
          return;
        }
        if (performance.now() - since < KILL_MS) return;
        clearInterval(watch);
        void w.terminate();
        if (partial) merge(partial); // what it finished before the last progress report
        const input = makeInput(corpus(), seed, i);
        const s = emptyStats();
        s.inputs = 1;
        s.hangs = 1;
        s.slowestMs = KILL_MS;
        s.crashList.push({
          index: i,
          target: input.target,
          base: input.base,
          what: `hang: killed after ${KILL_MS / 1000} s`,
          file: save(out, input.target, i, input.bytes),
        });
        merge(Object.fromEntries(TARGETS.map((t) => [t, t === input.target ? s : emptyStats()])));
        lost += i - from - reported; // finished after its last report: outcomes unknown
        done += i - from - reported + 1;
        runRange(i + 1, to).then(resolve, reject);
      }, 500);
      w.on("message", (m: { progress?: number; stats?: Record<string, Stats>; done?: Record<string, Stats> }) => {
        if (m.progress) {
          partial = m.stats;
          done += m.progress - reported;
          reported = m.progress;
          process.stderr.write(`\r${done}/${n} inputs, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        }
        if (m.done) {
          clearInterval(watch);
          merge(m.done);
          done += to - from - reported;
          resolve();
        }
      });
      w.on("error", (e) => {
        clearInterval(watch);
        reject(e);
      });
    });

  const per = Math.ceil(n / W);
  await Promise.all(Array.from({ length: W }, (_, k) => runRange(k * per, Math.min(n, (k + 1) * per))));
  const secs = (performance.now() - t0) / 1000;
  process.stderr.write("\n");

  const sum = emptyStats();
  console.log(`fuzz/readers.ts: ${n} inputs, seed ${seed}, ${W} workers, ${secs.toFixed(1)} s\n`);
  console.log("target               inputs   accepted   clean errors   crashes   hangs (>1 s)   slowest");
  for (const t of TARGETS) {
    const s = total[t];
    sum.inputs += s.inputs;
    sum.accepted += s.accepted;
    sum.errors += s.errors;
    sum.crashes += s.crashes;
    sum.hangs += s.hangs;
    sum.slowestMs = Math.max(sum.slowestMs, s.slowestMs);
    console.log(
      `${t.padEnd(20)} ${String(s.inputs).padStart(7)} ${String(s.accepted).padStart(10)} ${String(s.errors).padStart(14)} ` +
        `${String(s.crashes).padStart(9)} ${String(s.hangs).padStart(14)} ${s.slowestMs.toFixed(1).padStart(8)} ms`,
    );
  }
  console.log(
    `${"total".padEnd(20)} ${String(sum.inputs).padStart(7)} ${String(sum.accepted).padStart(10)} ${String(sum.errors).padStart(14)} ` +
      `${String(sum.crashes).padStart(9)} ${String(sum.hangs).padStart(14)} ${sum.slowestMs.toFixed(1).padStart(8)} ms`,
  );

  if (lost) console.log(`(${lost} inputs ran in a killed worker after its last report: not in the table)`);

  const kinds: Record<string, number> = {};
  for (const t of TARGETS) for (const [k, v] of Object.entries(total[t].kinds)) kinds[k] = (kinds[k] ?? 0) + v;
  const top = Object.entries(kinds).sort((a, b) => b[1] - a[1]);
  console.log(`\n${top.length} distinct clean errors; the most frequent:`);
  for (const [k, v] of top.slice(0, 15)) console.log(`  ${String(v).padStart(6)}  ${k}`);

  const crashes = TARGETS.flatMap((t) => total[t].crashList);
  if (crashes.length) {
    console.log(`\n${crashes.length} CRASHES / HANGS (inputs saved; replay one with --seed ${seed} --only <index>):`);
    for (const c of crashes.slice(0, 50)) console.log(`  #${c.index} ${c.target} (from ${c.base}): ${c.what.slice(0, 200)}  [${c.file}]`);
    process.exit(1);
  }
  console.log("\nno crashes, no hangs");
}

if (isMainThread) await main();
else if ((workerData as { worker?: boolean })?.worker) workerMain();
