// safetensors checkpoints read on demand, by byte ranges: the header is fetched once, each tensor
// when asked for (HTTP Range requests, slices of a browser File), so a model can stream its layers
// without the file in memory. Platform-neutral: only fetch, Blob and Uint8Array. Requests, bodies
// and the retry policy are ../http.ts's.
//
// A read asks for one span of the file; `readRawMany` merges tensors that lie close together into
// one span, so a decoder layer (whose tensors are adjacent in HF's files) costs one request.

import { type AsyncTensorSource, type TensorInfo, errorText, fail, oneLine, q } from "./types.js";
import { HttpError, readBody, redactUrl, send, statusError, withRetries, type RetryOptions } from "../http.js";
import { type SafetensorsEntry, parseSafetensorsHeader, safetensorsHeaderLength } from "./safetensors.js";
import { parseShardIndex, shardFiles } from "./multi.js";

/** The first read of a file: the whole header of every real checkpoint, or all of a small file. */
const HEAD = 64 * 1024;
/** Tensors at most this far apart are fetched in one read (the bytes between are discarded). */
const MAX_GAP = 64 * 1024;
/** A merged read stops growing here; one tensor larger than this is still read whole. */
const MAX_MERGED = 64 * 1024 * 1024;
/** A shard index is a few hundred KB for the largest models. */
const MAX_INDEX = 100_000_000;

/** One file, read in spans. */
export interface RangeReader {
  /** The file's size in bytes once known: a Blob's at once, an HTTP file's after its first read. */
  readonly size?: number;
  /**
   * Bytes [offset, offset + length), cut at the end of the file (so fewer when the span runs past
   * it). With `into` of at least `length` bytes, they land at its start and a view of it is returned.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * How a source retries this reader's transient failures (RangeReadError.transient): how many
   * times, and the signal that ends a pause. A streamed model makes hundreds of requests per
   * answer (a layer each per token), so a failed read is tried again under src/http.ts's policy.
   */
  readonly retry?: Pick<RetryOptions, "retries" | "signal">;
}

/** A read that failed for a reason other than the file's contents: HTTP status, network, a bad server. */
export class RangeReadError extends HttpError {
  override name = "RangeReadError";
  constructor(
    message: string,
    status?: number,
    /** Worth another try: the network failed, the connection dropped, HTTP 408, 429 or 5xx. */
    transient = false,
    retryAfterMs?: number,
  ) {
    super(message, status, transient, retryAfterMs);
  }
}

export interface HttpRangeOptions {
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** Sent with every request, e.g. `{ authorization: "Bearer hf_…" }` (fetch drops it on a cross-origin redirect). */
  headers?: Record<string, string>;
  /** Starts every error message (default: the url, secrets redacted). */
  label?: string;
  signal?: AbortSignal;
  /** Tries after the first of a failed read (default 3: see src/http.ts). */
  retries?: number;
}

/**
 * Reads `url` with `Range: bytes=a-b` GETs, following redirects (the Hugging Face hub sends
 * /resolve/ to a CDN that honours Range). The size comes from the first answer's Content-Range.
 */
export function httpRangeReader(url: string, opts: HttpRangeOptions = {}): RangeReader {
  const label = oneLine(opts.label ?? redactUrl(url));
  let size: number | undefined;
  const err = (msg: string, status?: number, transient = false, retryAfterMs?: number) =>
    new RangeReadError(`${label}: ${msg}`, status, transient, retryAfterMs);
  const learn = (total: number) => {
    if (size !== undefined && total !== size) throw err(`file size changed from ${size} to ${total} bytes between reads`);
    size = total;
  };
  // The first answer's ETag: a later one that differs means the file was replaced between reads
  // (the same size would otherwise go unnoticed and mix two files' bytes). Absent or hidden (a
  // cross-origin server that does not expose it): not checked.
  let etag: string | null = null;
  const sameFile = (res: Response) => {
    const e = res.headers.get("etag");
    if (e === null) return;
    if (etag !== null && e !== etag)
      throw err(`the file changed between reads (ETag ${JSON.stringify(oneLine(etag))} → ${JSON.stringify(oneLine(e))})`);
    etag = e;
  };

  async function read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkSpan(label, offset, length);
    if (length === 0) return new Uint8Array(0);
    const span = `${offset}-${offset + length - 1}`;
    let res: Response | undefined;
    try {
      res = await send(
        url,
        { headers: { ...opts.headers, range: `bytes=${span}` }, signal: opts.signal },
        { fetch: opts.fetch, what: `bytes ${span}` },
      );
      return await answer(res, offset, length, `bytes ${span}`, into);
    } catch (e) {
      // http.ts's errors (network, a lost connection, a status) with the label in front
      throw e instanceof HttpError && !(e instanceof RangeReadError) ? err(e.message, e.status, e.transient, e.retryAfterMs) : e;
    } finally {
      await res?.body?.cancel().catch(() => undefined); // whatever was not read (rejects once it is being read)
    }
  }

  async function answer(res: Response, offset: number, length: number, range: string, into?: Uint8Array): Promise<Uint8Array> {
    const cr = res.headers.get("content-range");
    if (res.status === 206) {
      sameFile(res);
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(cr?.trim() ?? "");
      if (!m) {
        throw err(
          cr === null
            ? "HTTP 206 without a Content-Range header (a cross-origin server must list it in Access-Control-Expose-Headers)"
            : `HTTP 206 with Content-Range ${JSON.stringify(oneLine(cr))}, not 'bytes a-b/size'`,
        );
      }
      const [a, b, total] = m.slice(1).map(Number);
      if (a !== offset || b !== Math.min(offset + length, total) - 1 || b < a || !Number.isSafeInteger(total)) {
        throw err(`asked for ${range}, the server sent Content-Range ${JSON.stringify(oneLine(cr!))}`);
      }
      learn(total);
      const want = b - a + 1;
      const body = await readBody(res, { max: want, into, what: range, signal: opts.signal });
      if (!body) throw err(`the server sent more than the ${want} bytes of Content-Range ${JSON.stringify(oneLine(cr!))}`);
      if (body.length !== want) throw err(`truncated: ${body.length} of the ${want} bytes of ${range}`, undefined, true);
      return body;
    }
    if (res.status === 200) {
      // Range ignored: the body is the whole file, which will do if that is all that was asked for.
      const body = offset === 0 ? await readBody(res, { max: length, into, what: "the whole file", signal: opts.signal }) : undefined;
      if (!body) {
        throw err(
          "the server does not support range requests (it answered a ranged GET with HTTP 200 and the " +
            "whole file), so the model cannot be streamed from it",
        );
      }
      learn(body.length);
      return body;
    }
    const past = res.status === 416 && /^bytes \*\/(\d+)$/.exec(cr?.trim() ?? "");
    if (past && offset >= Number(past[1])) {
      // Past the end of the file: an empty read, like Blob.slice.
      learn(Number(past[1]));
      return new Uint8Array(0);
    }
    if (res.status === 404) throw err("not found (HTTP 404)", 404);
    if (res.status === 401 || res.status === 403) {
      throw err(
        `access denied (HTTP ${res.status}): a private or gated model needs a token ` + "(headers: { authorization: 'Bearer hf_…' })",
        res.status,
      );
    }
    throw statusError(res, range);
  }

  return {
    get size() {
      return size;
    },
    read,
    retry: { retries: opts.retries, signal: opts.signal },
  };
}

/** Reads spans of a Blob or File (e.g. one picked in a browser) without reading it whole. */
export function blobRangeReader(blob: Blob, label = (blob as File).name || "blob"): RangeReader {
  const l = oneLine(label);
  return {
    size: blob.size,
    async read(offset, length, into) {
      checkSpan(l, offset, length);
      let b: Uint8Array;
      try {
        b = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      } catch (e) {
        throw new RangeReadError(`${l}: cannot read bytes ${offset}-${offset + length - 1}: ${errorText(e)}`);
      }
      if (!into || into.length < length) return b;
      into.set(b);
      return into.subarray(0, b.length);
    },
  };
}

/** A safetensors file whose header is in memory and whose tensors are read when asked for. */
export class RangedSafetensors implements AsyncTensorSource {
  /** Use `openRangedSafetensors`; the constructor trusts its (already validated) arguments. */
  constructor(
    private readonly reader: RangeReader,
    readonly label: string,
    private readonly entries: Map<string, SafetensorsEntry>,
    /** The `__metadata__` map (string → string), empty when absent. */
    readonly metadata: Record<string, string>,
  ) {}

  tensors(): TensorInfo[] {
    return [...this.entries.values()].map(publicInfo);
  }

  get(name: string): TensorInfo | undefined {
    const e = this.entries.get(name);
    return e && publicInfo(e);
  }

  async readRawAsync(name: string, offset = 0, length?: number, scratch?: Uint8Array): Promise<Uint8Array> {
    const e = this.entry(name);
    const n = e.end - e.begin;
    length ??= n - offset;
    if (!isCount(offset) || !isCount(length) || offset + length > n) {
      fail(this.label, `tensor ${q(name)}: bytes [${offset}, ${offset + length}) are outside its ${n} bytes`);
    }
    return retried(this.reader, scratch, (into) => readExact(this.reader, e.begin + offset, length, this.label, into));
  }

  async readRawMany(names: string[], scratch?: Uint8Array): Promise<Map<string, Uint8Array>> {
    return runReads(this.reads(names), scratch);
  }

  /** The reads that fetch `names`: in file order, neighbours at most MAX_GAP apart merged up to MAX_MERGED. */
  reads(names: Iterable<string>): MergedRead[] {
    const wanted = [...new Set(names)].map((n) => this.entry(n)).sort((a, b) => a.begin - b.begin);
    const reads: MergedRead[] = [];
    for (const e of wanted) {
      const r = reads.at(-1);
      if (r && e.begin - r.end <= MAX_GAP && e.end - r.begin <= MAX_MERGED) {
        r.end = e.end;
        r.entries.push(e);
      } else {
        reads.push({ reader: this.reader, label: this.label, begin: e.begin, end: e.end, entries: [e] });
      }
    }
    return reads;
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) fail(this.label, `no tensor named ${q(name)}`);
    return e;
  }
}

/**
 * Reads and validates a safetensors header: the first 64 KiB in one read (all of a smaller file),
 * then the rest of the header if it is longer.
 */
export async function openRangedSafetensors(reader: RangeReader, label = "model.safetensors"): Promise<RangedSafetensors> {
  const head = await reader.read(0, HEAD);
  const size = fileSize(reader, label);
  if (head.length !== Math.min(HEAD, size)) fail(label, `first read returned ${head.length} bytes of a ${size}-byte file`);
  const headerLen = safetensorsHeaderLength(head, size, label);
  let json = head.subarray(8, 8 + headerLen);
  if (json.length < headerLen) {
    json = new Uint8Array(headerLen);
    json.set(head.subarray(8));
    json.set(await readExact(reader, head.length, 8 + headerLen - head.length, label), head.length - 8);
  }
  const { entries, metadata } = parseSafetensorsHeader(json, size, label);
  return new RangedSafetensors(reader, label, entries, metadata);
}

/** Opens a file of a model directory; undefined when it does not exist. */
export type RangeOpener = (file: string) => Promise<RangeReader | undefined>;

const TORCH_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json"];

/**
 * Opens the safetensors checkpoint of a model directory (`model.safetensors`, else
 * `model.safetensors.index.json` and its shards). A file is absent when `open` returns undefined
 * or its first read is an HTTP 404, so `(f) => Promise.resolve(httpRangeReader(base + f))` will do.
 * `label` prefixes file names in errors (e.g. the url or directory).
 */
export async function openRangedCheckpoint(open: RangeOpener, label = ""): Promise<AsyncTensorSource> {
  const name = (f: string) => (label ? `${label}/${f}` : f);
  const found = await openRangedSafetensorsCheckpoint(open, label);
  if (found) return found;
  for (const file of TORCH_FILES) {
    if (await ifPresent(open, file, (r) => r.read(0, 1))) {
      fail(
        name(file),
        "streaming needs a safetensors checkpoint; convert this one first " +
          "(wasm-lm quantize --dtype f32 --out DIR writes model.safetensors)",
      );
    }
  }
  fail(label || "checkpoint", `no checkpoint found (looked for model.safetensors, ${INDEX}, ${TORCH_FILES.join(", ")})`);
}

const INDEX = "model.safetensors.index.json";

/**
 * The safetensors checkpoint of a model directory (`model.safetensors`, else the index and its
 * shards), read by ranges; undefined when the directory has neither (openRangedCheckpoint then
 * looks for a PyTorch file to name in its error; a caller with another way to read one goes on).
 */
export async function openRangedSafetensorsCheckpoint(open: RangeOpener, label = ""): Promise<AsyncTensorSource | undefined> {
  const name = (f: string) => (label ? `${label}/${f}` : f);
  const single = await ifPresent(open, "model.safetensors", (r) => openRangedSafetensors(r, name("model.safetensors")));
  if (single) return single;
  const weightMap = await ifPresent(open, INDEX, async (r) => parseShardIndex(await readWhole(r, name(INDEX)), name(INDEX)));
  if (!weightMap) return undefined;
  const shards = new Map(
    await Promise.all(
      shardFiles(weightMap).map(async (file) => {
        const shard = await ifPresent(open, file, (r) => openRangedSafetensors(r, name(file)));
        if (!shard) fail(name(INDEX), `shard ${q(file)} named by the index is missing`);
        return [file, shard] as const;
      }),
    ),
  );
  return new RangedShards(shards, weightMap, name(INDEX));
}

/** Spans of bytes already in memory (no copy: views of them). */
export function bytesRangeReader(bytes: Uint8Array): RangeReader {
  return {
    size: bytes.length,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      const b = bytes.subarray(Math.min(offset, bytes.length), Math.min(offset + length, bytes.length));
      if (!into || into.length < b.length) return b;
      into.set(b);
      return into.subarray(0, b.length);
    },
  };
}

/** Shards seen as one: each mapped tensor comes from the shard the index names. */
class RangedShards implements AsyncTensorSource {
  private readonly owner = new Map<string, RangedSafetensors>();

  constructor(
    shards: Map<string, RangedSafetensors>,
    weightMap: Map<string, string>,
    readonly label: string,
  ) {
    for (const [name, file] of weightMap) {
      const src = shards.get(file)!;
      if (!src.get(name)) fail(label, `tensor ${q(name)}: not in shard ${q(file)} where the index puts it`);
      this.owner.set(name, src);
    }
  }

  tensors(): TensorInfo[] {
    return [...this.owner].map(([n, s]) => s.get(n)!);
  }

  get(name: string): TensorInfo | undefined {
    return this.owner.get(name)?.get(name);
  }

  async readRawAsync(name: string, offset?: number, length?: number, scratch?: Uint8Array): Promise<Uint8Array> {
    return this.source(name).readRawAsync(name, offset, length, scratch);
  }

  async readRawMany(names: string[], scratch?: Uint8Array): Promise<Map<string, Uint8Array>> {
    const byShard = new Map<RangedSafetensors, string[]>();
    for (const n of new Set(names)) {
      const s = this.source(n);
      byShard.set(s, [...(byShard.get(s) ?? []), n]);
    }
    return runReads(
      [...byShard].flatMap(([s, ns]) => s.reads(ns)),
      scratch,
    );
  }

  private source(name: string): RangedSafetensors {
    const s = this.owner.get(name);
    if (!s) fail(this.label, `no tensor named ${q(name)}`);
    return s;
  }
}

/** One read of a file that fetches several tensors: [begin, end) absolute offsets. */
export interface MergedRead {
  reader: RangeReader;
  label: string;
  begin: number;
  end: number;
  entries: SafetensorsEntry[];
}

/**
 * Runs `reads`. Without `scratch`, all at once, each into a buffer of its own. With it, one after
 * another, each in the next free part of `scratch` if it fits there (else a buffer of its own):
 * a reader may fill `scratch` through a BYOB stream, which moves its memory to a new ArrayBuffer
 * at every read, so the views are made once all reads are done, over where the memory ended up.
 */
async function runReads(reads: MergedRead[], scratch?: Uint8Array): Promise<Map<string, Uint8Array>> {
  return retried(reads[0]?.reader, scratch, (into) => runReadsOnce(reads, into));
}

/**
 * `attempt(scratch)` under the retry policy (src/http.ts) with the reader's `retry` options. A
 * BYOB read that failed took the scratch's memory with it (it is detached): the next try gets
 * fresh memory of its size.
 */
async function retried<T>(
  reader: RangeReader | undefined,
  scratch: Uint8Array | undefined,
  attempt: (scratch?: Uint8Array) => Promise<T>,
): Promise<T> {
  const size = scratch?.length ?? 0;
  return withRetries(() => attempt(scratch), {
    ...reader?.retry,
    onRetry: () => {
      if (scratch && scratch.byteLength === 0) scratch = new Uint8Array(size);
    },
  });
}

async function runReadsOnce(reads: MergedRead[], scratch?: Uint8Array): Promise<Map<string, Uint8Array>> {
  const read = (r: MergedRead, into?: Uint8Array) => readExact(r.reader, r.begin, r.end - r.begin, r.label, into);
  let chunks: (Uint8Array | number)[]; // a chunk, or its offset in scratch
  if (!scratch) {
    chunks = await Promise.all(reads.map((r) => read(r)));
  } else {
    chunks = [];
    let free = 0;
    // (A detached view reports length and offset 0: keep scratch's own.)
    const { byteOffset, length } = scratch;
    for (const r of reads) {
      const n = r.end - r.begin;
      if (free + n > length) {
        chunks.push(await read(r));
        continue;
      }
      const got = await read(r, scratch.subarray(free, free + n));
      scratch = new Uint8Array(got.buffer, byteOffset, length);
      chunks.push(free);
      free += n;
    }
  }
  const views = new Map<string, Uint8Array>();
  reads.forEach((r, i) => {
    const c = chunks[i];
    const chunk = typeof c === "number" ? scratch!.subarray(c, c + r.end - r.begin) : c;
    for (const e of r.entries) views.set(e.name, chunk.subarray(e.begin - r.begin, e.end - r.begin));
  });
  return views;
}

/** `use(reader)` for `file`, or undefined when it is absent: no reader, or a 404 on its first read. */
async function ifPresent<T>(open: RangeOpener, file: string, use: (r: RangeReader) => Promise<T>): Promise<T | undefined> {
  const r = await open(file);
  if (!r) return undefined;
  try {
    return await use(r);
  } catch (e) {
    if (e instanceof RangeReadError && e.status === 404 && r.size === undefined) return undefined;
    throw e;
  }
}

/** A small file (a shard index) read whole. */
async function readWhole(r: RangeReader, label: string): Promise<Uint8Array> {
  const head = await r.read(0, HEAD);
  const size = fileSize(r, label);
  if (size > MAX_INDEX) fail(label, `${size} bytes is too large for a shard index (limit ${MAX_INDEX})`);
  if (head.length >= size) return head;
  const out = new Uint8Array(size);
  out.set(head);
  out.set(await readExact(r, head.length, size - head.length, label), head.length);
  return out;
}

function fileSize(r: RangeReader, label: string): number {
  if (r.size === undefined) fail(label, "the reader did not learn the file's size from its first read");
  return r.size;
}

/** Exactly `length` bytes (in `into` when it is large enough): fewer means the file is shorter than its header says. */
async function readExact(r: RangeReader, offset: number, length: number, label: string, into?: Uint8Array): Promise<Uint8Array> {
  if (length === 0) return new Uint8Array(0);
  const b = await r.read(offset, length, into);
  if (b.length !== length) {
    fail(
      label,
      `bytes ${offset}-${offset + length - 1}: read ${b.length} of ${length} bytes (file shorter than its header says, or changed?)`,
    );
  }
  return b;
}

function checkSpan(label: string, offset: number, length: number): void {
  if (!isCount(offset) || !isCount(length)) {
    throw new RangeError(`${label}: read of ${length} bytes at ${offset}: both must be non-negative integers`);
  }
}

function isCount(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function publicInfo(e: SafetensorsEntry): TensorInfo {
  return { name: e.name, dtype: e.dtype, shape: [...e.shape] };
}
