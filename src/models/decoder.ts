// OPT (transformers' modeling_opt.py), layer by layer, on the wasm kernels.
//
//   step = model.begin(ids, { cache, attentionMask })   plan + reserve scratch for this call
//   model.embed(step)                                   x = embed_tokens(ids)·project_in + embed_positions(pos + 2)
//   model.layer(i, step)                                x = decoder layer i (x)        (any weights: resident or not)
//   model.logits(step, rows)                            lm_head(project_out(final_norm(x[rows])))
//   step.end()                                          scratch released
//
// `forward` chains them. Memory: weights are loaded once into the arena; a KV cache is a region
// of the arena sized from the requested context; each call's scratch is planned from its shape,
// reserved before any kernel runs (memory never grows during a pass) and released afterwards.
import { Arena, OutOfMemoryError, align } from "../../arena.js";
import { DTYPE_SIZE } from "../../formats/types.js";
import { loadWasm, type KernelExports, type LoadWasmOptions, type Wasm } from "../../wasm.js";
import { defaultThreads, ThreadPool } from "../../threads.js";
import { isAsyncSource, type AsyncTensorSource, type TensorSource } from "../../formats/types.js";
import { LAYER_NORM_EPS, optDims, POSITION_OFFSET, type OptConfig, type OptDims } from "./config.js";
import { CheckpointNames, DEFAULT_INT8_GROUP, layerBytes, WEIGHT_DTYPES, WeightLoader, weightBytes, type Mat, type OptLayerWeights, type OptWeights, type WeightDType, type WeightFormat } from "./weights.js";

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
   * kernels) or "int8" (a quarter; symmetric per-row, per-group scales, quantized at load).
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
   * The token embedding's (= the tied lm_head's) dtype. Default: dtype, except f16 when dtype is
   * int8 (int8 there costs accuracy, see the README). "int8" halves the largest tensor again.
   */
  embedDType?: WeightDType;
}

/** Below this many multiply-adds a linear runs on the calling thread: waking workers costs more. */
const PARALLEL_MIN_MACS = 1 << 16;

/** The keys and values of every layer for a batch of B sequences, plus which positions are real. */
export class KVCache {
  /** Positions filled so far (the same for every sequence of the batch: padding keeps them aligned). */
  length = 0;
  /** Real (unpadded) tokens seen so far per sequence: the next position id is this. */
  readonly seen: number[];
  constructor(
    readonly B: number,
    readonly maxCtx: number,
    /** k[layer][b], v[layer][b]: (H, maxCtx, D) f32 each. */
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

/** One call's view of the model: the batch, its scratch buffers, and where it is in the cache. */
export interface Step {
  B: number;
  T: number;
  /** Cache length before this step. */
  past: number;
  cache: KVCache;
  ids: Int32Array; // (B*T)
  positions: Int32Array; // (B*T) position-table rows
  /** Real tokens per sequence once this step is in the cache. */
  seenAfter: number[];
  collectAttentions: boolean;
  /** Scratch pointers, all (B*T, ·) f32 unless noted. */
  x: number; // (rows, C) the residual stream
  xn: number; // (rows, max(C, E))
  q: number; k: number; v: number; att: number; // (rows, C)
  ffn: number; // (rows, F)
  idsPtr: number; posPtr: number; // i32 (rows)
  scores: number; // (past + T) f32 per thread, scoresStride bytes apart
  scoresStride: number;
  quantScratch: number; // per thread: rows of compressed weights expanded for a GEMM
  probs: number; // (H, T, past + T) f32, or 0
  lnRows: number; lnE: number; logitsBuf: number; maxLogitRows: number; // logits scratch
  /**
   * Streamed embeddings: the step's token rows (in the embedding's dtype) and position rows (f32),
   * and for each of its tokens the row of its id and of its position there.
   */
  embRows: number; localIds: Int32Array; posRows: number; localPos: Int32Array;
  /** Streamed lm_head: one chunk's logits, (R, rows per chunk). */
  headOut: number;
  /** Filled by layer() when collectAttentions: per layer, (B, H, T, past+T). */
  attentions: Float32Array[];
  end(): void;
}

export interface BeginOptions {
  /** Continue this cache (it must have room for T more positions). Default: a cache for this call only. */
  cache?: KVCache;
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
  if (embed !== undefined && !WEIGHT_DTYPES.includes(embed)) throw new Error(`wasm-lm: embedDType '${String(embed)}' is not supported (${WEIGHT_DTYPES.join(", ")})`);
  return embed === undefined ? { dtype, group } : { dtype, group, embed };
}

async function resolveThreads(requested: number | undefined): Promise<number> {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1 || requested > 256) throw new Error(`wasm-lm: threads = ${requested} must be an integer in [1, 256]`);
    return requested;
  }
  return defaultThreads();
}

export class OptModel {
  readonly k: KernelExports;
  readonly d: OptDims;
  private openSteps = 0;
  /** The open step (its scratch is what kernels needing scratch use). */
  private step: Step | null = null;

  /** Where streamed layers are read into, when layers are not resident. */
  private slot: OptLayerWeights | null = null;
  /**
   * Kept only when layers are streamed: it holds the checkpoint. With resident layers the model
   * drops it, so the file's bytes can be collected — no second copy of the weights outside wasm.
   */
  private readonly loader: WeightLoader | null;
  private slotLayer = -1;

  private constructor(
    readonly config: OptConfig,
    readonly wasm: Wasm,
    readonly arena: Arena,
    readonly weights: OptWeights,
    loader: WeightLoader,
    /** Worker threads sharing the memory, or null for one thread. */
    readonly pool: ThreadPool | null,
  ) {
    this.k = wasm.k;
    this.d = optDims(config);
    const streamed = weights.layers.length === 0;
    this.loader = streamed ? loader : null;
    if (streamed) {
      const start = arena.mark();
      this.slot = loader.allocLayer();
      if (weights.lmHead.w === 0) {
        // The lm_head streams through the layer slot's memory in chunks of rows (the slot is free
        // once the last layer has run).
        const m = weights.lmHead;
        const E = this.d.E;
        const rowBytes = m.dtype === "int8" ? E + (E / m.g) * 4 : E * (m.dtype === "f16" ? 2 : 4);
        this.headRows = Math.min(this.d.V, Math.floor((arena.mark() - start - 64) / rowBytes));
        this.head = { ...m, w: start, s: m.dtype === "int8" ? align(start + this.headRows * E, 64) : 0 };
      }
    }
    const maxK = Math.max(this.d.C, this.d.F, this.d.E);
    this.quantScratchBytes = align(this.k.quantRows() * maxK * 4, 64);
  }

  /** Bytes of scratch a compressed-weight GEMM needs per thread. */
  private readonly quantScratchBytes: number;
  /** Streamed lm_head: the chunk in the slot's memory, and rows per chunk (0: resident). */
  private head: Mat | null = null;
  private headRows = 0;
  /** Which chunk of the lm_head the slot holds (−1: none). */
  private headChunk = -1;

  /** Whether the token embedding and lm_head are read from the checkpoint (residentEmbeddings: false). */
  get streamsEmbeddings(): boolean {
    return this.head !== null;
  }

  private get headChunks(): number {
    return this.head ? Math.ceil(this.d.V / this.headRows) : 0;
  }

  /** The dtype weight matrices are held in. */
  get dtype(): WeightDType {
    return this.weights.format.dtype;
  }

  /** Validate the checkpoint against the config, then copy the weights into WebAssembly memory. */
  static async load(config: OptConfig, source: TensorSource | AsyncTensorSource, opts: LoadOptions = {}): Promise<OptModel> {
    const d = optDims(config);
    const label = opts.label ?? "checkpoint";
    const resident = opts.residentLayers ?? true;
    const residentEmbeddings = opts.residentEmbeddings ?? true;
    if (!residentEmbeddings && (resident || !isAsyncSource(source))) {
      throw new Error(`${label}: residentEmbeddings false needs residentLayers false and an AsyncTensorSource (a checkpoint read by ranges)`);
    }
    const bytes = weightBytes(d, weightFormat(opts), resident ? d.L : 0, residentEmbeddings) + (resident ? 0 : layerBytes(d, weightFormat(opts)));
    if (bytes > 3.5 * 2 ** 30) {
      throw new Error(`${label}: config.json needs ${(bytes / 2 ** 30).toFixed(2)} GiB of ${opts.dtype ?? "f32"} weights ` +
        `(vocab_size ${d.V}, hidden_size ${d.C}, num_hidden_layers ${d.L}, ffn_dim ${d.F}); ` +
        `wasm32 memory holds at most 4 GiB`);
    }
    const names = new CheckpointNames(source, d, label);
    let fmt = weightFormat(opts);
    if (names.int8Group) {
      // A file written by `wasm-lm quantize`: its int8 matrices load as they are.
      if (opts.dtype !== undefined && opts.dtype !== "int8") throw new Error(`${label}: the checkpoint is int8-quantized; load it with dtype int8 (asked: ${opts.dtype})`);
      if (opts.int8Group !== undefined && opts.int8Group !== names.int8Group) throw new Error(`${label}: the checkpoint's int8 group is ${names.int8Group}, asked ${opts.int8Group}`);
      fmt = { dtype: "int8", group: names.int8Group, embed: fmt.embed };
    }
    if (names.int8Embed) {
      if (opts.embedDType !== undefined && opts.embedDType !== "int8") throw new Error(`${label}: the checkpoint's token embedding is int8-quantized; load it with embedDType int8 (asked: ${opts.embedDType})`);
      fmt = { ...fmt, embed: "int8" };
    }
    const threads = await resolveThreads(opts.threads);
    // Memory starts at the weights' size (at most 16 MiB) and grows as the arena reserves: a model
    // streaming its weights needs only a few MB.
    const need = weightBytes(d, fmt, resident ? d.L : 0, residentEmbeddings) + (resident ? 0 : layerBytes(d, fmt));
    const wasm = await loadWasm({ ...opts, shared: threads > 1, initialBytes: opts.initialBytes ?? Math.min(need, 16 << 20) });
    const arena = new Arena(wasm);
    const loader = new WeightLoader(arena, wasm.k, source, names, d, fmt, label);
    const weights = await loader.all(opts.onProgress, resident, residentEmbeddings);
    const pool = threads > 1 ? await ThreadPool.create(wasm, threads) : null;
    return new OptModel(config, wasm, arena, weights, loader, pool);
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

  /** A KV cache for B sequences of up to maxCtx positions (default: the model's maximum). */
  createCache(B = 1, maxCtx = this.d.maxPositions): KVCache {
    const { L, C } = this.d;
    if (!Number.isInteger(B) || B < 1) throw new Error(`wasm-lm: batch size must be a positive integer, got ${B}`);
    if (!Number.isInteger(maxCtx) || maxCtx < 1 || maxCtx > this.d.maxPositions) {
      throw new Error(`wasm-lm: cache length ${maxCtx} is outside [1, max_position_embeddings=${this.d.maxPositions}]`);
    }
    const start = this.arena.mark();
    const per = maxCtx * C * 4;
    this.arena.reserve(2 * L * B * (per + 64) + B * (maxCtx + 64));
    const k: number[][] = [];
    const v: number[][] = [];
    for (let l = 0; l < L; l++) {
      k.push(Array.from({ length: B }, () => this.arena.alloc(per)));
      v.push(Array.from({ length: B }, () => this.arena.alloc(per)));
    }
    const mask = Array.from({ length: B }, () => this.arena.alloc(maxCtx));
    return new KVCache(B, maxCtx, k, v, mask, this.arena, start, this.arena.mark());
  }

  /** Plan and reserve this call's scratch; validate ids, mask and cache room. */
  begin(ids: ArrayLike<number>[], opts: BeginOptions = {}): Step {
    const { V, C, E, F, H } = this.d;
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

    const ownCache = !opts.cache;
    if (opts.cache && !opts.cache.belongsTo(this.arena)) throw new Error("wasm-lm: this KV cache belongs to another model");
    if (opts.cache?.released) throw new Error("wasm-lm: this KV cache was released");
    const cache = opts.cache ?? this.createCache(B, Math.min(T, this.d.maxPositions));
    if (cache.B !== B) throw new Error(`wasm-lm: cache is for batch ${cache.B}, input has batch ${B}`);
    const past = cache.length;
    if (past + T > cache.maxCtx) {
      if (ownCache) cache.release();
      throw new Error(`wasm-lm: ${past} cached + ${T} new positions exceed the context of ${cache.maxCtx}` +
        (cache.maxCtx === this.d.maxPositions ? " (max_position_embeddings)" : " (the cache's size)"));
    }

    const rows = B * T;
    const S = past + T;
    const R = Math.max(1, Math.min(opts.maxLogitRows ?? rows, rows));
    const W = Math.max(C, E);
    const f = (n: number) => align(n * 4, 64);
    const parts = this.threads;
    // Streamed embeddings: the step's token rows in the embedding's dtype (with int8 scales); room
    // for f32 rows bounds every dtype.
    const embBytes = this.head ? f(rows * (E + 2 * E / (this.head.g || E))) * 4 : 0;
    const plan = f(rows * C) + f(rows * W) + 4 * f(rows * C) + f(rows * F) + 2 * f(rows) + parts * f(S) +
      (opts.collectAttentions ? f(H * T * S) : 0) + f(R * C) + f(R * E) + f(R * V) + 64 +
      (this.dtype === "f32" ? 0 : parts * this.quantScratchBytes) +
      (this.head ? embBytes + f(rows * C) + f(R * this.headRows) : 0);

    const arena = this.arena;
    const mark = arena.mark();
    try {
      arena.reserve(plan);
    } catch (e) {
      if (ownCache) cache.release();
      throw new OutOfMemoryError(`${(e as Error).message} (a forward pass of batch ${B} × ${T} tokens over ${S} positions)`);
    }
    arena.frozen = true;
    const a = (n: number) => arena.alloc(n * 4);
    this.openSteps++;
    let ended = false;
    const step: Step = {
      B, T, past, cache,
      ids: Int32Array.from(ids.flatMap((r) => Array.from(r))),
      positions: new Int32Array(rows),
      seenAfter: [...cache.seen],
      collectAttentions: !!opts.collectAttentions,
      x: a(rows * C), xn: a(rows * W), q: a(rows * C), k: a(rows * C), v: a(rows * C), att: a(rows * C),
      ffn: a(rows * F), idsPtr: a(rows), posPtr: a(rows), scores: arena.alloc(parts * f(S)), scoresStride: f(S),
      quantScratch: this.dtype === "f32" ? 0 : arena.alloc(parts * this.quantScratchBytes),
      probs: opts.collectAttentions ? a(H * T * S) : 0,
      lnRows: a(R * C), lnE: a(R * E), logitsBuf: a(R * V), maxLogitRows: R,
      embRows: this.head ? arena.alloc(embBytes) : 0,
      localIds: this.head ? new Int32Array(rows) : NONE, posRows: this.head ? a(rows * C) : 0, localPos: this.head ? new Int32Array(rows) : NONE,
      headOut: this.head ? a(R * this.headRows) : 0,
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
    };

    this.step = step;
    // Positions as transformers computes them: cumsum(mask)·mask − 1 over past + new, then + 2.
    // Padding gets −1 + 2 = 1; the key mask keeps padded keys out of every query's softmax.
    for (let b = 0; b < B; b++) {
      const m = arena.u8(cache.mask[b], cache.maxCtx);
      let seen = cache.seen[b];
      for (let t = 0; t < T; t++) {
        const real = mask ? mask[b][t] !== 0 : true;
        m[past + t] = real ? 1 : 0;
        if (real) seen++;
        step.positions[b * T + t] = (real ? seen - 1 : -1) + POSITION_OFFSET;
      }
      step.seenAfter[b] = seen;
    }
    return step;
  }

  /** y = x·Wᵀ + b on the weights' dtype; split by output rows over the threads when it pays. */
  private linear(y: number, x: number, m: Mat, b: number, T: number, K: number, N: number): void {
    const pool = this.pool && !this.pool.isClosed && T * K * N >= PARALLEL_MIN_MACS ? this.pool : null;
    const scratch = this.step?.quantScratch ?? 0;
    // Output rows in multiples of 16 per thread: whole register tiles.
    switch (m.dtype) {
      case "f32":
        if (pool) pool.run("linear", [y, x, m.w, b, T, K, N, 0, N], 7, N, 16);
        else this.k.linear(y, x, m.w, b, T, K, N, 0, N);
        return;
      case "f16":
        if (pool) pool.run("linearF16", [y, x, m.w, b, T, K, N, 0, N, scratch], 7, N, 16, 9, this.quantScratchBytes);
        else this.k.linearF16(y, x, m.w, b, T, K, N, 0, N, scratch);
        return;
      case "int8":
        if (pool) pool.run("linearI8", [y, x, m.w, m.s, b, T, K, N, 0, N, m.g, scratch], 8, N, 16, 11, this.quantScratchBytes);
        else this.k.linearI8(y, x, m.w, m.s, b, T, K, N, 0, N, m.g, scratch);
        return;
    }
  }

  private embedTokens(y: number, ids: number, rows: number): void {
    const m = this.head && this.step ? this.embRowsMat(this.step) : this.weights.embedTokens;
    const E = this.d.E;
    switch (m.dtype) {
      case "f32": return this.k.embedGather(y, m.w, ids, rows, E);
      case "f16": return this.k.embedGatherF16(y, m.w, ids, rows, E);
      case "int8": return this.k.embedGatherI8(y, m.w, m.s, ids, rows, E, m.g);
    }
  }

  private attention(out: number, q: number, k: number, v: number, mask: number, probs: number, s: Step, cacheLen: number): void {
    const { H, D } = this.d;
    const args = [out, q, k, v, mask, probs, s.scores, s.T, s.past, H, D, cacheLen, 0, H];
    if (this.pool && !this.pool.isClosed && H > 1) this.pool.run("attention", args, 12, H, 1, 6, s.scoresStride);
    else this.k.attention(...(args as Parameters<KernelExports["attention"]>));
  }

  private activation(ptr: number, n: number): void {
    switch (this.d.activation) {
      case "relu": return this.k.relu(ptr, ptr, n);
      case "gelu": return this.k.gelu(ptr, ptr, n);
      case "gelu_tanh": return this.k.geluTanh(ptr, ptr, n);
      case "silu": return this.k.silu(ptr, ptr, n);
    }
  }

  /** Layer i's weights: resident, or read into the slot now (from a synchronous checkpoint). */
  layerWeights(i: number): OptLayerWeights {
    this.checkLayer(i);
    if (!this.slot) return this.weights.layers[i];
    if (this.slotLayer !== i) {
      if (this.loader!.remote) {
        throw new Error(`wasm-lm: layer ${i} is not in memory: this model streams its layers from an asynchronous source, ` +
          "so run it with forwardAsync or generate (or await prepareLayer(i) before layer(i))");
      }
      this.slotLayer = -1; // a failed read must not leave a half-filled slot labelled as layer i
      this.loader!.fillLayer(i, this.slot);
      this.slotLayer = i;
    }
    return this.slot;
  }

  private checkLayer(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.d.L) throw new Error(`wasm-lm: layer ${i} does not exist (0 … ${this.d.L - 1})`);
  }

  /**
   * What is being fetched while the current layer runs: the next layer, or the next lm_head chunk
   * when it streams too. Keys: layer i is i; lm_head chunk c is L + c; after the last comes 0.
   */
  private prefetch: { key: number; bytes: Promise<Fetched> } | null = null;

  private fetchKey(key: number): Promise<Fetched> {
    const loader = this.loader!;
    if (key < this.d.L) return loader.fetchLayer(key);
    const r0 = (key - this.d.L) * this.headRows;
    return loader.fetchRows(loader.headName, r0, Math.min(this.headRows, this.d.V - r0));
  }

  /** The fetched bytes of `key`, and the next key's fetch started (its failure reported when awaited). */
  private async fetchInTurn(key: number): Promise<Fetched> {
    const ahead = this.prefetch;
    this.prefetch = null;
    // A fetch of something else (an inspector reading the lm_head between layers, say) is let
    // finish first: fetches take the loader's two buffers by turns, one at a time.
    if (ahead && ahead.key !== key) await ahead.bytes.catch(() => undefined);
    const bytes = await (ahead?.key === key ? ahead.bytes : this.fetchKey(key));
    const next = (key + 1) % (this.d.L + this.headChunks);
    if (next !== key) {
      const p = this.fetchKey(next);
      p.catch(() => undefined); // a failure is reported to whoever awaits it, not as unhandled
      this.prefetch = { key: next, bytes: p };
    }
    return bytes;
  }

  /**
   * Make layer i's weights ready for layer(i): a no-op for resident layers; for streamed ones,
   * read it into the slot — from an asynchronous source, with layer i + 1 (wrapping to 0 for the
   * next pass) fetched in the background meanwhile.
   */
  async prepareLayer(i: number): Promise<void> {
    this.checkLayer(i);
    if (!this.slot || this.slotLayer === i) return;
    const loader = this.loader!;
    if (!loader.remote) {
      this.layerWeights(i);
      return;
    }
    this.slotLayer = -1;
    this.headChunk = -1;
    const bytes = await this.fetchInTurn(i);
    loader.fillLayer(i, this.slot, bytes as Map<string, Uint8Array>);
    this.slotLayer = i;
  }

  /** Streamed lm_head: chunk c's rows into the slot's memory. */
  private async prepareHeadChunk(c: number): Promise<void> {
    if (this.headChunk === c) return;
    this.slotLayer = -1;
    this.headChunk = -1;
    const rows = await this.fetchInTurn(this.d.L + c) as RowBytes;
    this.loader!.fillTableRows(this.head!, this.loader!.headName, 0, Math.min(this.headRows, this.d.V - c * this.headRows), rows);
    this.headChunk = c;
  }

  /**
   * Make the step's token embeddings ready for embed(s): a no-op when the embedding is resident;
   * when it streams, the rows of the step's tokens (each distinct id once) into the step's scratch.
   */
  async prepareEmbed(s: Step): Promise<void> {
    if (!this.head) return;
    const loader = this.loader!;
    // Each distinct token id's row and each distinct position's row, read in parallel (a few KB
    // each), placed in the step's scratch; localIds / localPos say which row each token uses.
    const gather = async (table: string, m: Mat, keys: Int32Array, local: Int32Array) => {
      const row = new Map<number, number>();
      for (const key of keys) if (!row.has(key)) row.set(key, row.size);
      const full = loader.names.full(table);
      const info = loader.src.get(full)!;
      const rb = info.shape[1] * DTYPE_SIZE[info.dtype];
      const got = await Promise.all([...row.keys()].map(async (key) => ({
        raw: await loader.remote!.readRawAsync(full, key * rb, rb),
        scale: info.dtype === "I8" ? await loader.remote!.readRawAsync(`${full}_scale`, key * (info.shape[1] / m.g) * 4, (info.shape[1] / m.g) * 4) : null,
      })));
      got.forEach((r, j) => loader.fillTableRows(m, table, j, 1, r));
      keys.forEach((key, t) => (local[t] = row.get(key)!));
    };
    await Promise.all([
      gather("embed_tokens.weight", this.embRowsMat(s), s.ids, s.localIds),
      gather("embed_positions.weight", { dtype: "f32", w: s.posRows, s: 0, g: 0 }, s.positions, s.localPos),
    ]);
    this.embedReady.add(s);
  }

  private readonly embedReady = new WeakSet<Step>();

  private embRowsMat(s: Step): Mat {
    const m = this.weights.embedTokens;
    const rows = s.B * s.T;
    return { ...m, w: s.embRows, s: m.dtype === "int8" ? align(s.embRows + rows * this.d.E, 64) : 0 };
  }

  /** Whether layers are read from the checkpoint as passes reach them (residentLayers: false). */
  get streamsLayers(): boolean {
    return this.slot !== null;
  }

  /** x = embed_tokens(ids) (· project_in) + embed_positions(positions). */
  embed(s: Step): void {
    const { k, d, weights: w } = this;
    if (this.head && !this.embedReady.has(s)) throw new Error("wasm-lm: this model streams its embeddings: await prepareEmbed(step) before embed(step)");
    const rows = s.B * s.T;
    this.arena.i32(s.idsPtr, rows).set(this.head ? s.localIds : s.ids);
    this.arena.i32(s.posPtr, rows).set(this.head ? s.localPos : s.positions);
    if (d.project) {
      this.embedTokens(s.xn, s.idsPtr, rows);
      this.linear(s.x, s.xn, { dtype: "f32", w: w.projectIn, s: 0, g: 0 }, 0, rows, d.E, d.C);
    } else {
      this.embedTokens(s.x, s.idsPtr, rows);
    }
    k.embedGather(s.xn, this.head ? s.posRows : w.embedPositions, s.posPtr, rows, d.C);
    k.add(s.x, s.x, s.xn, rows * d.C);
  }

  /** Decoder layer i on the step's residual stream, with any weights (default: the resident ones). */
  layer(i: number, s: Step, w: OptLayerWeights = this.layerWeights(i)): void {
    const { k, d } = this;
    const { C, F, H, D } = d;
    const rows = s.B * s.T;
    const n = rows * C;
    const eps = LAYER_NORM_EPS;
    const cache = s.cache;

    // Self-attention block. Pre-LN: x + attn(LN(x)). Post-LN (e.g. OPT-350M): LN(x + attn(x)).
    const attnIn = d.preNorm ? s.xn : s.x;
    if (d.preNorm) k.layerNorm(s.xn, s.x, w.attnNormW, w.attnNormB, rows, C, eps);
    this.linear(s.q, attnIn, w.q, w.qB, rows, C, C);
    this.linear(s.k, attnIn, w.k, w.kB, rows, C, C);
    this.linear(s.v, attnIn, w.v, w.vB, rows, C, C);
    const S = s.past + s.T;
    const probs = s.collectAttentions ? new Float32Array(s.B * H * s.T * S) : null;
    for (let b = 0; b < s.B; b++) {
      const off = b * s.T * C * 4;
      k.kvStore(cache.k[i][b], s.k + off, s.T, s.past, H, D, cache.maxCtx);
      k.kvStore(cache.v[i][b], s.v + off, s.T, s.past, H, D, cache.maxCtx);
      this.attention(s.att + off, s.q + off, cache.k[i][b], cache.v[i][b], cache.mask[b], s.probs, s, cache.maxCtx);
      if (probs) probs.set(this.arena.f32(s.probs, H * s.T * S), b * H * s.T * S);
    }
    if (probs) s.attentions[i] = probs;
    this.linear(s.q, s.att, w.o, w.oB, rows, C, C);
    k.add(s.x, s.x, s.q, n);
    if (!d.preNorm) k.layerNorm(s.x, s.x, w.attnNormW, w.attnNormB, rows, C, eps);

    // Feed-forward block.
    const ffnIn = d.preNorm ? s.xn : s.x;
    if (d.preNorm) k.layerNorm(s.xn, s.x, w.ffnNormW, w.ffnNormB, rows, C, eps);
    this.linear(s.ffn, ffnIn, w.fc1, w.fc1B, rows, C, F);
    this.activation(s.ffn, rows * F);
    this.linear(s.q, s.ffn, w.fc2, w.fc2B, rows, F, C);
    k.add(s.x, s.x, s.q, n);
    if (!d.preNorm) k.layerNorm(s.x, s.x, w.ffnNormW, w.ffnNormB, rows, C, eps);

    if (i === this.d.L - 1) {
      // The cache now holds this step's positions.
      cache.length = S;
      s.seenAfter.forEach((n, b) => (cache.seen[b] = n));
    }
  }

  /** The final norm and project_out applied to the given rows of x, written to s.lnE as (R, E). */
  private finalRows(s: Step, rowIdx: number[]): number {
    const { k, d, weights: w } = this;
    const R = rowIdx.length;
    if (R > s.maxLogitRows) throw new Error(`wasm-lm: ${R} logit rows requested, step planned for ${s.maxLogitRows}`);
    const src = this.arena.f32(s.x, s.B * s.T * d.C);
    const dst = this.arena.f32(s.lnRows, R * d.C);
    rowIdx.forEach((r, j) => dst.set(src.subarray(r * d.C, (r + 1) * d.C), j * d.C));
    if (d.finalNorm) k.layerNorm(s.lnRows, s.lnRows, w.finalNormW, w.finalNormB, R, d.C, LAYER_NORM_EPS);
    if (d.project) this.linear(s.lnE, s.lnRows, { dtype: "f32", w: w.projectOut, s: 0, g: 0 }, 0, R, d.C, d.E);
    return d.project ? s.lnE : s.lnRows;
  }

  /**
   * Vocabulary logits for the given rows (indices into the B*T rows of the step), read off the
   * current residual stream through the final norm and lm_head. After the last layer these are the
   * model's logits; after an earlier layer they are the "logit lens" view of that layer.
   */
  logits(s: Step, rowIdx: number[]): Float32Array {
    if (this.head) throw new Error("wasm-lm: this model streams its lm_head from an asynchronous source: use logitsAsync (or forwardAsync)");
    return drive(this.logitsPass(s, rowIdx));
  }

  /** logits, for every model: a streamed lm_head is read chunk by chunk. */
  async logitsAsync(s: Step, rowIdx: number[]): Promise<Float32Array> {
    return driveAsync(this.logitsPass(s, rowIdx), (need) => this.prepareHeadChunk(need - this.d.L));
  }

  /** The body of logits: yields L + c before it needs chunk c of a streamed lm_head in the slot. */
  private *logitsPass(s: Step, rowIdx: number[]): Generator<number, Float32Array, void> {
    const { d, weights: w } = this;
    const h = this.finalRows(s, rowIdx);
    const R = rowIdx.length;
    if (!this.head) {
      this.linear(s.logitsBuf, h, w.lmHead, 0, R, d.E, d.V);
    } else {
      for (let c = 0; c < this.headChunks; c++) {
        yield d.L + c;
        const n0 = c * this.headRows;
        const n = Math.min(this.headRows, d.V - n0);
        this.linear(s.headOut, h, this.head, 0, R, d.E, n);
        const out = this.arena.f32(s.logitsBuf, R * d.V);
        const part = this.arena.f32(s.headOut, R * n);
        for (let r = 0; r < R; r++) out.set(part.subarray(r * n, (r + 1) * n), r * d.V + n0);
      }
    }
    return this.arena.f32(s.logitsBuf, R * d.V).slice();
  }

  /** The lm_head input (final norm, project_out) for every row: (B*T, E). */
  finalHidden(s: Step): Float32Array {
    const rows = s.B * s.T;
    const out = new Float32Array(rows * this.d.E);
    for (let r0 = 0; r0 < rows; r0 += s.maxLogitRows) {
      const idx = Array.from({ length: Math.min(s.maxLogitRows, rows - r0) }, (_, j) => r0 + j);
      const h = this.finalRows(s, idx);
      out.set(this.arena.f32(h, idx.length * this.d.E), r0 * this.d.E);
    }
    return out;
  }

  /** A copy of the residual stream: (B*T, C). */
  hidden(s: Step): Float32Array {
    return this.arena.f32(s.x, s.B * s.T * this.d.C).slice();
  }

  /**
   * Run the whole model on a batch: embeddings, every layer, logits for the chosen rows. For a
   * model streaming its layers from an asynchronous source, use forwardAsync.
   */
  forward(ids: ArrayLike<number>[], opts: ForwardOptions = {}): ForwardResult {
    if (this.head) throw new Error("wasm-lm: this model streams its embeddings from an asynchronous source: use forwardAsync or generate");
    return drive(this.pass(ids, opts));
  }

  /** forward, awaiting each layer's weights (see prepareLayer): works for every model. */
  async forwardAsync(ids: ArrayLike<number>[], opts: ForwardOptions = {}): Promise<ForwardResult> {
    return driveAsync(this.pass(ids, opts), (need) =>
      need === EMBED ? this.prepareEmbed(this.step!) : need < this.d.L ? this.prepareLayer(need) : this.prepareHeadChunk(need - this.d.L));
  }

  /**
   * The body of forward. Before each part that may need weights from the checkpoint it yields
   * what it needs — EMBED (the step's token rows), layer i, or L + c (lm_head chunk c) — and the
   * driver gets it ready: synchronously (forward) or by awaiting a fetch (forwardAsync).
   */
  private *pass(ids: ArrayLike<number>[], opts: ForwardOptions): Generator<number, ForwardResult, void> {
    const which = opts.logits ?? "all";
    const B = ids.length;
    const T = ids[0]?.length ?? 0;
    const rowIdx = which === "all" ? Array.from({ length: B * T }, (_, r) => r)
      : which === "last" ? Array.from({ length: B }, (_, b) => b * T + T - 1) : [];
    const s = this.begin(ids, {
      ...opts,
      collectAttentions: opts.outputAttentions,
      maxLogitRows: opts.maxLogitRows ?? Math.max(1, rowIdx.length),
    });
    try {
      if (this.head) yield EMBED;
      this.embed(s);
      const layers: Float32Array[] = [];
      const embeddings = opts.outputHiddenStates ? this.hidden(s) : undefined;
      for (let i = 0; i < this.d.L; i++) {
        yield i;
        this.layer(i, s, this.layerWeights(i));
        if (opts.outputHiddenStates) layers.push(this.hidden(s));
      }
      const logits = rowIdx.length ? yield* this.logitsPass(s, rowIdx) : new Float32Array(0);
      const result: ForwardResult = { logits, logitsShape: [B, which === "all" ? T : which === "last" ? 1 : 0, this.d.V] };
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

/** What a pass yields before the embedding when the model streams it. */
const EMBED = -1;

/** A fetched layer (tensor name → bytes) or rows of a table (see WeightLoader.fetchRows). */
type Fetched = Map<string, Uint8Array> | RowBytes;
type RowBytes = { raw: Uint8Array; scale: Uint8Array | null };

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
