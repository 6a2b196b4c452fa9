// PyTorch `.bin` checkpoints as torch.save (≥ 1.6) writes them: a zip archive holding
// `<prefix>/data.pkl` (the state dict, pickled) and `<prefix>/data/<key>` (one raw
// little-endian storage per key). The pickle names each tensor's storage, offset, shape and
// strides; the restricted unpickler in pickle.ts reads it without executing anything.

import { type AnyDType, type TensorInfo, type TensorSource, DTYPE_SIZE, isSupportedDType, fail, q, numel, checkDst } from "./types.js";
import { convertToF32 } from "./dtype.js";
import { openZip, crc32, type Crc32, type ZipArchive } from "./zip.js";
import { unpickle, PyGlobal, PyTuple, type Hooks } from "./pickle.js";

/** torch storage classes → element type. Only F32/F16/BF16 can be read as f32. */
const STORAGES: Record<string, AnyDType> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: AnyDType,
  ) {}
}

// Classes rather than plain objects so `instanceof` tells them apart from pickle values.
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: AnyDType,
    readonly numel: number,
  ) {}
}

class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

const ORDERED_DICT = new PyGlobal("collections", "OrderedDict");
const REBUILD_TENSOR_V2 = new PyGlobal("torch._utils", "_rebuild_tensor_v2");
const REBUILD_PARAMETER = new PyGlobal("torch._utils", "_rebuild_parameter");

export class PytorchSource implements TensorSource {
  readonly label: string;
  private readonly zip: ZipArchive;
  private readonly prefix: string;
  private readonly refs: Map<string, TensorRef>;
  private readonly storageCache = new Map<string, Uint8Array>();

  /** Use `openPytorchBin`; the constructor trusts its (already validated) arguments. */
  constructor(zip: ZipArchive, label: string, prefix: string, refs: Map<string, TensorRef>) {
    this.zip = zip;
    this.label = label;
    this.prefix = prefix;
    this.refs = refs;
  }

  tensors(): TensorInfo[] {
    return [...this.refs.keys()].map((n) => this.get(n)!);
  }

  get(name: string): TensorInfo | undefined {
    const r = this.refs.get(name);
    return r && { name, dtype: r.storage.dtype, shape: [...r.shape] };
  }

  readRaw(name: string): Uint8Array {
    const r = this.refs.get(name);
    if (!r) fail(this.label, `no tensor named ${q(name)}`);
    const size = DTYPE_SIZE[r.storage.dtype];
    const bytes = this.storageBytes(r.storage);
    return bytes.subarray(r.offset * size, (r.offset + numel(r.shape)) * size);
  }

  readF32(name: string, dst: Float32Array): void {
    const info = this.get(name);
    if (!info) fail(this.label, `no tensor named ${q(name)}`);
    if (!isSupportedDType(info.dtype)) {
      fail(
        this.label,
        `tensor ${q(name)} has dtype ${info.dtype}, which cannot be read as f32 ` +
          "(supported: FloatStorage, HalfStorage, BFloat16Storage)",
      );
    }
    checkDst(this.label, info, dst);
    convertToF32(info.dtype, this.readRaw(name), dst);
  }

  /** One storage's bytes, cached so tied tensors sharing it inflate (if deflated) once. */
  private storageBytes(s: StorageRef): Uint8Array {
    let b = this.storageCache.get(s.key);
    if (!b) {
      b = this.zip.read(`${this.prefix}/data/${s.key}`);
      this.storageCache.set(s.key, b);
    }
    return b;
  }
}

export interface PytorchBinOptions {
  /**
   * Check every zip entry against the CRC-32 in the zip's directory first (default false: it reads
   * every byte). true uses a table-driven CRC-32 (~0.3 GB/s); pass a faster CRC-32 function
   * instead where there is one (Node's zlib.crc32, ~2 GB/s).
   */
  verifyChecksums?: boolean | Crc32;
}

/** Parses a torch.save zip archive held in memory; storages stay views into it. */
export function openPytorchBin(bytes: Uint8Array, label = "pytorch_model.bin", opts: PytorchBinOptions = {}): PytorchSource {
  if (!(bytes instanceof Uint8Array)) fail(label, "expected a Uint8Array");
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    fail(
      label,
      "legacy torch.save format (PyTorch < 1.6) is not supported; re-save it with a newer PyTorch " + "or convert it to safetensors",
    );
  }
  const zip = openZip(bytes, label);
  if (opts.verifyChecksums) zip.verifyChecksums(typeof opts.verifyChecksums === "function" ? opts.verifyChecksums : crc32);

  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length === 0) fail(label, "no '<name>/data.pkl' entry: not a torch.save archive");
  if (pkls.length > 1) fail(label, `several data.pkl entries (${pkls.map(q).join(", ")})`);
  const prefix = pkls[0].slice(0, -"/data.pkl".length);

  const bo = zip.entries.get(`${prefix}/byteorder`);
  if (bo) {
    const order = new TextDecoder().decode(zip.read(bo.name)).trim();
    if (order !== "little") fail(label, `byteorder is ${q(order)}; only little-endian checkpoints are supported`);
  }

  const root = unpickle(zip.read(pkls[0]), label, torchHooks(label));
  if (!(root instanceof Map)) fail(label, "data.pkl does not hold a dict (state dict expected)");

  const refs = new Map<string, TensorRef>();
  for (const [k, v] of root) {
    if (!isTensorRef(v)) continue; // non-tensor entries (counters, nested metadata) are not weights
    if (typeof k !== "string") fail(label, "state dict has a non-string key");
    checkTensor(label, k, v);
    refs.set(k, v);
  }

  // Storages: every one referenced must exist with the size the pickle claims.
  const seen = new Set<string>();
  for (const [name, r] of refs) {
    const s = r.storage;
    if (seen.has(s.key)) continue;
    seen.add(s.key);
    const entry = zip.entries.get(`${prefix}/data/${s.key}`);
    if (!entry) fail(label, `tensor ${q(name)}: storage ${q(s.key)} is missing from the archive`);
    const want = s.numel * DTYPE_SIZE[s.dtype];
    if (entry.size !== want) {
      fail(
        label,
        `tensor ${q(name)}: storage ${q(s.key)} has ${entry.size} bytes, ` + `expected ${s.numel} × ${DTYPE_SIZE[s.dtype]} = ${want}`,
      );
    }
  }
  return new PytorchSource(zip, label, prefix, refs);
}

/** The allow-list: the only globals, calls and persistent ids a state dict needs. */
function torchHooks(label: string): Hooks {
  const storages = new Map<string, StorageRef>();
  return {
    global(module, name) {
      if (module === "collections" && name === "OrderedDict") return ORDERED_DICT;
      if (module === "torch._utils" && name === "_rebuild_tensor_v2") return REBUILD_TENSOR_V2;
      if (module === "torch._utils" && name === "_rebuild_parameter") return REBUILD_PARAMETER;
      if (module === "torch" && Object.prototype.hasOwnProperty.call(STORAGES, name)) {
        return new StorageType(name, STORAGES[name]);
      }
      fail(label, `pickle references forbidden global ${q(`${module}.${name}`)}`);
    },

    persistentLoad(pid) {
      // ('storage', storage_type, key, location, numel)
      const t = pid instanceof PyTuple ? pid.items : [];
      const [tag, type, key, location, n] = t;
      if (
        t.length !== 5 ||
        tag !== "storage" ||
        !(type instanceof StorageType) ||
        typeof key !== "string" ||
        typeof location !== "string" ||
        !isCount(n)
      ) {
        fail(label, "pickle has an unsupported persistent id (expected ('storage', type, key, location, numel))");
      }
      if (!/^[A-Za-z0-9_.-]+$/.test(key)) fail(label, `storage key ${q(key)} is not a plain name`);
      const old = storages.get(key);
      if (old) {
        if (old.dtype !== type.dtype || old.numel !== n) {
          fail(label, `storage ${q(key)} is declared twice with different types or sizes`);
        }
        return old;
      }
      const s = new StorageRef(key, type.dtype, n);
      storages.set(key, s);
      return s;
    },

    reduce(callable, args) {
      if (callable === ORDERED_DICT) {
        if (args.length !== 0) fail(label, "pickle calls OrderedDict with arguments");
        return new Map();
      }
      if (callable === REBUILD_TENSOR_V2) return rebuildTensor(label, args);
      if (callable === REBUILD_PARAMETER) {
        // _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is its tensor.
        if (args.length !== 3 || !isTensorRef(args[0])) fail(label, "pickle calls _rebuild_parameter with bad arguments");
        return args[0];
      }
      const what =
        callable instanceof StorageType
          ? `torch.${callable.name}`
          : callable instanceof PyGlobal
            ? callable.qualified
            : "a non-callable value";
      fail(label, `pickle calls ${what}, which a state dict never does`);
    },

    build(obj, _state) {
      // torch pickles a state dict's `_metadata` attribute (per-module versions) with BUILD;
      // it does not affect the weights.
      if (obj instanceof Map) return obj;
      fail(label, "pickle BUILD on an object other than a dict");
    },
  };
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
function rebuildTensor(label: string, args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (
    (args.length !== 6 && args.length !== 7) ||
    !isStorageRef(storage) ||
    !isCount(offset) ||
    !(size instanceof PyTuple) ||
    !(stride instanceof PyTuple) ||
    !size.items.every(isCount) ||
    !stride.items.every(Number.isSafeInteger) ||
    size.items.length !== stride.items.length
  ) {
    fail(label, "pickle calls _rebuild_tensor_v2 with bad arguments");
  }
  return new TensorRef(storage, offset, size.items as number[], stride.items as number[]);
}

/** Contiguous row-major layout that fits inside its storage. */
function checkTensor(label: string, name: string, r: TensorRef): void {
  const n = numel(r.shape);
  if (!Number.isSafeInteger(n)) fail(label, `tensor ${q(name)}: shape [${r.shape.join(", ")}] is too large`);
  if (n === 0) return;
  let want = 1;
  for (let i = r.shape.length - 1; i >= 0; i--) {
    // A dimension of size 1 is never stepped over, so its stride does not matter.
    if (r.shape[i] !== 1 && r.stride[i] !== want) {
      fail(
        label,
        `tensor ${q(name)}: non-contiguous strides [${r.stride.join(", ")}] for shape ` +
          `[${r.shape.join(", ")}]; save it after .contiguous()`,
      );
    }
    want *= r.shape[i];
  }
  if (r.offset + n > r.storage.numel) {
    fail(
      label,
      `tensor ${q(name)}: storage ${q(r.storage.key)} has ${r.storage.numel} elements, ` + `tensor needs offset ${r.offset} + ${n}`,
    );
  }
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function isStorageRef(x: unknown): x is StorageRef {
  return x instanceof StorageRef;
}

function isTensorRef(x: unknown): x is TensorRef {
  return x instanceof TensorRef;
}
