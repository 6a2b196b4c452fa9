// Weights that stay in the checkpoint and are read as a forward pass reaches them (residentLayers
// false, and residentEmbeddings false): beside the resident weights, the decoder asks this module
// for what a pass needs next and nothing else about it changes.
//
//   slot        one decoder layer's worth of memory; layer i is read into it before layer(i) runs
//   prefetch    from an asynchronous source (HTTP ranges), the next thing a pass needs is fetched
//               while the current layer runs: layer i + 1, then the lm_head's chunks, then layer 0
//   lm_head     streamed in chunks of rows through the slot's memory (free once the last layer ran)
//   embeddings  a pass's token rows (each distinct id once) and position rows, into its scratch
import { align, type Arena } from "../arena.js";
import type { Dims } from "./config.js";
import { matRowBytes, type LayerWeights, type Mat, type ModelWeights, type RowBytes, type WeightLoader } from "./weights.js";

/** What a pass yields before it needs weights from the checkpoint (see DecoderModel's pass). */
export const NEED_EMBED = -1;
// Layer i is need i; lm_head chunk c is need L + c.

/** The step fields streamed embeddings use (scratch the decoder plans from embedRowBytes). */
export interface EmbedRows {
  B: number;
  T: number;
  ids: Int32Array;
  positions: Int32Array;
  /** The step's token rows in the embedding's dtype (int8: with scales after them), f32 position rows. */
  embRows: number;
  posRows: number;
  /** For each token, the row of its id / of its position in embRows / posRows. */
  localIds: Int32Array;
  localPos: Int32Array;
}

type Fetched = Map<string, Uint8Array> | RowBytes;

export class WeightStream {
  /** The layer slot: where streamed layers are read into. */
  readonly slot: LayerWeights;
  /** Which layer the slot holds (−1: none or a chunk of the lm_head). */
  private slotLayer = -1;
  /** Streamed lm_head: the chunk in the slot's memory (null: the lm_head is resident), rows per chunk. */
  readonly head: Mat | null = null;
  readonly headRows: number = 0;
  private headChunk = -1;
  private prefetch: { key: number; bytes: Promise<Fetched> } | null = null;
  private readonly embedReady = new WeakSet<object>();

  constructor(
    private readonly loader: WeightLoader,
    private readonly arena: Arena,
    private readonly d: Dims,
    weights: ModelWeights,
  ) {
    const start = arena.mark();
    this.slot = loader.allocLayer();
    if (weights.lmHead.w === 0) {
      // The lm_head streams through the layer slot's memory in chunks of rows.
      const m = weights.lmHead;
      const E = d.E;
      const rb = matRowBytes(m, E);
      this.headRows = Math.min(d.V, Math.floor((arena.mark() - start - 64) / (rb.w + rb.s)));
      this.head = { ...m, w: start, s: rb.s ? align(start + this.headRows * rb.w, 64) : 0 };
    }
  }

  /** Whether the token embedding (and lm_head) are read from the checkpoint too. */
  get streamsEmbeddings(): boolean {
    return this.head !== null;
  }

  get headChunks(): number {
    return this.head ? Math.ceil(this.d.V / this.headRows) : 0;
  }

  /** Whether the checkpoint is read asynchronously (passes must await their needs). */
  get remote(): boolean {
    return this.loader.remote !== null;
  }

  /** Layer i's weights in the slot, read now from a synchronous checkpoint if need be. */
  layer(i: number): LayerWeights {
    if (this.slotLayer !== i) {
      if (this.loader.remote) {
        throw new Error(
          `wasm-lm: layer ${i} is not in memory: this model streams its layers from an asynchronous source, ` +
            "so run it with forwardAsync or generate (or await prepareLayer(i) before layer(i))",
        );
      }
      this.slotLayer = -1; // a failed read must not leave a half-filled slot labelled as layer i
      this.headChunk = -1;
      this.loader.fillLayer(i, this.slot);
      this.slotLayer = i;
    }
    return this.slot;
  }

  /** Layer i into the slot — from an asynchronous source, with the next need fetched meanwhile. */
  async prepareLayer(i: number): Promise<void> {
    if (this.slotLayer === i) return;
    if (!this.loader.remote) {
      this.layer(i);
      return;
    }
    this.slotLayer = -1;
    this.headChunk = -1;
    const bytes = await this.fetchInTurn(i);
    this.loader.fillLayer(i, this.slot, bytes as Map<string, Uint8Array>);
    this.slotLayer = i;
  }

  /** Streamed lm_head: chunk c's rows into the slot's memory; returns the chunk's first row and rows. */
  async prepareHeadChunk(c: number): Promise<[number, number]> {
    const r0 = c * this.headRows;
    const n = Math.min(this.headRows, this.d.V - r0);
    if (this.headChunk === c) return [r0, n];
    this.slotLayer = -1;
    this.headChunk = -1;
    const rows = (await this.fetchInTurn(this.d.L + c)) as RowBytes;
    this.loader.fillTableRows(this.head!, this.loader.headName, 0, n, rows);
    this.headChunk = c;
    return [r0, n];
  }

  private fetchKey(key: number): Promise<Fetched> {
    if (key < this.d.L) return this.loader.fetchLayer(key);
    const r0 = (key - this.d.L) * this.headRows;
    return this.loader.fetchRows(this.loader.headName, r0, Math.min(this.headRows, this.d.V - r0));
  }

  /** The fetched bytes of `key`, and the next key's fetch started (its failure reported when awaited). */
  private async fetchInTurn(key: number): Promise<Fetched> {
    const ahead = this.prefetch;
    this.prefetch = null;
    // A fetch of something else (an inspector reading the lm_head between layers, say) is let
    // finish first: fetches take the loader's two buffers by turns, one at a time.
    if (ahead && ahead.key !== key) await ahead.bytes.catch(() => undefined);
    // The prefetch of a pass's first layer was started by the previous pass — in an edge runtime
    // possibly by a request that has ended, whose I/O the runtime then refuses to hand to this one
    // ("This promise was created by a request that has since ended"): fetch again if it failed.
    const bytes = await (ahead?.key === key ? ahead.bytes.catch(() => this.fetchKey(key)) : this.fetchKey(key));
    const next = (key + 1) % (this.d.L + this.headChunks);
    if (next !== key) {
      const p = this.fetchKey(next);
      p.catch(() => undefined); // a failure is reported to whoever awaits it, not as unhandled
      this.prefetch = { key: next, bytes: p };
    }
    return bytes;
  }

  /** Bytes of scratch a step of `rows` tokens needs for its embedding rows (0 when resident). */
  embedRowBytes(rows: number): number {
    if (!this.head) return 0;
    const E = this.d.E;
    // Rows in the embedding's dtype with int8 scales; room for f32 rows bounds every dtype.
    return align(rows * (E + (2 * E) / (this.head.g || E)) * 4, 64) * 4;
  }

  /** The step's token rows as a matrix (its pointer in the step's scratch). */
  embRowsMat(s: EmbedRows, table: Mat): Mat {
    const rows = s.B * s.T;
    const rb = matRowBytes(table, this.d.E);
    return { ...table, w: s.embRows, s: rb.s ? align(s.embRows + rows * rb.w, 64) : 0 };
  }

  /**
   * The step's token rows (each distinct id once) and position rows (learned positions) into its
   * scratch, read in parallel (a few KB each); localIds / localPos say which row each token uses.
   */
  async prepareEmbed(s: EmbedRows, table: Mat): Promise<void> {
    if (!this.head) return;
    const loader = this.loader;
    const remote = loader.remote!;
    const gather = async (full: string, m: Mat, keys: Int32Array, local: Int32Array) => {
      const row = new Map<number, number>();
      for (const key of keys) if (!row.has(key)) row.set(key, row.size);
      const { rb, sb } = loader.tableRowBytes(full);
      const got = await Promise.all(
        [...row.keys()].map(async (key) => ({
          raw: await remote.readRawAsync(full, key * rb, rb),
          scale: sb ? await remote.readRawAsync(`${full}_scale`, key * sb, sb) : null,
        })),
      );
      got.forEach((r, j) => loader.fillTableRows(m, full, j, 1, r));
      keys.forEach((key, t) => (local[t] = row.get(key)!));
    };
    await Promise.all([
      gather(loader.names.global("embedTokens"), this.embRowsMat(s, table), s.ids, s.localIds),
      this.d.positions === "learned"
        ? gather(loader.names.global("embedPositions"), { dtype: "f32", w: s.posRows, s: 0, g: 0 }, s.positions, s.localPos)
        : Promise.resolve(),
    ]);
    this.embedReady.add(s);
  }

  embedPrepared(s: EmbedRows): boolean {
    return this.embedReady.has(s);
  }
}
