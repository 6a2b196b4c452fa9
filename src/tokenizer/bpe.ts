// Byte-level BPE merging, equivalent to GPT2Tokenizer.bpe() in transformers but O(n log n):
// the reference rescans the whole word for every merge, which is quadratic on a long word
// (1 MB of text without a space is one "word"). Here symbols live in a linked list and
// candidate pairs in a min-heap keyed by (rank, position).
//
// Equivalence with the reference loop: the reference picks the lowest-ranked pair and then
// merges *all* its non-overlapping occurrences left to right before looking at any new pair.
// We do the same by popping every heap entry of the current rank as one batch (they come out
// in position order) before any pair created during that batch can be considered. A new pair
// always contains the freshly merged symbol, so it never has the batch's rank.

import { BYTE_TO_CHAR } from "./bytes.js";

// Symbol ids fit in 26 bits (the ranks table keys pairs of them as two int32s).
const MAX_SYMBOLS = 2 ** 26;

// Pre-tokens longer than this are not cached: they are rare and would pin memory.
const CACHE_MAX_WORD = 64;
const CACHE_MAX_ENTRIES = 100_000;

export type Merge = readonly [string, string];

export class BytePairEncoder {
  /** Symbol id -> symbol string. Ids 0..255 are the single-byte symbols, in byte order. */
  private readonly symbols: string[] = [];
  private readonly symbolIds = new Map<string, number>();
  /** (left, right) symbol pair -> merge rank. */
  private readonly ranks: PairTable;
  /** Merge rank -> symbol id of the merged pair. */
  private readonly mergeResult: Int32Array;
  private readonly cache = new Map<string, readonly number[]>();

  // Scratch buffers reused across words (JS is single-threaded, encodeWord is not reentrant).
  private sym = new Int32Array(64);
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  private readonly heap = new PairHeap();
  private readonly batch: number[] = [];

  constructor(merges: readonly Merge[]) {
    for (const ch of BYTE_TO_CHAR) this.intern(ch);
    this.mergeResult = new Int32Array(merges.length);
    this.ranks = new PairTable(merges.length);
    merges.forEach(([a, b], rank) => {
      const left = this.intern(a);
      const right = this.intern(b);
      // A repeated pair takes the later rank, as the reference's dict(zip(merges, range())) does.
      this.ranks.set(left, right, rank);
      this.mergeResult[rank] = this.intern(a + b);
    });
  }

  get symbolCount(): number {
    return this.symbols.length;
  }

  symbol(id: number): string {
    return this.symbols[id];
  }

  /** Symbol id for a string, or -1 if no merge can produce it. */
  symbolId(s: string): number {
    return this.symbolIds.get(s) ?? -1;
  }

  /**
   * BPE symbols (ids into this encoder's symbol table) for one pre-token.
   * `key` is the pre-token text, used only for caching.
   */
  encodeWord(key: string, bytes: Uint8Array): readonly number[] {
    if (bytes.length <= 1) return Array.from(bytes);
    const cacheable = key.length <= CACHE_MAX_WORD;
    if (cacheable) {
      const hit = this.cache.get(key);
      if (hit) return hit;
    }
    const result = this.merge(bytes);
    if (cacheable) {
      if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
      this.cache.set(key, result);
    }
    return result;
  }

  private intern(s: string): number {
    let id = this.symbolIds.get(s);
    if (id === undefined) {
      id = this.symbols.length;
      if (id >= MAX_SYMBOLS) throw new Error(`BPE: more than ${MAX_SYMBOLS} distinct merge symbols`);
      this.symbols.push(s);
      this.symbolIds.set(s, id);
    }
    return id;
  }

  private rankOf(left: number, right: number): number {
    return this.ranks.get(left, right);
  }

  private merge(bytes: Uint8Array): number[] {
    const n = bytes.length;
    if (this.sym.length < n) {
      const size = Math.max(n, this.sym.length * 2);
      this.sym = new Int32Array(size);
      this.prev = new Int32Array(size);
      this.next = new Int32Array(size);
    }
    const { sym, prev, next, heap, batch } = this;
    for (let i = 0; i < n; i++) {
      sym[i] = bytes[i]; // byte b is symbol id b
      prev[i] = i - 1;
      next[i] = i + 1;
    }
    next[n - 1] = -1;

    heap.clear();
    for (let i = 0; i + 1 < n; i++) {
      const r = this.rankOf(sym[i], sym[i + 1]);
      if (r >= 0) heap.push(r, i);
    }

    while (heap.size > 0) {
      const rank = heap.topRank();
      batch.length = 0;
      while (heap.size > 0 && heap.topRank() === rank) batch.push(heap.pop());

      for (const p of batch) {
        const q = next[p];
        // Stale entry: p was absorbed, or its pair changed since the entry was pushed.
        if (sym[p] < 0 || q < 0 || this.rankOf(sym[p], sym[q]) !== rank) continue;
        sym[p] = this.mergeResult[rank];
        sym[q] = -1;
        const after = next[q];
        next[p] = after;
        if (after >= 0) prev[after] = p;

        const before = prev[p];
        if (before >= 0) {
          const r = this.rankOf(sym[before], sym[p]);
          if (r >= 0) heap.push(r, before);
        }
        if (after >= 0) {
          const r = this.rankOf(sym[p], sym[after]);
          if (r >= 0) heap.push(r, p);
        }
      }
    }

    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

/**
 * (left, right) int pairs -> non-negative int, open addressing over typed arrays: for 50,000 merges
 * a third of the memory of a Map keyed by left·2^26 + right (whose keys are heap numbers), built
 * without garbage.
 */
class PairTable {
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly value: Int32Array;
  private readonly mask: number;

  constructor(capacity: number) {
    let size = 16;
    while (size < capacity * 2) size *= 2; // at most half full
    this.left = new Int32Array(size).fill(-1);
    this.right = new Int32Array(size);
    this.value = new Int32Array(size);
    this.mask = size - 1;
  }

  private slot(l: number, r: number): number {
    let i = (Math.imul(l, 0x9e3779b1) ^ Math.imul(r, 0x85ebca6b)) & this.mask;
    while (this.left[i] !== -1 && (this.left[i] !== l || this.right[i] !== r)) i = (i + 1) & this.mask;
    return i;
  }

  set(l: number, r: number, v: number): void {
    const i = this.slot(l, r);
    this.left[i] = l;
    this.right[i] = r;
    this.value[i] = v;
  }

  /** The value, or -1. */
  get(l: number, r: number): number {
    const i = this.slot(l, r);
    return this.left[i] === -1 ? -1 : this.value[i];
  }
}

/** Binary min-heap of (rank, position) pairs, ordered by rank then position. */
class PairHeap {
  private ranks = new Int32Array(64);
  private positions = new Int32Array(64);
  size = 0;

  clear(): void {
    this.size = 0;
  }

  topRank(): number {
    return this.ranks[0];
  }

  push(rank: number, pos: number): void {
    if (this.size === this.ranks.length) this.grow();
    const { ranks, positions } = this;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pr = ranks[parent];
      if (pr < rank || (pr === rank && positions[parent] <= pos)) break;
      ranks[i] = pr;
      positions[i] = positions[parent];
      i = parent;
    }
    ranks[i] = rank;
    positions[i] = pos;
  }

  /** Removes the smallest entry and returns its position. */
  pop(): number {
    const { ranks, positions } = this;
    const top = positions[0];
    const last = --this.size;
    const rank = ranks[last];
    const pos = positions[last];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= last) break;
      const right = child + 1;
      if (right < last && (ranks[right] < ranks[child] || (ranks[right] === ranks[child] && positions[right] < positions[child]))) {
        child = right;
      }
      if (ranks[child] > rank || (ranks[child] === rank && positions[child] >= pos)) break;
      ranks[i] = ranks[child];
      positions[i] = positions[child];
      i = child;
    }
    ranks[i] = rank;
    positions[i] = pos;
    return top;
  }

  private grow(): void {
    const ranks = new Int32Array(this.ranks.length * 2);
    const positions = new Int32Array(this.ranks.length * 2);
    ranks.set(this.ranks);
    positions.set(this.positions);
    this.ranks = ranks;
    this.positions = positions;
  }
}
