// One decoder for every family (./families): OPT, GPT-2, LLaMA and Qwen2 are data over this loop.
//
//   step = model.begin(ids, { cache, attentionMask })   plan + reserve scratch for this call
//   model.embed(step)                                   x = embed_tokens(ids) (· project_in) (+ learned positions)
//   model.layer(i, step)                                x = decoder layer i (x)        (any weights: resident or not)
//   model.logits(step, rows)                            lm_head(project_out(final_norm(x[rows])))
//   step.end()                                          scratch released
//
// A layer, whatever the family (Dims says which norm, positions, MLP, biases):
//   h = norm(x);  q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ (+ b);  rope(q, k) for rotary families
//   a = softmax(q·Kᵀ · scale + mask)·V   (query head h reads KV head h / (H / Hkv))
//   x = x + a·Woᵀ;  h = norm(x);  x = x + down(act(up(h)))  or  x + down(silu(gate(h)) · up(h))
// (post-norm OPT: x = norm(x + f(x)) instead.)
//
// `forward` chains them. Memory: weights are loaded once into the arena; a KV cache is a region
// of the arena sized from the requested context, holding f32 or f16 keys and values (kvDtype: the
// attention kernels read either directly); each call's scratch is planned from its shape
// (./scratch.ts), reserved before any kernel runs (memory never grows during a pass) and released
// afterwards. Streamed weights are ./streaming.ts's business.
import { Arena, OutOfMemoryError, align } from "../arena.js";
import { loadWasm, type KernelExports, type LoadWasmOptions, type Wasm } from "../wasm.js";
import { defaultThreads, splitJob, ThreadPool, type SplitJob } from "../threads.js";
import { isAsyncSource, type AsyncTensorSource, type TensorSource } from "../formats/types.js";
import { attnScale, type Dims } from "./config.js";
import type { Family } from "./family.js";
import { familyOf, type ModelConfig } from "./families/index.js";
import { placeScratch, scratchBytes, f32s } from "./scratch.js";
import { NEED_EMBED, WeightStream } from "./streaming.js";
import {
  CheckpointNames,
  DEFAULT_INT8_GROUP,
  layerBytes,
  WEIGHT_DTYPES,
  WeightLoader,
  weightBytes,
  type LayerWeights,
  type Mat,
  type ModelWeights,
  type WeightDType,
  type WeightFormat,
} from "./weights.js";

export interface LoadOptions extends LoadWasmOptions {
  /** Called while weights are copied into WebAssembly memory. */
  onProgress?: (done: number, total: number) => void;
  /** Label for errors (e.g. the checkpoint's path). */
  label?: string;
  /**
   * Keep every layer's weights in WebAssembly memory (default). With false, layers are read from
   * the checkpoint one at a time into a single slot as the forward pass reaches them: memory
   * holds one layer instead of all (slower: every pass re-reads and converts the layer weights).
   * From an AsyncTensorSource (a URL read by ranges, say) the checkpoint stays where it is and each
   * pass fetches the layers again, the next one while the current one runs: run such a model with
   * forwardAsync or the generate functions.
   */
  residentLayers?: boolean;
  /**
   * Threads for the big kernels (linear layers split by output rows, attention by heads).
   * Default: the available cores. More than one needs shared memory (Node; a cross-origin
   * isolated page); where there is none the model runs on one thread.
   */
  threads?: number;
  /**
   * How weight matrices are held: "f32" (default), "f16" (half the memory, converted inside the
   * kernels), "int8" (a quarter; symmetric per-row, per-group scales, quantized at load) or "q4"
   * (4-bit with a per-block scale and minimum, blocks of 32 inputs: 5/32 of f32; a matrix whose
   * input size is not a multiple of 32 is held in int8). The layers' inputs are then quantized to
   * int8 per block and multiplied with integer dot products.
   */
  dtype?: WeightDType;
  /** int8 group size along the input dimension (default 64). */
  int8Group?: number;
  /**
   * Keep the token embedding (and lm_head) in WebAssembly memory (default). With false — only with
   * residentLayers false and an AsyncTensorSource — it stays in the checkpoint as well: a pass
   * fetches the rows of its tokens, and reads the lm_head in chunks through the layer slot. Memory
   * then holds one layer and the KV cache (what fits a 128 MB edge isolate); each token reads the
   * whole checkpoint.
   */
  residentEmbeddings?: boolean;
  /**
   * The token embedding's (= the tied lm_head's) dtype: f32, f16, int8 or q4. Default: dtype, except
   * f16 when dtype is int8 or q4 (int8 there costs accuracy, see the README). "int8" halves the
   * largest tensor again; "q4" (5/32 of f32) takes it to 20 bytes per 32 weights, the lm_head then
   * on the q4 kernels.
   */
  embedDType?: WeightDType;
}

/** Below this many multiply-adds a parallel region's linears run on the calling thread: waking workers costs more. */
const PARALLEL_MIN_MACS = 1 << 16;

/**
 * How a KV cache holds keys and values: "f32", or "f16" — IEEE half floats: half the memory, and
 * half the bytes attention reads per new token, which grow with the context. Each key and value is
 * rounded to the nearest half as it is stored (relative error ≤ 2^-11); attention reads the halves
 * directly and computes in f32. Values past ±65504 do not fit: stored as ±inf, they read back as
 * ±65536 (see assembly/kernels/attention.ts) — keep f32 for a model whose keys or values get there.
 */
export type KVDType = "f32" | "f16";
export const KV_DTYPES: readonly KVDType[] = ["f32", "f16"];

/** A kvDtype option's value, checked: undefined gives "f32"; anything else but "f16" is refused, naming it. */
export function kvDtypeOf(v: unknown): KVDType {
  if (v === undefined) return "f32";
  if (typeof v === "string" && (KV_DTYPES as readonly string[]).includes(v)) return v as KVDType;
  throw new Error(`wasm-lm: kvDtype '${String(v)}' is not supported (${KV_DTYPES.join(", ")})`);
}

export interface CacheOptions {
  /** How the cache holds keys and values: "f32" (default) or "f16" (half the memory; see KVDType). */
  kvDtype?: KVDType;
}

/** The keys and values of every layer for a batch of B sequences, plus which positions are real. */
export class KVCache {
  /** Positions filled so far (the same for every sequence of the batch: padding keeps them aligned). */
  length = 0;
  /** Real (unpadded) tokens seen so far per sequence: the next position id is this. */
  readonly seen: number[];
  constructor(
    readonly B: number,
    readonly maxCtx: number,
    /** The element type of k and v. */
    readonly dtype: KVDType,
    /** k[layer][b], v[layer][b]: (Hkv, maxCtx, D) each, of dtype (f16: IEEE half bits). */
    readonly k: number[][],
    readonly v: number[][],
    /** mask[b]: u8[maxCtx], 1 where the key is a real token. */
    readonly mask: number[],
    private readonly arena: Arena,
    private readonly start: number,
    private readonly end: number,
  ) {
    this.seen = new Array(B).fill(0);
  }
  /** Forget the contents (keep the memory). */
  clear(): void {
    this.length = 0;
    this.seen.fill(0);
  }
  /** Give the memory back to the arena. Caches are released in the reverse order of creation. */
  release(): void {
    if (this.released) return;
    if (this.arena.mark() !== this.end) {
      throw new Error("wasm-lm: KV caches must be released in the reverse order they were created");
    }
    this.arena.reset(this.start);
    this.released = true;
  }
  /** Whether release() has given the memory back (the cache can no longer be used). */
  released = false;
  belongsTo(arena: Arena): boolean {
    return arena === this.arena;
  }
}

/** The scratch buffers of a step: what `begin` plans (see stepScratch) and points into the arena. */
export interface StepBuffers {
  x: number; // (rows, C) the residual stream
  xn: number; // (rows, max(C, E)) normed x; OPT's projected embeddings
  q: number; // (rows, C) queries; also each block's output before the residual add
  k: number;
  v: number; // (rows, Hkv·D) this step's keys and values
  att: number; // (rows, C) attention output
  ffn: number; // (rows, F) MLP inner activations (the gate's, for gated MLPs)
  ffnUp: number; // (rows, F) gated MLPs: up(x)
  cs: number; // (rows, D) rotary cos | sin of each row's position
  idsPtr: number;
  posPtr: number; // i32 (rows): embedding rows, learned-position rows
  scores: number; // (past + T) f32 per thread, scoresStride bytes apart
  quantScratch: number; // per thread: rows of compressed weights expanded for a GEMM
  actQ: number;
  actS: number; // a linear's input quantized once: q4, (rows, K) int8 per block of 32 and its scales; int8 at T = 1, K int16 and a scale
  actT: number; // q4 at T > 1: actS's scales regrouped per tile of 4 rows (actTiles), (ceil(rows/4), 2, K/32, 4) f32
  probs: number; // (H, T, past + T) f32, or 0
  lnRows: number;
  lnE: number;
  logitsBuf: number; // logits: (R, C), (R, E), (R, V)
  embRows: number;
  posRows: number; // streamed embeddings: token rows, position rows (R·C f32)
  headOut: number; // streamed lm_head: one chunk's logits, (R, rows per chunk)
}

/** Where batch row b of a step lives: sequence `b` of `cache`, holding `past` positions before it. */
export interface StepRow {
  cache: KVCache;
  b: number;
  past: number;
}

/** One call's view of the model: the batch, its scratch buffers, and where it is in the cache. */
export interface Step extends StepBuffers {
  B: number;
  T: number;
  /** Cache length before this step (with `caches`, the first row's; see rows). */
  past: number;
  /** The step's cache (with `caches`, the first row's). */
  cache: KVCache;
  /** Each batch row's cache, sequence and past length. */
  rows: StepRow[];
  ids: Int32Array; // (B*T)
  /** (B*T) position ids (learned tables: the table's row). */
  positions: Int32Array;
  /** Real tokens per sequence once this step is in the cache. */
  seenAfter: number[];
  collectAttentions: boolean;
  scoresStride: number;
  maxLogitRows: number;
  /** Streamed embeddings: for each token, the row of its id / its position in embRows / posRows. */
  localIds: Int32Array;
  localPos: Int32Array;
  /** Filled by layer() when collectAttentions: per layer, (B, H, T, past+T). */
  attentions: Float32Array[];
  end(): void;
}

export interface BeginOptions {
  /** Continue this cache (it must have room for T more positions). Default: a cache for this call only. */
  cache?: KVCache;
  /**
   * The element type of the cache made for this call when neither cache nor caches is given
   * (default "f32"). With a cache given it must match that cache's dtype, or be left out.
   */
  kvDtype?: KVDType;
  /**
   * Instead of `cache`: one cache of batch 1 per row, each continued by its row from its own
   * length — sequences at different positions decoded in one pass (continuous batching).
   */
  caches?: KVCache[];
  /** (B, T) 1 for real tokens, 0 for padding. Default: all ones. */
  attentionMask?: ArrayLike<number>[];
  /** How many rows the largest logits() call of this step will ask for. Default B*T. */
  maxLogitRows?: number;
  /** Record every layer's attention probabilities. */
  collectAttentions?: boolean;
}

export interface ForwardOptions extends BeginOptions {
  /** Which positions get logits: all (default), the last of each sequence, or none. */
  logits?: "all" | "last" | "none";
  /** Return the embeddings, every layer's output, and the final normed hidden state. */
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
  /**
   * Write the logits into this array (at least as long as the logits) and return a view of it as
   * result.logits, instead of a new array: a decode loop that is done with one step's logits before
   * the next step saves ~0.1 ms a token (a fresh 200 KB array is mapped and zeroed each time).
   */
  logitsOut?: Float32Array;
}

export interface ForwardResult {
  /** (B, R, V) row-major, R = T for "all", 1 for "last". */
  logits: Float32Array;
  logitsShape: [number, number, number];
  /** embeddings, layer 0 … L-1 outputs, final: each (B, T, C) (final is (B, T, E)). */
  hiddenStates?: { embeddings: Float32Array; layers: Float32Array[]; final: Float32Array };
  /** Per layer (B, H, T, past+T). */
  attentions?: Float32Array[];
}

function weightFormat(o: LoadOptions): WeightFormat {
  const dtype = o.dtype ?? "f32";
  if (!WEIGHT_DTYPES.includes(dtype)) throw new Error(`wasm-lm: dtype '${String(dtype)}' is not supported (${WEIGHT_DTYPES.join(", ")})`);
  const group = o.int8Group ?? DEFAULT_INT8_GROUP;
  if (!Number.isInteger(group) || group < 1) throw new Error(`wasm-lm: int8Group = ${group} must be a positive integer`);
  const embed = o.embedDType;
  const embedTypes = ["f32", "f16", "int8", "q4"] as const;
  if (embed !== undefined && !(embedTypes as readonly string[]).includes(embed))
    throw new Error(`wasm-lm: embedDType '${String(embed)}' is not supported (${embedTypes.join(", ")})`);
  return embed === undefined ? { dtype, group } : { dtype, group, embed };
}

async function resolveThreads(requested: number | undefined): Promise<number> {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1 || requested > 256)
      throw new Error(`wasm-lm: threads = ${requested} must be an integer in [1, 256]`);
    return requested;
  }
  return defaultThreads();
}

/** Rotary inverse frequencies as transformers computes them in float32: 1 / θ^(2i/D). */
function ropeInvFreq(d: Dims): Float32Array {
  const half = d.D / 2;
  const f = new Float32Array(half);
  for (let i = 0; i < half; i++) f[i] = Math.fround(1 / Math.fround(Math.pow(d.ropeTheta, Math.fround((2 * i) / d.D))));
  return f;
}

export class DecoderModel {
  readonly k: KernelExports;
  /** Sizes and the block recipe (see ./config.ts). */
  readonly dims: Dims;
  readonly family: Family;
  private openSteps = 0;
  /** The open step (its scratch is what kernels needing scratch use). */
  private step: Step | null = null;
  /**
   * Streamed weights (residentLayers false), or null. It holds the checkpoint; with resident
   * weights the model drops it, so the file's bytes can be collected — no second copy outside wasm.
   */
  private readonly stream: WeightStream | null;
  /** Bytes of scratch a compressed-weight GEMM needs per thread. */
  private readonly quantScratchBytes: number;
  private readonly invFreq: Float32Array;
  /**
   * Linears sharing an input run on the pool when they have at least this many multiply-adds in
   * all (attention: whenever there are 2 heads or rows). 0 splits every one (tests use it to run
   * the split kernels on tiny models).
   */
  parallelMinMacs = PARALLEL_MIN_MACS;

  private constructor(
    readonly config: ModelConfig,
    readonly wasm: Wasm,
    readonly arena: Arena,
    readonly weights: ModelWeights,
    loader: WeightLoader,
    /** Worker threads sharing the memory, or null for one thread. */
    readonly pool: ThreadPool | null,
  ) {
    this.k = wasm.k;
    this.family = familyOf(config);
    this.dims = this.family.dims(config);
    this.stream = weights.layers.length === 0 ? new WeightStream(loader, arena, this.dims, weights) : null;
    const d = this.dims;
    this.quantScratchBytes = align(this.k.quantRows() * Math.max(d.C, d.F, d.E) * 4, 64);
    this.invFreq = d.positions === "rope" ? ropeInvFreq(d) : new Float32Array(0);
  }

  /** Whether the token embedding and lm_head are read from the checkpoint (residentEmbeddings: false). */
  get streamsEmbeddings(): boolean {
    return this.stream?.streamsEmbeddings ?? false;
  }

  /** Whether layers are read from the checkpoint as passes reach them (residentLayers: false). */
  get streamsLayers(): boolean {
    return this.stream !== null;
  }

  /** The dtype weight matrices are held in. */
  get dtype(): WeightDType {
    return this.weights.format.dtype;
  }

  /** Validate the checkpoint against the config, then copy the weights into WebAssembly memory. */
  static async load(config: ModelConfig, source: TensorSource | AsyncTensorSource, opts: LoadOptions = {}): Promise<DecoderModel> {
    const family = familyOf(config);
    const d = family.dims(config);
    const label = opts.label ?? "checkpoint";
    const resident = opts.residentLayers ?? true;
    const residentEmbeddings = opts.residentEmbeddings ?? true;
    if (!residentEmbeddings && (resident || !isAsyncSource(source))) {
      throw new Error(
        `${label}: residentEmbeddings false needs residentLayers false and an AsyncTensorSource (a checkpoint read by ranges)`,
      );
    }
    const bytesOf = (fmt: WeightFormat) =>
      weightBytes(family, d, fmt, resident ? d.L : 0, residentEmbeddings) + (resident ? 0 : layerBytes(family, d, fmt));
    const bytes = bytesOf(weightFormat(opts));
    if (bytes > 3.5 * 2 ** 30) {
      throw new Error(
        `${label}: config.json needs ${(bytes / 2 ** 30).toFixed(2)} GiB of ${opts.dtype ?? "f32"} weights ` +
          `(vocab_size ${d.V}, hidden_size ${d.C}, num_hidden_layers ${d.L}, MLP size ${d.F}); wasm32 memory holds at most 4 GiB`,
      );
    }
    const names = new CheckpointNames(source, family, d, label);
    let fmt = weightFormat(opts);
    if (names.q4) {
      // A file written by `wasm-lm quantize --dtype q4` (its matrices of other widths in int8).
      if (opts.dtype !== undefined && opts.dtype !== "q4")
        throw new Error(`${label}: the checkpoint is q4-quantized; load it with dtype q4 (asked: ${opts.dtype})`);
      fmt = { dtype: "q4", group: names.int8Group || fmt.group, embed: fmt.embed };
    } else if (names.int8Group) {
      // A file written by `wasm-lm quantize`: its int8 matrices load as they are.
      if (opts.dtype !== undefined && opts.dtype !== "int8")
        throw new Error(`${label}: the checkpoint is int8-quantized; load it with dtype int8 (asked: ${opts.dtype})`);
      if (opts.int8Group !== undefined && opts.int8Group !== names.int8Group)
        throw new Error(`${label}: the checkpoint's int8 group is ${names.int8Group}, asked ${opts.int8Group}`);
      fmt = { dtype: "int8", group: names.int8Group, embed: fmt.embed };
    }
    const qe = names.quantizedEmbed;
    if (qe) {
      if (opts.embedDType !== undefined && opts.embedDType !== qe)
        throw new Error(
          `${label}: the checkpoint's token embedding is ${qe}-quantized; load it with embedDType ${qe} (asked: ${opts.embedDType})`,
        );
      fmt = { ...fmt, embed: qe };
    }
    const threads = await resolveThreads(opts.threads);
    // Memory starts at the weights' size (at most 16 MiB) and grows as the arena reserves: a model
    // streaming its weights needs only a few MB.
    const wasm = await loadWasm({ ...opts, shared: threads > 1, initialBytes: opts.initialBytes ?? Math.min(bytesOf(fmt), 16 << 20) });
    const arena = new Arena(wasm);
    const loader = new WeightLoader(arena, wasm.k, source, names, d, fmt, label);
    const weights = await loader.all(opts.onProgress, resident, residentEmbeddings);
    const pool = threads > 1 ? await ThreadPool.create(wasm, threads) : null;
    return new DecoderModel(config, wasm, arena, weights, loader, pool);
  }

  get build() {
    return this.wasm.build;
  }

  /** Threads taking part in the big kernels. */
  get threads(): number {
    return this.pool && !this.pool.isClosed ? this.pool.size : 1;
  }

  /** Stop the worker threads (the model keeps working on one thread). */
  dispose(): void {
    this.pool?.close();
  }

  /**
   * A KV cache for B sequences of up to maxCtx positions (default: the model's maximum), holding
   * keys and values in f32 or, with `{ kvDtype: "f16" }`, in half the memory.
   */
  createCache(B = 1, maxCtx = this.dims.maxPositions, opts: CacheOptions = {}): KVCache {
    const { L, KV } = this.dims;
    const dtype = kvDtypeOf(opts.kvDtype);
    if (!Number.isInteger(B) || B < 1) throw new Error(`wasm-lm: batch size must be a positive integer, got ${B}`);
    if (!Number.isInteger(maxCtx) || maxCtx < 1 || maxCtx > this.dims.maxPositions) {
      throw new Error(`wasm-lm: cache length ${maxCtx} is outside [1, ${this.dims.maxPositions}] (the model's maximum positions)`);
    }
    const start = this.arena.mark();
    const per = maxCtx * KV * (dtype === "f16" ? 2 : 4);
    this.arena.reserve(2 * L * B * (per + 64) + B * (maxCtx + 64));
    const k: number[][] = [];
    const v: number[][] = [];
    for (let l = 0; l < L; l++) {
      k.push(Array.from({ length: B }, () => this.arena.alloc(per)));
      v.push(Array.from({ length: B }, () => this.arena.alloc(per)));
    }
    const mask = Array.from({ length: B }, () => this.arena.alloc(maxCtx));
    return new KVCache(B, maxCtx, dtype, k, v, mask, this.arena, start, this.arena.mark());
  }

  /** A step's scratch: every buffer's bytes (0: absent), for B·T rows over S positions and R logit rows. */
  private stepScratch(rows: number, T: number, S: number, R: number, collectAttentions: boolean): Record<keyof StepBuffers, number> {
    const { V, C, E, F, H, KV, D } = this.dims;
    const parts = this.threads;
    const st = this.stream;
    const gated = this.dims.mlp === "gated";
    // Inputs quantized for the integer kernels (q4 and int8 matrices): the layers' or the lm_head's.
    const quantized = (t: WeightDType) => t === "q4" || t === "int8";
    const quant = quantized(this.dtype) || quantized(this.weights.lmHead.dtype);
    const q4 = this.dtype === "q4" || this.weights.lmHead.dtype === "q4";
    return {
      x: f32s(rows * C),
      xn: f32s(rows * Math.max(C, E)),
      q: f32s(rows * C),
      k: f32s(rows * KV),
      v: f32s(rows * KV),
      att: f32s(rows * C),
      ffn: f32s(rows * F),
      ffnUp: gated ? f32s(rows * F) : 0,
      cs: this.dims.positions === "rope" ? f32s(rows * D) : 0,
      idsPtr: f32s(rows),
      posPtr: f32s(rows),
      scores: parts * align(f32s(S), 64),
      // f16 and int8 kernels expand rows into each thread's scratch (the layers' or the lm_head's).
      quantScratch: this.dtype === "f32" && this.weights.lmHead.dtype === "f32" ? 0 : parts * this.quantScratchBytes,
      // q4: (rows, K) int8 and per block its scale and sum; int8 at T = 1 (also an int8 lm_head):
      // K int16 and one scale.
      actQ: quant ? Math.max(rows * Math.max(C, F, E), 2 * Math.max(C, F, E)) : 0,
      actS: quant ? Math.max(rows * Math.ceil(Math.max(C, F, E) / 32) * 8, 4) : 0,
      actT: q4 && rows > 1 ? Math.ceil(rows / 4) * 4 * Math.ceil(Math.max(C, F, E) / 32) * 8 : 0,
      probs: collectAttentions ? f32s(H * T * S) : 0,
      lnRows: f32s(R * C),
      lnE: f32s(R * E),
      logitsBuf: f32s(R * V),
      embRows: st?.embedRowBytes(rows) ?? 0,
      posRows: st?.streamsEmbeddings && this.dims.positions === "learned" ? f32s(rows * C) : 0,
      headOut: st?.streamsEmbeddings ? f32s(R * st.headRows) : 0,
    };
  }

  /** Plan and reserve this call's scratch; validate ids, mask and cache room. */
  begin(ids: ArrayLike<number>[], opts: BeginOptions = {}): Step {
    const { V } = this.dims;
    const B = ids.length;
    if (B < 1) throw new Error("wasm-lm: empty batch");
    const T = ids[0].length;
    if (T < 1) throw new Error("wasm-lm: empty input: at least one token id is needed");
    for (let b = 0; b < B; b++) {
      if (ids[b].length !== T) throw new Error(`wasm-lm: batch row ${b} has ${ids[b].length} ids, row 0 has ${T} (pad to one length)`);
      for (let t = 0; t < T; t++) {
        const id = ids[b][t];
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new Error(`wasm-lm: token id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${V})`);
        }
      }
    }
    const mask = opts.attentionMask;
    if (mask) {
      if (mask.length !== B) throw new Error(`wasm-lm: attentionMask has ${mask.length} rows, ids have ${B}`);
      for (let b = 0; b < B; b++) {
        if (mask[b].length !== T) throw new Error(`wasm-lm: attentionMask row ${b} has ${mask[b].length} entries, ids have ${T}`);
      }
    }
    if (this.openSteps > 0) throw new Error("wasm-lm: a step is already open on this model (end() it first)");

    const given = opts.caches ?? (opts.cache ? [opts.cache] : []);
    if (opts.caches && opts.cache) throw new Error("wasm-lm: give cache or caches, not both");
    if (opts.caches && opts.caches.length !== B) throw new Error(`wasm-lm: ${opts.caches.length} caches for a batch of ${B}`);
    if (opts.caches && new Set(opts.caches).size !== B) throw new Error("wasm-lm: one cache is given for two rows");
    if (opts.caches && opts.collectAttentions) throw new Error("wasm-lm: collectAttentions needs one cache for the batch (not caches)");
    const kvDtype = opts.kvDtype === undefined ? undefined : kvDtypeOf(opts.kvDtype);
    for (const c of given) {
      if (!c.belongsTo(this.arena)) throw new Error("wasm-lm: this KV cache belongs to another model");
      if (c.released) throw new Error("wasm-lm: this KV cache was released");
      if (opts.caches && c.B !== 1) throw new Error(`wasm-lm: each of caches must be for batch 1, got ${c.B}`);
      if (kvDtype !== undefined && c.dtype !== kvDtype)
        throw new Error(
          `wasm-lm: kvDtype '${kvDtype}' was asked, but the given KV cache holds ${c.dtype} (leave kvDtype out with a cache)`,
        );
    }
    const ownCache = given.length === 0;
    const cache = opts.caches?.[0] ?? opts.cache ?? this.createCache(B, Math.min(T, this.dims.maxPositions), { kvDtype });
    if (!opts.caches && cache.B !== B) throw new Error(`wasm-lm: cache is for batch ${cache.B}, input has batch ${B}`);
    const stepRows: StepRow[] = opts.caches
      ? opts.caches.map((c) => ({ cache: c, b: 0, past: c.length }))
      : Array.from({ length: B }, (_, b) => ({ cache, b, past: cache.length }));
    for (const { cache: c, past } of stepRows) {
      if (past + T > c.maxCtx) {
        if (ownCache) cache.release();
        throw new Error(
          `wasm-lm: ${past} cached + ${T} new positions exceed the context of ${c.maxCtx}` +
            (c.maxCtx === this.dims.maxPositions ? " (the model's maximum positions)" : " (the cache's size)"),
        );
      }
    }
    const past = stepRows[0].past;

    const rows = B * T;
    const S = Math.max(...stepRows.map((r) => r.past)) + T;
    const R = Math.max(1, Math.min(opts.maxLogitRows ?? rows, rows));
    const table = this.stepScratch(rows, T, S, R, !!opts.collectAttentions);
    const arena = this.arena;
    const mark = arena.mark();
    try {
      arena.reserve(scratchBytes(table));
    } catch (e) {
      if (ownCache) cache.release();
      throw new OutOfMemoryError(`${(e as Error).message} (a forward pass of batch ${B} × ${T} tokens over ${S} positions)`);
    }
    arena.frozen = true;
    this.openSteps++;
    let ended = false;
    const streamed = this.streamsEmbeddings;
    // (Object.assign, not a spread: spreading the 22 buffers into a literal costs ~100 µs a step in V8.)
    const step: Step = Object.assign(placeScratch(arena, table), {
      B,
      T,
      past,
      cache,
      rows: stepRows,
      ids: Int32Array.from(ids.flatMap((r) => Array.from(r))),
      positions: new Int32Array(rows),
      seenAfter: stepRows.map((r) => r.cache.seen[r.b]),
      collectAttentions: !!opts.collectAttentions,
      scoresStride: align(f32s(S), 64),
      maxLogitRows: R,
      localIds: streamed ? new Int32Array(rows) : NONE,
      localPos: streamed ? new Int32Array(rows) : NONE,
      attentions: [],
      end: () => {
        if (ended) return;
        ended = true;
        this.openSteps--;
        this.step = null;
        arena.frozen = false;
        arena.reset(mark);
        if (ownCache) cache.release();
      },
    });

    this.step = step;
    // Position ids as transformers computes them for a padded batch: cumsum(mask) − 1 for real
    // tokens, 1 for padding (OPT's table is offset by 2: cumsum(mask)·mask − 1 + 2, padding −1 + 2).
    // The key mask keeps padded keys out of every query's softmax.
    const offset = this.dims.positionOffset;
    for (let b = 0; b < B; b++) {
      const row = stepRows[b];
      const m = arena.u8(row.cache.mask[row.b], row.cache.maxCtx);
      let seen = row.cache.seen[row.b];
      for (let t = 0; t < T; t++) {
        const real = mask ? mask[b][t] !== 0 : true;
        m[row.past + t] = real ? 1 : 0;
        if (real) seen++;
        step.positions[b * T + t] = real ? seen - 1 + offset : 1;
      }
      step.seenAfter[b] = seen;
    }
    if (this.dims.positions === "rope") this.rotaryTable(step);
    return step;
  }

  /**
   * Each row's rotary cos | sin, in float32 as transformers' LLaMA computes them: angle_i =
   * (position / factor) · inv_freq_i, both rounded to f32, and their cos and sin rounded to f32.
   */
  private rotaryTable(s: Step): void {
    const { D, ropeFactor } = this.dims;
    const half = D / 2;
    const cs = this.arena.f32(s.cs, s.B * s.T * D);
    for (let r = 0; r < s.B * s.T; r++) {
      const t = Math.fround(s.positions[r] / ropeFactor);
      for (let i = 0; i < half; i++) {
        const a = Math.fround(t * this.invFreq[i]);
        cs[r * D + i] = Math.cos(a);
        cs[r * D + half + i] = Math.sin(a);
      }
    }
  }

  /**
   * Independent splittable kernel calls: on the pool in one parallel region when it is worth waking
   * it (`parallel`), else one after the other on this thread.
   */
  private run(jobs: SplitJob[], parallel: boolean): void {
    if (parallel && this.pool && !this.pool.isClosed) return this.pool.run(jobs);
    for (const { kernel, args: a } of jobs) {
      const f = this.k[kernel] as (...a: number[]) => void;
      // (Not f(...a): a spread call takes V8's slow path into wasm.) Wasm ignores the extra arguments.
      f(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
    }
  }

  /** y = x·Wᵀ + b on the weights' dtype; split by output rows over the threads when it pays. */
  private linear(y: number, x: number, m: Mat, b: number, T: number, K: number, N: number): void {
    this.linears(x, T, K, [{ y, m, b, N }]);
  }

  /**
   * Linears sharing one input x (T, K) — q, k and v; gate and up — in one parallel region: the
   * threads share out the output rows of all of them, and a q4 input is quantized once for all.
   */
  private linears(x: number, T: number, K: number, outs: { y: number; m: Mat; b: number; N: number }[]): void {
    const s = this.step;
    // The input quantized once for all of them (and for every thread's pieces): per block of 32
    // to int8 for q4; to int16 with one scale for int8 at T = 1 (what linearI8 would do per call).
    if (outs.some((o) => o.m.dtype === "q4")) {
      this.k.quantizeActI8(s!.actQ, s!.actS, x, T, K, 8);
      if (T > 1) this.k.actTiles(s!.actT, s!.actS, T, K);
    }
    if (outs.some((o) => this.int8A16(o.m, T))) this.k.quantizeActI16(s!.actQ, s!.actS, x, K);
    let macs = 0;
    const jobs = outs.map(({ y, m, b, N }) => {
      macs += T * K * N;
      return this.linearJob(y, x, m, b, T, K, N);
    });
    this.run(jobs, macs >= this.parallelMinMacs);
  }

  /** Whether an int8 linear takes linearI8's 16-bit-activation path (T = 1 with a scratch, groups of 16k). */
  private int8A16(m: Mat, T: number): boolean {
    return m.dtype === "int8" && T === 1 && (this.step?.quantScratch ?? 0) !== 0 && m.g % 16 === 0 && m.g <= 2048;
  }

  /**
   * The kernel call of one linear on its weights' dtype (q4, and int8 at T = 1: the input is
   * already quantized into the step's actQ / actS).
   */
  private linearJob(y: number, x: number, m: Mat, b: number, T: number, K: number, N: number): SplitJob {
    // (Object literals, not spreads: a spread of these small records costs ~10 µs in V8, ×70 a token.)
    const scratch = this.step?.quantScratch ?? 0;
    switch (m.dtype) {
      case "f32":
        return splitJob("linear", { y, x, w: m.w, b, T, K, N, n0: 0, n1: N });
      case "f16":
        return splitJob("linearF16", { y, x, w: m.w, b, T, K, N, n0: 0, n1: N, scratch }, this.quantScratchBytes);
      case "int8":
        if (this.int8A16(m, T)) {
          const { actQ: xq, actS: xs } = this.step!;
          return splitJob("matvecI8A16", { y, xq, xs, q: m.w, s: m.s, b, K, n0: 0, n1: N, G: m.g });
        }
        return splitJob("linearI8", { y, x, q: m.w, s: m.s, b, T, K, N, n0: 0, n1: N, G: m.g, scratch }, this.quantScratchBytes);
      case "q4": {
        const { actQ: xq, actS: xs, actT: xt } = this.step!;
        // T > 1: the integer GEMM on tiles of 4 rows (gemm_dot.ts); T = 1: linearQ4's matvec.
        if (T > 1) return splitJob("gemmQ4Tiles", { y, xq, xt, q: m.w, s: m.s, b, T, K, N, n0: 0, n1: N });
        return splitJob("linearQ4", { y, xq, xs, q: m.w, s: m.s, b, T, K, N, n0: 0, n1: N });
      }
    }
  }

  /** The family's norm over rows of C: LayerNorm (w, b) or RMSNorm (w). */
  private norm(y: number, x: number, w: number, b: number, rows: number): void {
    const { C, normEps } = this.dims;
    if (this.dims.norm === "rms") this.k.rmsNorm(y, x, w, rows, C, normEps);
    else this.k.layerNorm(y, x, w, b, rows, C, normEps);
  }

  private embedTokens(y: number, ids: number, rows: number): void {
    const table = this.weights.embedTokens;
    const m = this.stream?.streamsEmbeddings && this.step ? this.stream.embRowsMat(this.step, table) : table;
    const E = this.dims.E;
    switch (m.dtype) {
      case "f32":
        return this.k.embedGather(y, m.w, ids, rows, E);
      case "f16":
        return this.k.embedGatherF16(y, m.w, ids, rows, E);
      case "int8":
        return this.k.embedGatherI8(y, m.w, m.s, ids, rows, E, m.g);
      case "q4":
        return this.k.embedGatherQ4(y, m.w, m.s, ids, rows, E);
    }
  }

  private activation(ptr: number, n: number): void {
    switch (this.dims.activation) {
      case "relu":
        return this.k.relu(ptr, ptr, n);
      case "gelu":
        return this.k.gelu(ptr, ptr, n);
      case "gelu_tanh":
        return this.k.geluTanh(ptr, ptr, n);
      case "silu":
        return this.k.silu(ptr, ptr, n);
    }
  }

  /** Layer i's weights: resident, or read into the slot now (from a synchronous checkpoint). */
  layerWeights(i: number): LayerWeights {
    this.checkLayer(i);
    return this.stream ? this.stream.layer(i) : this.weights.layers[i];
  }

  private checkLayer(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.dims.L) throw new Error(`wasm-lm: layer ${i} does not exist (0 … ${this.dims.L - 1})`);
  }

  /**
   * Make layer i's weights ready for layer(i): a no-op for resident layers; for streamed ones,
   * read it into the slot — from an asynchronous source, with layer i + 1 (wrapping to 0 for the
   * next pass) fetched in the background meanwhile.
   */
  async prepareLayer(i: number): Promise<void> {
    this.checkLayer(i);
    await this.stream?.prepareLayer(i);
  }

  /**
   * Make the step's token embeddings ready for embed(s): a no-op when the embedding is resident;
   * when it streams, the rows of the step's tokens (each distinct id once) into the step's scratch.
   */
  async prepareEmbed(s: Step): Promise<void> {
    await this.stream?.prepareEmbed(s, this.weights.embedTokens);
  }

  /** x = embed_tokens(ids) (· project_in) (+ embed_positions(positions)). */
  embed(s: Step): void {
    const { k, dims: d, weights: w } = this;
    const streamed = this.streamsEmbeddings;
    if (streamed && !this.stream!.embedPrepared(s))
      throw new Error("wasm-lm: this model streams its embeddings: await prepareEmbed(step) before embed(step)");
    const rows = s.B * s.T;
    this.arena.i32(s.idsPtr, rows).set(streamed ? s.localIds : s.ids);
    if (d.project) {
      this.embedTokens(s.xn, s.idsPtr, rows);
      this.linear(s.x, s.xn, { dtype: "f32", w: w.projectIn, s: 0, g: 0 }, 0, rows, d.E, d.C);
    } else {
      this.embedTokens(s.x, s.idsPtr, rows);
    }
    if (d.positions === "learned") {
      this.arena.i32(s.posPtr, rows).set(streamed ? s.localPos : s.positions);
      k.embedGather(s.xn, streamed ? s.posRows : w.embedPositions, s.posPtr, rows, d.C);
      k.add(s.x, s.x, s.xn, rows * d.C);
    }
  }

  /** Decoder layer i on the step's residual stream, with any weights (default: the resident ones). */
  layer(i: number, s: Step, w: LayerWeights = this.layerWeights(i)): void {
    const { k, dims: d } = this;
    const { C, KV, F, H, Hkv, D } = d;
    const rows = s.B * s.T;
    const n = rows * C;

    // Attention block. Pre-norm: x + attn(norm(x)). Post-norm (OPT-350M): norm(x + attn(x)).
    const attnIn = d.preNorm ? s.xn : s.x;
    if (d.preNorm) this.norm(s.xn, s.x, w.attnNormW, w.attnNormB, rows);
    this.linears(attnIn, rows, C, [
      { y: s.q, m: w.q, b: w.qB, N: C },
      { y: s.k, m: w.k, b: w.kB, N: KV },
      { y: s.v, m: w.v, b: w.vB, N: KV },
    ]);
    if (d.positions === "rope") {
      k.rope(s.q, s.cs, rows, H, D);
      k.rope(s.k, s.cs, rows, Hkv, D);
    }
    const S = s.past + s.T; // (attentions are collected only with one cache: every row's past is s.past)
    const scale = attnScale(d, i);
    const collected = s.collectAttentions ? new Float32Array(s.B * H * s.T * S) : null;
    // Each batch row's keys and values into its cache, then every row's heads in one region (one
    // region per row when the probabilities are collected: they share one buffer).
    const heads: SplitJob[] = [];
    for (let b = 0; b < s.B; b++) {
      const q = b * s.T * C * 4;
      const kv = b * s.T * KV * 4;
      const { cache: c, b: j, past } = s.rows[b];
      const [kCache, vCache, maxCtx] = [c.k[i][j], c.v[i][j], c.maxCtx];
      // Each row's cache says its element type (continuous batching may mix them).
      const f16 = c.dtype === "f16";
      const store = f16 ? k.kvStoreF16 : k.kvStore;
      store(kCache, s.k + kv, s.T, past, Hkv, D, maxCtx);
      store(vCache, s.v + kv, s.T, past, Hkv, D, maxCtx);
      const [out, keyMask, probs, scratch, T] = [s.att + q, c.mask[j], s.probs, s.scores, s.T];
      heads.push(
        splitJob(
          f16 ? "attentionF16" : "attention",
          { out, q: s.q + q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0: 0, h1: H },
          s.scoresStride,
        ),
      );
      if (collected) {
        this.run(heads.splice(0), H > 1);
        collected.set(this.arena.f32(s.probs, H * s.T * S), b * H * s.T * S);
      }
    }
    this.run(heads, H > 1 || s.B > 1);
    if (collected) s.attentions[i] = collected;
    this.linear(s.q, s.att, w.o, w.oB, rows, C, C);
    k.add(s.x, s.x, s.q, n);
    if (!d.preNorm) this.norm(s.x, s.x, w.attnNormW, w.attnNormB, rows);

    // MLP block: down(act(up(h))), or down(silu(gate(h)) · up(h)).
    const mlpIn = d.preNorm ? s.xn : s.x;
    if (d.preNorm) this.norm(s.xn, s.x, w.mlpNormW, w.mlpNormB, rows);
    if (d.mlp === "gated") {
      this.linears(mlpIn, rows, C, [
        { y: s.ffn, m: w.gate, b: w.gateB, N: F },
        { y: s.ffnUp, m: w.up, b: w.upB, N: F },
      ]);
      k.swiglu(s.ffn, s.ffn, s.ffnUp, rows * F);
    } else {
      this.linear(s.ffn, mlpIn, w.up, w.upB, rows, C, F);
      this.activation(s.ffn, rows * F);
    }
    this.linear(s.q, s.ffn, w.down, w.downB, rows, F, C);
    k.add(s.x, s.x, s.q, n);
    if (!d.preNorm) this.norm(s.x, s.x, w.mlpNormW, w.mlpNormB, rows);

    if (i === d.L - 1) {
      // The caches now hold this step's positions.
      s.rows.forEach((r, b) => {
        r.cache.length = r.past + s.T;
        r.cache.seen[r.b] = s.seenAfter[b];
      });
    }
  }

  /** The final norm and project_out applied to the given rows of x, written to s.lnE as (R, E). */
  private finalRows(s: Step, rowIdx: number[]): number {
    const { dims: d, weights: w } = this;
    const R = rowIdx.length;
    if (R > s.maxLogitRows) throw new Error(`wasm-lm: ${R} logit rows requested, step planned for ${s.maxLogitRows}`);
    const src = this.arena.f32(s.x, s.B * s.T * d.C);
    const dst = this.arena.f32(s.lnRows, R * d.C);
    rowIdx.forEach((r, j) => dst.set(src.subarray(r * d.C, (r + 1) * d.C), j * d.C));
    if (d.finalNorm) this.norm(s.lnRows, s.lnRows, w.finalNormW, w.finalNormB, R);
    if (d.project) this.linear(s.lnE, s.lnRows, { dtype: "f32", w: w.projectOut, s: 0, g: 0 }, 0, R, d.C, d.E);
    return d.project ? s.lnE : s.lnRows;
  }

  /**
   * Vocabulary logits for the given rows (indices into the B*T rows of the step), read off the
   * current residual stream through the final norm and lm_head. After the last layer these are the
   * model's logits; after an earlier layer they are the "logit lens" view of that layer.
   */
  logits(s: Step, rowIdx: number[]): Float32Array {
    if (this.streamsEmbeddings)
      throw new Error("wasm-lm: this model streams its lm_head from an asynchronous source: use logitsAsync (or forwardAsync)");
    return drive(this.logitsPass(s, rowIdx));
  }

  /** logits, for every model: a streamed lm_head is read chunk by chunk. */
  async logitsAsync(s: Step, rowIdx: number[]): Promise<Float32Array> {
    return driveAsync(this.logitsPass(s, rowIdx), (need) => this.ready(need));
  }

  /** Meet a pass's need: the step's embedding rows, layer i, or lm_head chunk c (need L + c). */
  private async ready(need: number): Promise<void> {
    if (need === NEED_EMBED) return this.prepareEmbed(this.step!);
    if (need < this.dims.L) return this.prepareLayer(need);
    await this.stream!.prepareHeadChunk(need - this.dims.L);
  }

  /** The body of logits: yields L + c before it needs chunk c of a streamed lm_head in the slot. */
  private *logitsPass(s: Step, rowIdx: number[], out?: Float32Array): Generator<number, Float32Array, void> {
    const { dims: d, weights: w } = this;
    const h = this.finalRows(s, rowIdx);
    const R = rowIdx.length;
    const st = this.stream;
    if (!st?.streamsEmbeddings) {
      this.linear(s.logitsBuf, h, w.lmHead, 0, R, d.E, d.V);
    } else {
      for (let c = 0; c < st.headChunks; c++) {
        yield d.L + c;
        const n0 = c * st.headRows;
        const n = Math.min(st.headRows, d.V - n0);
        this.linear(s.headOut, h, st.head!, 0, R, d.E, n);
        const out = this.arena.f32(s.logitsBuf, R * d.V);
        const part = this.arena.f32(s.headOut, R * n);
        for (let r = 0; r < R; r++) out.set(part.subarray(r * n, (r + 1) * n), r * d.V + n0);
      }
    }
    const logits = this.arena.f32(s.logitsBuf, R * d.V);
    if (!out) return logits.slice();
    if (out.length < logits.length) throw new Error(`wasm-lm: logitsOut holds ${out.length} floats, the logits need ${logits.length}`);
    out.set(logits);
    return out.length === logits.length ? out : out.subarray(0, logits.length);
  }

  /** The lm_head input (final norm, project_out) for every row: (B*T, E). */
  finalHidden(s: Step): Float32Array {
    const rows = s.B * s.T;
    const out = new Float32Array(rows * this.dims.E);
    for (let r0 = 0; r0 < rows; r0 += s.maxLogitRows) {
      const idx = Array.from({ length: Math.min(s.maxLogitRows, rows - r0) }, (_, j) => r0 + j);
      const h = this.finalRows(s, idx);
      out.set(this.arena.f32(h, idx.length * this.dims.E), r0 * this.dims.E);
    }
    return out;
  }

  /** A copy of the residual stream: (B*T, C). */
  hidden(s: Step): Float32Array {
    return this.arena.f32(s.x, s.B * s.T * this.dims.C).slice();
  }

  /**
   * Run the whole model on a batch: embeddings, every layer, logits for the chosen rows. For a
   * model streaming its layers from an asynchronous source, use forwardAsync.
   */
  forward(ids: ArrayLike<number>[], opts: ForwardOptions = {}): ForwardResult {
    if (this.streamsEmbeddings)
      throw new Error("wasm-lm: this model streams its embeddings from an asynchronous source: use forwardAsync or generate");
    return drive(this.pass(ids, opts));
  }

  /** forward, awaiting each layer's weights (see prepareLayer): works for every model. */
  async forwardAsync(ids: ArrayLike<number>[], opts: ForwardOptions = {}): Promise<ForwardResult> {
    return driveAsync(this.pass(ids, opts), (need) => this.ready(need));
  }

  /**
   * The body of forward. Before each part that may need weights from the checkpoint it yields
   * what it needs — NEED_EMBED (the step's token rows), layer i, or L + c (lm_head chunk c) — and
   * the driver gets it ready: synchronously (forward) or by awaiting a fetch (forwardAsync).
   */
  private *pass(ids: ArrayLike<number>[], opts: ForwardOptions): Generator<number, ForwardResult, void> {
    const which = opts.logits ?? "all";
    const B = ids.length;
    const T = ids[0]?.length ?? 0;
    const rowIdx =
      which === "all"
        ? Array.from({ length: B * T }, (_, r) => r)
        : which === "last"
          ? Array.from({ length: B }, (_, b) => b * T + T - 1)
          : [];
    const s = this.begin(ids, {
      ...opts,
      collectAttentions: opts.outputAttentions,
      maxLogitRows: opts.maxLogitRows ?? Math.max(1, rowIdx.length),
    });
    try {
      if (this.streamsEmbeddings) yield NEED_EMBED;
      this.embed(s);
      const layers: Float32Array[] = [];
      const embeddings = opts.outputHiddenStates ? this.hidden(s) : undefined;
      for (let i = 0; i < this.dims.L; i++) {
        yield i;
        this.layer(i, s, this.layerWeights(i));
        if (opts.outputHiddenStates) layers.push(this.hidden(s));
      }
      const logits = rowIdx.length ? yield* this.logitsPass(s, rowIdx, opts.logitsOut) : new Float32Array(0);
      const result: ForwardResult = { logits, logitsShape: [B, which === "all" ? T : which === "last" ? 1 : 0, this.dims.V] };
      if (opts.outputHiddenStates) result.hiddenStates = { embeddings: embeddings!, layers, final: this.finalHidden(s) };
      if (opts.outputAttentions) result.attentions = s.attentions;
      return result;
    } finally {
      s.end();
    }
  }
}

/** The step's local row maps when the embeddings are resident (unused then). */
const NONE = new Int32Array(0);

/** Runs a pass whose needs are met inside it (resident weights, or a synchronous checkpoint). */
function drive<T>(pass: Generator<number, T, void>): T {
  let r = pass.next();
  while (!r.done) r = pass.next();
  return r.value;
}

/**
 * Runs a pass, awaiting `ready(need)` for each thing it yields; if that fails, the pass is ended
 * first (its finally releases the step) and the error rethrown.
 */
async function driveAsync<T>(pass: Generator<number, T, void>, ready: (need: number) => Promise<void>): Promise<T> {
  let r = pass.next();
  while (!r.done) {
    try {
      await ready(r.value);
    } catch (e) {
      pass.throw(e);
      throw e;
    }
    r = pass.next();
  }
  return r.value;
}
