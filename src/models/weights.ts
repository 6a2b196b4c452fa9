// One table of weight names and shapes — the family's (./family.ts) — drives loading and
// validation: a missing, extra or mis-shaped tensor fails at load, naming it, never in the middle
// of a forward pass.
//
// Weight matrices are stored in the dtype chosen at load:
//   f32   as in the checkpoint
//   f16   IEEE half floats (half the bytes; expanded inside the kernels)
//   int8  symmetric int8 with one f32 scale per output row and group of G inputs (a quarter of the
//         bytes), quantized at load inside wasm from the checkpoint's values
// Vectors (biases, norms) and the position table stay f32: they are small. GPT-2's Conv1D
// matrices are transposed (and c_attn split into q, k, v) on the way in.
//
// A NaN or ±Inf weight is refused at load, naming the tensor and the element (transformers loads
// it silently; the model then answers NaN logits), and so is an f32 value that f16 cannot hold when
// converting to f16: each tensor is scanned once, where it lands in WebAssembly memory (or in the
// staging region before it is converted), by the matvec kernels — see findNonFinite.
import type { Arena } from "../arena.js";
import { DTYPE_SIZE, numel, type AsyncTensorSource, type TensorInfo, type TensorSource } from "../formats/types.js";
import { convertToF32, f16ToF32 } from "../formats/dtype.js";
import type { KernelExports } from "../wasm.js";
import type { Dims } from "./config.js";
import { fieldShape, LM_HEAD, MATRIX_FIELDS, type Family, type GlobalField, type LayerField, type TensorRef } from "./family.js";

export type WeightDType = "f32" | "f16" | "int8" | "q4";
export const WEIGHT_DTYPES: WeightDType[] = ["f32", "f16", "int8", "q4"];

/** q4: inputs per block (a scale and a minimum each). */
export const Q4_BLOCK = 32;

/** How matrices are stored. */
export interface WeightFormat {
  dtype: WeightDType;
  /** int8 group size along the input dimension (a matrix whose K it does not divide uses K). */
  group: number;
  /** The token embedding's (and tied lm_head's) dtype; default: see embedDType. */
  embed?: WeightDType;
}

export const DEFAULT_INT8_GROUP = 64;

/**
 * A weight matrix (out, in): its dtype, its data, and for int8 its (out, in/G) f32 scales; for q4
 * (quantizeQ4's layout) two 4-bit values per byte, (out, in/2), and per row the in/32 bf16 scales
 * then the in/32 bf16 minimums (w ≈ scale·u + min, u in 0…15).
 */
export interface Mat {
  dtype: WeightDType;
  w: number;
  s: number;
  /** int8 group size used for this matrix (0 otherwise). */
  g: number;
}

/** One decoder layer's weights (pointer 0 = absent). Shapes (out, in), see LayerField. */
export interface LayerWeights {
  attnNormW: number;
  attnNormB: number; // (C)
  q: Mat;
  qB: number; // (H·D, C), (H·D)
  k: Mat;
  kB: number; // (Hkv·D, C), (Hkv·D)
  v: Mat;
  vB: number; // (Hkv·D, C), (Hkv·D)
  o: Mat;
  oB: number; // (C, H·D), (C)
  mlpNormW: number;
  mlpNormB: number; // (C)
  up: Mat;
  upB: number; // (F, C), (F)
  gate: Mat;
  gateB: number; // (F, C), (F): gated MLPs
  down: Mat;
  downB: number; // (C, F), (C)
}

export interface ModelWeights {
  format: WeightFormat;
  embedTokens: Mat; // (V, E), also the lm_head when tied
  embedPositions: number; // (P, C) f32, or 0 (rotary positions)
  projectIn: number; // (C, E) f32, or 0
  projectOut: number; // (E, C) f32, or 0
  finalNormW: number;
  finalNormB: number; // (C) or 0
  lmHead: Mat; // (V, E): embedTokens when tied
  layers: LayerWeights[];
}

const LAYER_FIELDS: LayerField[] = [
  "attnNormW",
  "attnNormB",
  "q",
  "qB",
  "k",
  "kB",
  "v",
  "vB",
  "o",
  "oB",
  "mlpNormW",
  "mlpNormB",
  "up",
  "upB",
  "gate",
  "gateB",
  "down",
  "downB",
];

const pad64 = (n: number) => Math.ceil(n / 64) * 64;
const groupFor = (fmt: WeightFormat, K: number) => (K % fmt.group === 0 ? fmt.group : K);

/** Bytes a (N, K) matrix takes in a format (with 64-byte alignment padding). */
export function matBytes(fmt: WeightFormat, N: number, K: number): number {
  switch (fmt.dtype) {
    case "f32":
      return pad64(N * K * 4);
    case "f16":
      return pad64(N * K * 2);
    case "int8":
      return pad64(N * K) + pad64(N * (K / groupFor(fmt, K)) * 4);
    case "q4":
      return K % Q4_BLOCK === 0 ? pad64((N * K) / 2) + pad64(N * (K / Q4_BLOCK) * 4) : matBytes({ ...fmt, dtype: "int8" }, N, K);
  }
}

/** Bytes per row of a matrix held as m (K inputs a row): its values and its scales. */
export function matRowBytes(m: Pick<Mat, "dtype" | "g">, K: number): { w: number; s: number } {
  switch (m.dtype) {
    case "f32":
      return { w: K * 4, s: 0 };
    case "f16":
      return { w: K * 2, s: 0 };
    case "int8":
      return { w: K, s: (K / m.g) * 4 };
    case "q4":
      return { w: K / 2, s: (K / Q4_BLOCK) * 4 };
  }
}

/** Bytes of one decoder layer's weights. */
export function layerBytes(family: Family, d: Dims, fmt: WeightFormat = F32): number {
  return family.layer(d, 0).reduce((a, r) => {
    const [N, K] = fieldShape(r);
    return a + (MATRIX_FIELDS.has(r.field) ? matBytes(fmt, N, K) : pad64(N * 4));
  }, 0);
}

export const F32: WeightFormat = { dtype: "f32", group: DEFAULT_INT8_GROUP };

/**
 * The token embedding (which is also the tied lm_head) stays f16 by default when layers are int8:
 * the logits are read straight off it, and int8 there cost the tiny fixture most of its greedy
 * agreement with f32 (see the closing note of the speed issue for the figures). `fmt.embed`
 * chooses otherwise (int8 halves the largest tensor again: for an edge runtime's memory).
 */
export const embedDType = (fmt: WeightFormat): WeightDType => fmt.embed ?? (fmt.dtype === "int8" || fmt.dtype === "q4" ? "f16" : fmt.dtype);

/** Bytes of the model's weights in a format, with `residentLayers` layers held at once. */
export function weightBytes(family: Family, d: Dims, fmt: WeightFormat = F32, residentLayers = d.L, residentEmbeddings = true): number {
  const embed = residentEmbeddings ? matBytes({ ...fmt, dtype: embedDType(fmt) }, d.V, d.E) : 0;
  let n = embed;
  if (residentEmbeddings) n += pad64(d.P * d.C * 4);
  if (d.project) n += 2 * pad64(d.C * d.E * 4);
  n += 2 * pad64(d.C * 4);
  n += layerBytes(family, d, fmt) * residentLayers;
  if (!d.tied) n += embed;
  return n;
}

export class CheckpointNames {
  readonly prefix: string;
  readonly hasLmHead: boolean;
  /** Set when the file holds int8 matrices (written by wasm-lm quantize): their group size. */
  readonly int8Group: number = 0;
  /** The file's token embedding (and lm_head) is quantized: quantize --embed-dtype int8 or q4. */
  readonly quantizedEmbed: "int8" | "q4" | null = null;
  /** The file holds q4 matrices (written by wasm-lm quantize --dtype q4). */
  readonly q4: boolean = false;
  private readonly globalRefs: Map<GlobalField, TensorRef<GlobalField>>;

  /**
   * Maps the family's names to the checkpoint's: finds the prefix, checks that every expected
   * tensor exists with the expected shape and that nothing unexpected is there.
   */
  constructor(
    src: Pick<TensorSource, "tensors" | "get">,
    readonly family: Family,
    d: Dims,
    label: string,
  ) {
    const names = src.tensors().map((t) => t.name);
    const globals = family.globals(d);
    this.globalRefs = new Map(globals.map((r) => [r.field, r]));
    const embed = this.globalRefs.get("embedTokens")!.name;
    const prefix = family.prefixes.find((p) => names.some((n) => n === `${p}${embed}`));
    if (prefix === undefined) {
      throw new Error(
        `${label}: no ${family.prefixes.map((p) => `'${p}${embed}'`).join(" or ")}: ` +
          `not an ${family.title} checkpoint (first tensors: ${names.slice(0, 3).join(", ") || "none"})`,
      );
    }
    this.prefix = prefix;
    this.hasLmHead = names.includes(LM_HEAD);
    if (!d.tied && !this.hasLmHead) throw new Error(`${label}: missing tensor '${LM_HEAD}' (tie_word_embeddings is false)`);

    // Checkpoint name → shape; the matrices that a file written by wasm-lm quantize may hold as I8.
    const expected = new Map<string, number[]>();
    const quantizable = new Set<string>();
    const add = (r: TensorRef<string>) => {
      expected.set(this.full(r.name), r.shape);
      if ((MATRIX_FIELDS.has(r.field as LayerField) && !r.conv) || r.field === "embedTokens") quantizable.add(this.full(r.name));
    };
    globals.forEach(add);
    for (let i = 0; i < d.L; i++) family.layer(d, i).forEach(add);
    if (this.hasLmHead) {
      expected.set(LM_HEAD, [d.V, d.E]);
      quantizable.add(LM_HEAD);
    }

    for (const [name, shape] of expected) {
      const info = src.get(name);
      if (!info) throw new Error(`${label}: missing tensor '${name}' (expected shape [${shape}])`);
      if (info.dtype === "U8" && quantizable.has(name)) {
        // A q4 matrix: (N, K/2) bytes of two 4-bit values, and (N, 2·K/32) BF16 scales and minimums.
        const [N, K] = shape;
        if (K % Q4_BLOCK !== 0 || info.shape.length !== 2 || info.shape[0] !== N || info.shape[1] !== K / 2) {
          throw new Error(
            `${label}: q4 tensor '${name}' has shape [${info.shape}], config.json implies [${N}, ${K / 2}] (two 4-bit values a byte)`,
          );
        }
        const scale = src.get(`${name}_scale`);
        if (!scale || scale.dtype !== "BF16" || scale.shape.length !== 2 || scale.shape[0] !== N || scale.shape[1] !== (2 * K) / Q4_BLOCK) {
          throw new Error(
            `${label}: q4 tensor '${name}' needs '${name}_scale' BF16 of shape [${N}, ${(2 * K) / Q4_BLOCK}], got ${scale ? `${scale.dtype} [${scale.shape}]` : "none"}`,
          );
        }
        if (name === LM_HEAD || name === this.full(embed)) (this as { quantizedEmbed: string }).quantizedEmbed = "q4";
        else (this as { q4: boolean }).q4 = true;
        expected.set(`${name}_scale`, scale.shape);
        continue;
      }
      if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
        throw new Error(`${label}: tensor '${name}' has shape [${info.shape}], config.json implies [${shape}]`);
      }
      if (info.dtype === "I8") {
        // An int8 matrix comes with its scales: (N, K / group), one group size for the whole file.
        if (!quantizable.has(name))
          throw new Error(`${label}: tensor '${name}' is I8, but only layer matrices and the token embedding may be quantized`);
        if (name === LM_HEAD || name === this.full(embed)) (this as { quantizedEmbed: string }).quantizedEmbed = "int8";
        const scale = src.get(`${name}_scale`);
        if (!scale) throw new Error(`${label}: int8 tensor '${name}' has no '${name}_scale'`);
        const [N, K] = shape;
        const g =
          scale.shape.length === 2 && scale.shape[0] === N && scale.shape[1] > 0 && K % scale.shape[1] === 0 ? K / scale.shape[1] : 0;
        if (!g || scale.dtype !== "F32")
          throw new Error(`${label}: '${name}_scale' must be F32 of shape [${N}, ${K}/group], got ${scale.dtype} [${scale.shape}]`);
        // One group size for the file (a matrix whose K it does not divide has one scale per row).
        const group = this.int8Group || g;
        if (g !== group && !(K % group !== 0 && g === K)) {
          throw new Error(`${label}: '${name}_scale' implies int8 group ${g}, other matrices use ${group}`);
        }
        (this as { int8Group: number }).int8Group = group;
        expected.set(`${name}_scale`, scale.shape);
      } else if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") {
        throw new Error(
          `${label}: tensor '${name}' has dtype ${info.dtype} (expected F32, F16, BF16, or I8 / U8 for quantized layer matrices)`,
        );
      }
    }
    for (const name of names) {
      if (!expected.has(name) && !family.ignored?.test(name))
        throw new Error(`${label}: unexpected tensor '${name}' (not part of this ${family.title} config)`);
    }
  }

  /** The checkpoint's name of a family name (the prefix added; lm_head.weight is top-level). */
  full(name: string): string {
    return name === LM_HEAD ? name : this.prefix + name;
  }

  /** The checkpoint's name of a global field's tensor. */
  global(field: GlobalField): string {
    const r = this.globalRefs.get(field);
    if (!r) throw new Error(`wasm-lm: this ${this.family.name} model has no ${field} (a wasm-lm bug)`);
    return this.full(r.name);
  }
}

/** A source that can produce any element range of a tensor as f32 (e.g. synthetic weights). */
interface RangeSource extends TensorSource {
  readF32Range?(name: string, start: number, dst: Float32Array): void;
}

/** Makes elements [start, start + dst.length) of a matrix field's (out, in) values as f32. */
type Values = (start: number, dst: Float32Array) => void;

/**
 * The synchronous view the loader reads through when the checkpoint is an AsyncTensorSource: the
 * tensors (or the rows of one) fetched just before they are copied, served from memory.
 */
class StagedSource implements TensorSource {
  private staged = new Map<string, Uint8Array>();
  constructor(
    readonly remote: AsyncTensorSource,
    private readonly label: string,
  ) {}
  tensors(): TensorInfo[] {
    return this.remote.tensors();
  }
  get(name: string): TensorInfo | undefined {
    return this.remote.get(name);
  }
  /** Serve these bytes (name → raw bytes, or the bytes of the rows being filled). */
  hold(bytes: Map<string, Uint8Array>): void {
    this.staged = bytes;
  }
  readRaw(name: string): Uint8Array {
    const b = this.staged.get(name);
    if (!b) throw new Error(`${this.label}: tensor '${name}' was read before it was fetched (a wasm-lm bug)`);
    return b;
  }
  readF32(name: string, dst: Float32Array): void {
    convertToF32(this.get(name)!.dtype as "F32" | "F16" | "BF16", this.readRaw(name), dst);
  }
}

/** Rows converted per step through the loader's f32 staging buffer. */
const STAGE_BYTES = 4 << 20;
/** Bytes written between two NaN/Inf scans: what fits a core's L2 with room to spare. */
const SCAN_BYTES = 256 << 10;
/** Bytes of a large tensor fetched per read from an AsyncTensorSource. */
const FETCH_BYTES = 8 << 20;

/**
 * Copies checkpoint tensors into the arena in the chosen format. Conversions go through one small
 * f32 staging region of the arena, so no second copy of a whole tensor is ever made (GPT-2's
 * Conv1D matrices excepted: one is transposed in JS memory at a time); tensors of an
 * AsyncTensorSource are fetched a layer, or a few MB of rows, at a time.
 */
export class WeightLoader {
  private stagePtr = 0;
  readonly src: TensorSource;
  /** The checkpoint when it is read asynchronously (src is then its staged view). */
  readonly remote: AsyncTensorSource | null;

  constructor(
    readonly arena: Arena,
    readonly k: KernelExports,
    source: TensorSource | AsyncTensorSource,
    readonly names: CheckpointNames,
    readonly d: Dims,
    readonly fmt: WeightFormat,
    readonly label = "checkpoint",
  ) {
    const async = typeof (source as AsyncTensorSource).readRawMany === "function";
    this.remote = async ? (source as AsyncTensorSource) : null;
    this.src = async ? new StagedSource(source as AsyncTensorSource, label) : (source as TensorSource);
  }

  get family(): Family {
    return this.names.family;
  }

  /** The f32 staging region, made on first use (a file already in the target dtype needs none). */
  stage(): number {
    if (!this.stagePtr) this.stagePtr = this.arena.alloc(STAGE_BYTES);
    return this.stagePtr;
  }

  allocMat(N: number, K: number, dtype = this.fmt.dtype): Mat {
    const a = this.arena;
    switch (dtype) {
      case "f32":
        return { dtype, w: a.alloc(N * K * 4), s: 0, g: 0 };
      case "f16":
        return { dtype, w: a.alloc(N * K * 2), s: 0, g: 0 };
      case "int8": {
        const g = groupFor(this.fmt, K);
        return { dtype, w: a.alloc(N * K), s: a.alloc(N * (K / g) * 4), g };
      }
      case "q4":
        // The kernels read whole blocks of 32 inputs: other widths (LLaMA-tiny's 176) stay int8.
        if (K % Q4_BLOCK !== 0) return this.allocMat(N, K, "int8");
        return { dtype, w: a.alloc((N * K) / 2), s: a.alloc(N * (K / Q4_BLOCK) * 4), g: Q4_BLOCK };
    }
  }

  /** A global vector (or small f32 matrix) into fresh memory. */
  private async vector(field: GlobalField, n: number): Promise<number> {
    const ptr = this.arena.alloc(n * 4);
    const full = this.names.global(field);
    if (this.remote) (this.src as StagedSource).hold(new Map([[full, await this.remote.readRawAsync(full)]]));
    this.src.readF32(full, this.arena.f32(ptr, n));
    this.checkFinite(full, ptr, n, "f32", this.at(full, 0));
    return ptr;
  }

  /** A (N, K) table (the token embedding, an untied lm_head) by its checkpoint name. */
  private async table(full: string, N: number, K: number, dtype: WeightDType): Promise<Mat> {
    const m = this.allocMat(N, K, dtype);
    if (!this.remote) {
      this.fillMat(m, full, N, K);
      return m;
    }
    // A few MB of rows per read: the tensor is never whole outside WebAssembly memory.
    const { rb: rowBytes, sb } = this.tableRowBytes(full);
    const rows = Math.max(1, Math.floor(FETCH_BYTES / rowBytes));
    let buf: Uint8Array = new Uint8Array(Math.min(rows, N) * rowBytes); // reused by every read (see fetchLayer)
    for (let r0 = 0; r0 < N; r0 += rows) {
      const n = Math.min(rows, N - r0);
      const raw = await this.remote.readRawAsync(full, r0 * rowBytes, n * rowBytes, buf);
      buf = sameMemory(raw, buf);
      const scale = sb ? await this.remote.readRawAsync(`${full}_scale`, r0 * sb, n * sb) : null;
      this.fillRows(m, full, K, r0, n, raw, scale, undefined, { row: r0 });
    }
    return m;
  }

  /** Read the (N, K) tensor `full` (a checkpoint name) into an allocated matrix. */
  fillMat(m: Mat, full: string, N: number, K: number, values?: Values, scan: Scan = { row: 0 }): void {
    const src = this.src as RangeSource;
    const ranged = !values && typeof src.readF32Range === "function";
    const raw = values || ranged ? null : this.src.readRaw(full);
    const scale = isQuantized(this.src.get(full)!.dtype) ? this.src.readRaw(`${full}_scale`) : null;
    this.fillRows(m, full, K, 0, N, raw, scale, values ?? (ranged ? (start, dst) => src.readF32Range!(full, start, dst) : undefined), scan);
  }

  /**
   * Rows [r0, r0 + n) of the matrix `full` from their raw bytes in the file's dtype — or, with raw
   * null, from `values` — and for an int8 file the rows' scales.
   */
  private fillRows(
    m: Mat,
    full: string,
    K: number,
    r0: number,
    n: number,
    raw: Uint8Array | null,
    scale: Uint8Array | null,
    values: Values | undefined,
    scan: Scan,
  ): void {
    const a = this.arena;
    const fileDType = this.src.get(full)!.dtype;
    // Where element e (counted from row r0) is in the checkpoint, for the NaN/Inf message.
    const where = (e0: number) => (i: number) => {
      if (scan?.row === undefined) return "";
      const e = scan.row * K + e0 + i;
      return scan.col === undefined ? this.at(full, 0)(e) : ` at [${e % K}, ${scan.col + Math.floor(e / K)}]`;
    };
    // Elements [0, count) written `esize` bytes each at ptr by write(e0, e1) a piece at a time, each
    // piece scanned (from element `first` on) while it is still in cache: a second pass over the
    // whole tensor from memory would cost as much as the copy itself.
    const pieces = (count: number, esize: number, ptr: number, kind: ScanKind, first: number, write: (e0: number, e1: number) => void) => {
      const step = SCAN_BYTES / esize;
      for (let e0 = 0; e0 < count; e0 += step) {
        const e1 = Math.min(count, e0 + step);
        write(e0, e1);
        if (scan) this.checkFinite(full, ptr + e0 * esize, e1 - e0, kind, where(first + e0));
      }
    };
    if (fileDType === "U8") {
      // Saved by wasm-lm quantize --dtype q4: the packed rows and their scales as they are.
      if (m.dtype !== "q4") throw new Error(`${full}: the checkpoint holds it as q4; load it with dtype q4`);
      const rb = K / 2;
      const sb = (K / Q4_BLOCK) * 4;
      a.u8(m.w + r0 * rb, n * rb).set(raw!);
      a.u8(m.s + r0 * sb, n * sb).set(scale!);
      return;
    }
    if (fileDType === "I8") {
      // Saved by wasm-lm quantize: copy the int8 rows and their scales as they are.
      if (m.dtype !== "int8") throw new Error(`${full}: the checkpoint holds it as int8; load it with dtype int8`);
      const G = K / m.g;
      a.u8(m.w + r0 * K, n * K).set(raw!);
      a.u8(m.s + r0 * G * 4, n * G * 4).set(scale!);
      if (scan)
        this.checkFinite(
          `${full}_scale`,
          m.s + r0 * G * 4,
          n * G,
          "f32",
          scan.row === undefined ? () => "" : this.at(`${full}_scale`, scan.row * G),
        );
      return;
    }
    const dt = fileDType as "F32" | "F16" | "BF16";
    const esize = DTYPE_SIZE[dt];
    if (raw && ((m.dtype === "f32" && dt === "F32") || (m.dtype === "f16" && dt === "F16"))) {
      // Already in the target dtype: copied as it is.
      const ptr = m.w + r0 * K * esize;
      pieces(n * K, esize, ptr, m.dtype, 0, (e0, e1) =>
        a.u8(ptr + e0 * esize, (e1 - e0) * esize).set(raw.subarray(e0 * esize, e1 * esize)),
      );
      return;
    }
    if (m.dtype === "f32") {
      const ptr = m.w + r0 * K * 4;
      pieces(n * K, 4, ptr, "f32", 0, (e0, e1) => {
        const dst = a.f32(ptr + e0 * 4, e1 - e0);
        if (values) values(r0 * K + e0, dst);
        else convertToF32(dt, raw!.subarray(e0 * esize, e1 * esize), dst);
      });
      return;
    }
    // To f16 or int8 through the f32 staging region, a few rows at a time.
    const stage = this.stage();
    const step = Math.max(1, Math.floor(STAGE_BYTES / (K * 4)));
    for (let j = 0; j < n; j += step) {
      const c = Math.min(step, n - j);
      const r = r0 + j;
      // Scanned before converting: quantizeI8 turns a NaN's group into zeros without a trace.
      pieces(c * K, 4, stage, m.dtype === "f16" ? "f32→f16" : "f32", j * K, (e0, e1) => {
        const f = a.f32(stage + e0 * 4, e1 - e0);
        if (values) values(r * K + e0, f);
        else convertToF32(dt, raw!.subarray((j * K + e0) * esize, (j * K + e1) * esize), f);
      });
      if (m.dtype === "f16") this.k.f32ToF16Rows(m.w + r * K * 2, stage, c * K);
      else if (m.dtype === "q4") this.k.quantizeQ4(m.w + (r * K) / 2, m.s + r * (K / Q4_BLOCK) * 4, stage, c, K);
      else this.k.quantizeI8(m.w + r * K, m.s + r * (K / m.g) * 4, stage, c, K, m.g);
    }
  }

  /** Layers (fillLayer) and rows of streamed tables (fillTableRows) already scanned for NaN/Inf. */
  private scannedLayers = new Set<number>();
  private scannedRows = new Map<string, Uint8Array>();

  /** " at [r, c]" of element offset + i of the tensor `full` (a checkpoint name), for messages. */
  private at(full: string, offset: number): (i: number) => string {
    const shape = this.src.get(full)?.shape ?? [];
    return (i) => {
      const e = offset + i;
      return shape.length === 2 ? ` at [${Math.floor(e / shape[1])}, ${e % shape[1]}]` : ` at [${e}]`;
    };
  }

  /**
   * Refuse a NaN or ±Inf among the n values at ptr (of the tensor `full`; `at(i)` says where value
   * i is in it) — or for "f32→f16", a value f16 cannot hold — in one line naming the tensor.
   */
  private checkFinite(full: string, ptr: number, n: number, kind: ScanKind, at: (i: number) => string): void {
    const i = this.findNonFinite(ptr, n, kind);
    if (i < 0) return;
    const x = kind === "f16" ? f16ToF32(this.arena.u16(ptr + 2 * i, 1)[0]) : this.arena.f32(ptr + 4 * i, 1)[0];
    if (Number.isFinite(x)) {
      throw new Error(`${this.label}: tensor '${full}' holds ${x}${at(i)}, beyond f16's range (±65504): load it with dtype f32`);
    }
    throw new Error(
      `${this.label}: tensor '${full}' holds ${x}${at(i)}: a non-finite weight makes the model's outputs NaN (the checkpoint is damaged)`,
    );
  }

  /** Probe vectors (zeros; PROBE_SCALE) of PROBE_K f32 and PROBE_ROWS outputs; made by all(). */
  private probePtr = 0;
  private probe(): number {
    if (!this.probePtr) {
      this.probePtr = this.arena.alloc((2 * PROBE_K + PROBE_ROWS) * 4);
      this.arena.f32(this.probePtr, PROBE_K).fill(0);
      this.arena.f32(this.probePtr + PROBE_K * 4, PROBE_K).fill(PROBE_SCALE);
    }
    return this.probePtr;
  }

  /**
   * Index of the first bad value among n at ptr (f32, or f16 bit patterns), or -1. The data, seen
   * as rows of PROBE_K, goes through the SIMD matvec: y = W·x is finite for a row exactly when the
   * row is, with x = 0 for f32 (NaN·0 = Inf·0 = NaN). For f16 and f32→f16, x = PROBE_SCALE: the f16
   * kernel decodes a half with exponent 31 (Inf/NaN) as ≥ 65536, every finite half as ≤ 65504, and
   * an f32 that rounds to f16's Inf is ≥ 65520 — all of those, times PROBE_SCALE, round to Inf in
   * f32; a finite half times it does not. A row the matvec flags is then searched in JS
   * (a sum that overflowed without any bad value is searched in vain, and passes). ~12 GB/s for
   * f32 here against ~2 GB/s for the plainest JS loop; the f16 kernel ~3 GB/s.
   */
  private findNonFinite(ptr: number, n: number, kind: ScanKind): number {
    const p = this.probe();
    const x = kind === "f32" ? p : p + PROBE_K * 4;
    const y = p + 2 * PROBE_K * 4;
    const esize = kind === "f16" ? 2 : 4;
    const rows = Math.floor(n / PROBE_K);
    for (let r0 = 0; r0 < rows; r0 += PROBE_ROWS) {
      const m = Math.min(PROBE_ROWS, rows - r0);
      const w = ptr + r0 * PROBE_K * esize;
      if (kind === "f16") this.k.linearF16(y, x, w, 0, 1, PROBE_K, m, 0, m, 0);
      else this.k.linear(y, x, w, 0, 1, PROBE_K, m, 0, m);
      const ys = this.arena.f32(y, m);
      for (let i = 0; i < m; i++) {
        if (ys[i] - ys[i] === 0) continue;
        const at = this.searchNonFinite(ptr, (r0 + i) * PROBE_K, (r0 + i + 1) * PROBE_K, kind);
        if (at >= 0) return at;
      }
    }
    return this.searchNonFinite(ptr, rows * PROBE_K, n, kind);
  }

  /** findNonFinite's search, one value at a time, of values [from, to) at ptr. */
  private searchNonFinite(ptr: number, from: number, to: number, kind: ScanKind): number {
    if (from >= to) return -1;
    if (kind === "f16") {
      const h = this.arena.u16(ptr, to);
      for (let i = from; i < to; i++) if ((h[i] & 0x7c00) === 0x7c00) return i;
      return -1;
    }
    const f = this.arena.f32(ptr, to);
    const limit = kind === "f32" ? Infinity : F16_INF;
    for (let i = from; i < to; i++) if (!(Math.abs(f[i]) < limit)) return i;
    return -1;
  }

  /** Room for one decoder layer (a slot that layers can be streamed through). */
  allocLayer(): LayerWeights {
    const w = {} as Record<LayerField, number | Mat>;
    for (const f of LAYER_FIELDS) w[f] = MATRIX_FIELDS.has(f) ? { dtype: this.fmt.dtype, w: 0, s: 0, g: 0 } : 0;
    for (const r of this.family.layer(this.d, 0)) {
      const shape = fieldShape(r);
      w[r.field] = MATRIX_FIELDS.has(r.field) ? this.allocMat(shape[0], shape[1]) : this.arena.alloc(numel(shape) * 4);
    }
    return w as unknown as LayerWeights;
  }

  /** Checkpoint names of decoder layer i's tensors (with the scales of int8 ones), each once. */
  layerFiles(i: number): string[] {
    const out = new Set<string>();
    for (const r of this.family.layer(this.d, i)) {
      const full = this.names.full(r.name);
      out.add(full);
      if (isQuantized(this.src.get(full)!.dtype)) out.add(`${full}_scale`);
    }
    return [...out];
  }

  /**
   * Two buffers that fetched layers land in by turns: the layer being copied into wasm and the next
   * one arriving. Reused for every pass, so streaming leaves no garbage for the collector.
   */
  private layerBuffers: Uint8Array[] = [];
  private turn = 0;

  /** Decoder layer i's bytes from an AsyncTensorSource, in as few reads as the file allows. */
  async fetchLayer(i: number): Promise<Map<string, Uint8Array>> {
    if (!this.remote) throw new Error("wasm-lm: fetchLayer needs an AsyncTensorSource");
    const names = this.layerFiles(i);
    const bytes = names.reduce((a, n) => a + numel(this.src.get(n)!.shape) * DTYPE_SIZE[this.src.get(n)!.dtype], 0);
    const [k, buf] = this.nextBuffer(bytes + (64 << 10)); // + the gaps a merged read may span
    const out = await this.remote.readRawMany(names, buf);
    const first = out.values().next().value;
    if (first) this.layerBuffers[k] = sameMemory(first, buf);
    return out;
  }

  /**
   * The buffer whose turn it is, at least `bytes` long. A reader that fills it through a BYOB
   * stream hands it back as a new ArrayBuffer (the old one detached, length 0): the callers keep
   * whichever the bytes are in, and one lost to a failed read is remade here.
   */
  private nextBuffer(bytes: number): [number, Uint8Array] {
    const k = (this.turn ^= 1);
    let buf = this.layerBuffers[k];
    if (!buf || buf.byteLength < bytes) buf = this.layerBuffers[k] = new Uint8Array(Math.max(bytes, buf?.byteLength ?? 0));
    return [k, buf];
  }

  /** Read decoder layer i's tensors into a slot (from `fetched`: its bytes from fetchLayer). */
  fillLayer(i: number, slot: LayerWeights, fetched?: Map<string, Uint8Array>): void {
    if (this.remote && !fetched) throw new Error(`wasm-lm: layer ${i} must be fetched first (the checkpoint is read asynchronously)`);
    if (fetched) (this.src as StagedSource).hold(fetched);
    // A Conv1D tensor read whole as f32 once for all the fields packed from it (c_attn: q, k, v).
    const whole = new Map<string, Float32Array>();
    const f32Of = (full: string) => {
      let t = whole.get(full);
      if (!t) {
        t = new Float32Array(numel(this.src.get(full)!.shape));
        this.src.readF32(full, t);
        whole.set(full, t);
      }
      return t;
    };
    // A streamed layer is copied again on every pass: scan it the first time only.
    const scan = !this.scannedLayers.has(i);
    try {
      for (const r of this.family.layer(this.d, i)) {
        const full = this.names.full(r.name);
        const shape = fieldShape(r);
        const dst = slot[r.field];
        if (typeof dst !== "number") {
          const values = r.conv ? convValues(f32Of(full), r.shape[1], r.conv.col, shape[1]) : undefined;
          this.fillMat(dst, full, shape[0], shape[1], values, scan ? { row: 0, col: r.conv?.col } : null);
          continue;
        }
        const n = r.conv ? r.conv.n : numel(shape);
        if (r.conv) this.arena.f32(dst, n).set(f32Of(full).subarray(r.conv.col, r.conv.col + n));
        else this.src.readF32(full, this.arena.f32(dst, n));
        if (scan) this.checkFinite(full, dst, n, "f32", this.at(full, r.conv?.col ?? 0));
      }
      this.scannedLayers.add(i);
    } finally {
      if (fetched) (this.src as StagedSource).hold(new Map());
    }
  }

  /** The lm_head's checkpoint name (the token embedding when tied). */
  get headName(): string {
    return this.d.tied ? this.names.global("embedTokens") : LM_HEAD;
  }

  /**
   * Bytes per row of a (rows, K) table in the file — the token embedding or lm_head — and of its
   * scales (an I8 file's F32 scales, a q4 file's BF16 scales and minimums; 0 for float files).
   */
  tableRowBytes(full: string): { rb: number; sb: number } {
    const info = this.src.get(full)!;
    const scale = isQuantized(info.dtype) ? this.src.get(`${full}_scale`)! : null;
    return { rb: info.shape[1] * DTYPE_SIZE[info.dtype], sb: scale ? scale.shape[1] * DTYPE_SIZE[scale.dtype] : 0 };
  }

  /**
   * Rows [r0, r0 + n) of a (rows, E) table (by checkpoint name: the token embedding or lm_head)
   * from an AsyncTensorSource, with their int8 scales, in the fetch buffers layers use by turns.
   */
  async fetchRows(full: string, r0: number, n: number): Promise<RowBytes> {
    const { rb: rowBytes, sb: sRow } = this.tableRowBytes(full);
    const int8 = sRow > 0; // the rows come with scales (an I8 or q4 file)
    const w = n * rowBytes;
    let [k, buf] = this.nextBuffer(w + n * sRow);
    // Rows, then their scales, side by side in the buffer; each read may move it (see sameMemory).
    buf = settle(await this.remote!.readRawAsync(full, r0 * rowBytes, w, buf), buf, 0);
    if (int8) buf = settle(await this.remote!.readRawAsync(`${full}_scale`, r0 * sRow, n * sRow, buf.subarray(w)), buf, w);
    this.layerBuffers[k] = buf;
    return { raw: buf.subarray(0, w), scale: int8 ? buf.subarray(w, w + n * sRow) : null, row: r0 };
  }

  /** Rows of a (rows, K) table (by checkpoint name), fetched by fetchRows, into matrix m from its row `at`. */
  fillTableRows(m: Mat, full: string, at: number, n: number, rows: RowBytes): void {
    // Rows fetched by fetchRows say where they are from: each is scanned once (the streamed
    // lm_head is read whole on every pass). Gathered embedding rows (a few KB) are scanned each time.
    let scan: Scan = {};
    if (rows.row !== undefined) {
      let seen = this.scannedRows.get(full);
      if (!seen) this.scannedRows.set(full, (seen = new Uint8Array(this.src.get(full)!.shape[0])));
      const these = seen.subarray(rows.row, rows.row + n);
      scan = these.every((x) => x === 1) ? null : { row: rows.row };
    }
    const info = this.src.get(full)!;
    // A q4 file's rows hold two inputs a byte.
    const K = info.shape[1] * (info.dtype === "U8" ? 2 : 1);
    this.fillRows(m, full, K, at, n, rows.raw, rows.scale, undefined, scan);
    if (rows.row !== undefined) this.scannedRows.get(full)!.fill(1, rows.row, rows.row + n);
  }

  /**
   * Load the weights (progress: bytes done / total). With residentLayers false only the
   * embeddings, norms and heads are loaded and `layers` is empty: the model then streams layers
   * through one slot.
   */
  async all(onProgress?: (done: number, total: number) => void, residentLayers = true, residentEmbeddings = true): Promise<ModelWeights> {
    const d = this.d;
    const total = weightBytes(this.family, d, this.fmt, residentLayers ? d.L : 0, residentEmbeddings);
    this.arena.reserve(total + 64 * 64 + (2 * PROBE_K + PROBE_ROWS) * 4); // grow memory once
    this.probe(); // made now: streamed weights are scanned during a pass, when the arena cannot grow
    let done = 0;
    const tick = (bytes: number) => onProgress?.((done += bytes), total);
    const embedFmt = { ...this.fmt, dtype: embedDType(this.fmt) };
    // Not resident: a placeholder (w = 0) naming the dtype; the model reads rows as it needs them.
    const absentDType = embedFmt.dtype === "q4" && d.E % Q4_BLOCK !== 0 ? "int8" : embedFmt.dtype; // as allocMat holds it
    const absent = (): Mat => ({
      dtype: absentDType,
      w: 0,
      s: 0,
      g: absentDType === "int8" ? groupFor(this.fmt, d.E) : absentDType === "q4" ? Q4_BLOCK : 0,
    });
    const embedTokens = residentEmbeddings ? await this.table(this.names.global("embedTokens"), d.V, d.E, embedFmt.dtype) : absent();
    if (residentEmbeddings) tick(matBytes(embedFmt, d.V, d.E));
    const learned = d.positions === "learned";
    const embedPositions = residentEmbeddings && learned ? await this.vector("embedPositions", d.P * d.C) : 0;
    const projectIn = d.project ? await this.vector("projectIn", d.C * d.E) : 0;
    const projectOut = d.project ? await this.vector("projectOut", d.E * d.C) : 0;
    const finalNormW = d.finalNorm && d.normAffine ? await this.vector("finalNormW", d.C) : 0;
    const finalNormB = d.finalNorm && d.normAffine && d.norm === "layer" ? await this.vector("finalNormB", d.C) : 0;
    tick(((residentEmbeddings ? d.P * d.C : 0) + (d.project ? 2 * d.C * d.E : 0) + 2 * d.C) * 4);
    const layers: LayerWeights[] = [];
    for (let i = 0; residentLayers && i < d.L; i++) {
      const w = this.allocLayer();
      this.fillLayer(i, w, this.remote ? await this.fetchLayer(i) : undefined);
      layers.push(w);
      tick(layerBytes(this.family, d, this.fmt));
    }
    // transformers ties lm_head to embed_tokens when tie_word_embeddings is true, even if the file has one.
    const lmHead = d.tied ? embedTokens : residentEmbeddings ? await this.table(LM_HEAD, d.V, d.E, embedFmt.dtype) : absent();
    if (!d.tied && residentEmbeddings) tick(matBytes(embedFmt, d.V, d.E));
    // Streamed matrices are converted during a pass, when the arena cannot grow: make the stage now.
    const asIs = (full: string, dtype: WeightDType) => copiedAsIs(this.src.get(full)!.dtype, dtype);
    const layerMats = this.family.layer(d, 0).filter((r) => MATRIX_FIELDS.has(r.field));
    const layersConvert = this.fmt.dtype !== "f32" && !layerMats.every((r) => !r.conv && asIs(this.names.full(r.name), this.fmt.dtype));
    const embedConverts =
      embedFmt.dtype !== "f32" && ![this.headName, this.names.global("embedTokens")].every((n) => asIs(n, embedFmt.dtype));
    if ((!residentLayers && layersConvert) || (!residentEmbeddings && embedConverts)) this.stage();
    return { format: this.fmt, embedTokens, embedPositions, projectIn, projectOut, finalNormW, finalNormB, lmHead, layers };
  }
}

/** Bytes of rows of a table fetched by fetchRows, with their int8 scales (and the table's row they start at). */
export type RowBytes = { raw: Uint8Array; scale: Uint8Array | null; row?: number };

/**
 * How fillRows scans what it writes for NaN/Inf (null: not at all, the rows were scanned before):
 * the checkpoint row its first row is (undefined: unknown, the message then says no position) and
 * for a GPT-2 Conv1D field the column it starts at (its element (n, k) is the tensor's [k, col + n]).
 */
type Scan = { row?: number; col?: number } | null;

/** What findNonFinite looks for: NaN/±Inf in f32 or f16 values, or also f32s that f16 cannot hold. */
type ScanKind = "f32" | "f16" | "f32→f16";
/** Rows of the flat data the NaN/Inf probe multiplies at a time: any width works; outputs per call. */
const PROBE_K = 1024;
const PROBE_ROWS = 4096;
/** 2^112·(1 + 2^-11): 65504 (f16's largest) times it stays below f32's largest, 65520 times it does not. */
const PROBE_SCALE = 2 ** 112 * (1 + 2 ** -11);
/** The smallest f32 magnitude that rounds to Inf in f16 (65504 + half an ulp). */
const F16_INF = 65520;

/**
 * Values of a GPT-2 Conv1D weight's columns [col, col + N) as an (N, K) matrix: element (n, k) of
 * the field is t[k, col + n], where t is the (K, width) tensor.
 */
function convValues(t: Float32Array, width: number, col: number, K: number): Values {
  return (start, dst) => {
    for (let e = 0; e < dst.length;) {
      const n = Math.floor((start + e) / K);
      let k = (start + e) % K;
      for (; k < K && e < dst.length; k++, e++) dst[e] = t[k * width + col + n];
    }
  };
}

/**
 * The buffer to reuse after a read into `scratch` returned `got`: a BYOB read moves the memory to a
 * new ArrayBuffer (detaching scratch's, which then has length 0), so follow it there.
 */
function sameMemory(got: Uint8Array, scratch: Uint8Array): Uint8Array {
  return scratch.byteLength === 0 ? new Uint8Array(got.buffer) : scratch;
}

/** sameMemory, and bytes a reader returned elsewhere (it may ignore the scratch) copied in at `at`. */
function settle(got: Uint8Array, scratch: Uint8Array, at: number): Uint8Array {
  if (scratch.byteLength !== 0 && got.buffer !== scratch.buffer) scratch.set(got, at);
  return sameMemory(got, scratch);
}

/** Whether a matrix stored as `file` is copied as it is into a compressed `target`. */
const copiedAsIs = (file: string, target: WeightDType) =>
  (file === "F16" && target === "f16") || (file === "I8" && target === "int8") || (file === "U8" && target === "q4");

/** A file's dtype for matrices that come with a `_scale` tensor (int8, q4). */
const isQuantized = (dtype: string) => dtype === "I8" || dtype === "U8";
