// Loading a model with web APIs only (fetch, the Cache API, Blob/File, TextDecoder): from a URL in
// the Hugging Face hub layout, a hub id, or files the user picked. Runs in browsers (page or
// Worker), Deno, Bun, Cloudflare Workers, and Node ≥ 18 (which has no Cache API: no caching there).
//
//   urlFiles / pickedFiles   a model directory's files by name  (ModelFiles)
//   openModelFiles           config.json first, then the tokenizer and the checkpoint
//   loadModelFromUrl         all of it, then DecoderModel.load
//
// A safetensors checkpoint is never whole in JavaScript memory: a download streams into the Cache
// API and the model copies the weights into wasm from slices of the cached Blob (picked files: of
// the File). Small files, PyTorch .bin checkpoints, and everything where there is no Cache API are
// read whole. A cache entry is kept only once its whole body has arrived (and matched
// Content-Length), so a cut connection never leaves a truncated file to be served later. Entries are keyed by the file's
// resolved URL, revision included; a cached "main" is not refreshed: pin a commit as `revision`,
// or delete the cache (caches.delete(MODEL_CACHE)), to update. Requests, retries, bodies and
// progress events go through ./http.ts, as the Node hub download's do.

import {
  CHECKPOINT_FILES,
  isPlainFileName,
  openCheckpoint,
  parseShardIndex,
  shardFiles,
  type AsyncTensorSource,
  type TensorSource,
} from "./formats/index.js";
import { checkRevision, DEFAULT_ENDPOINT, hubFileUrl, parseModelId } from "./formats/hubids.js";
import {
  blobRangeReader,
  bytesRangeReader,
  httpRangeReader,
  openRangedCheckpoint,
  openRangedSafetensorsCheckpoint,
  type RangeReader,
} from "./formats/ranged.js";
import {
  bodyStream,
  checkLength,
  declaredLength,
  discard,
  HttpError,
  Progress,
  readBody,
  redactUrl,
  send,
  statusError,
  statusLine,
  withRetries,
  type DownloadProgress,
} from "./http.js";
import { parseModelConfig, type ModelConfig } from "./models/families/index.js";
import { DecoderModel, type LoadOptions } from "./models/decoder.js";
import { Tokenizer, type TokenizerFiles } from "./tokenizer/index.js";

/** The Cache API cache used when `cache` is true (the default). */
export const MODEL_CACHE = "wasm-lm-v1";

/**
 * One download progress event: `{ file, loaded, total, cached }` (and `done`, the old name of
 * `loaded`). The same event as the Node hub download's (src/http.ts DownloadProgress).
 */
export type FetchProgress = DownloadProgress;

/** What the loader needs of a Cache API `Cache` (from `caches.open`), so a stand-in can be given. */
export type ModelCache = Pick<Cache, "match" | "put" | "delete">;

export interface FetchModelOptions {
  /** Hub revision: branch, tag or commit (default "main"). Hub ids only. */
  revision?: string;
  /** Hub address (default https://huggingface.co), e.g. a mirror. Hub ids only. */
  endpoint?: string;
  /** Sent as `Authorization: Bearer …` with hub requests (private or gated models); never to a plain URL. */
  token?: string;
  /** The fetch to use (default the global one); e.g. a test double or a Workers service binding's, bound. */
  fetch?: typeof fetch;
  /**
   * The Cache API cache: true (default) opens MODEL_CACHE where `caches` exists (secure contexts:
   * https, or http on localhost), a string names another cache, a `Cache` object is used as is,
   * false turns caching off. Without a Cache API nothing is cached.
   */
  cache?: boolean | string | ModelCache;
  /**
   * Download progress, at most ~10 events a second per file, plus a last one per file when it is
   * complete. (Not `onProgress`: LoadOptions uses that name for copying weights into wasm memory.)
   */
  onDownload?: (p: FetchProgress) => void;
  /**
   * How many times a failed download or range read is tried again (default 3): a network error,
   * a dropped connection, HTTP 408, 429 or 5xx, after the server's Retry-After or a growing pause.
   */
  retries?: number;
  /** Aborts the downloads (the promise rejects with the signal's reason); with `stream`, also every later read of the model. */
  signal?: AbortSignal;
}

export interface LoadFromUrlOptions extends FetchModelOptions, LoadOptions {
  /**
   * Leave the checkpoint where it is and read it by HTTP range requests as the model needs it
   * (loadModelFromUrl only; needs model.safetensors or a safetensors index): each decoder layer is
   * one request per pass, fetched while the previous layer runs. Implies residentLayers false; add
   * residentEmbeddings false to stream the embedding and lm_head too (an edge isolate's 128 MB).
   * Nothing of the checkpoint is cached (config and tokenizer files are). Run the model with
   * generate or forwardAsync. The server must answer Range requests (the hub's CDN does).
   */
  stream?: boolean;
}

/**
 * A model directory's files by name: the bytes, or undefined when the file does not exist. With
 * `ranges`, a file can also be read in pieces (picked files: slices of the File; a URL: slices of
 * the Blob the Cache API keeps): openModelFiles then copies a safetensors checkpoint into wasm
 * piece by piece instead of holding the whole file in memory as well.
 */
export type ModelFiles = ((file: string) => Promise<Uint8Array | undefined>) & {
  ranges?: (file: string) => Promise<RangeReader | undefined>;
};

export interface LoadedFromUrl {
  model: DecoderModel;
  /** The directory's tokenizer, or null when it has none (then use the OPT tokenizer: tokenizers/opt/). */
  tokenizer: Tokenizer | null;
  config: ModelConfig;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

// ---- Where a model lives ----

/** "owner/name" (no scheme, no leading "/" or ".", one slash) is a hub id; anything else a URL. */
function isHubId(base: string): boolean {
  return !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(base) && !/^[./]/.test(base) && /^[^/]+\/[^/]+$/.test(base);
}

/**
 * The URL of the model directory `base` (ending in "/"): a hub id `owner/name` becomes
 * `<endpoint>/<owner>/<name>/resolve/<revision>/`; any other string is a URL, absolute or
 * relative to `location` (a page's address, or a worker's own script). Write a relative path of
 * two segments as "./a/b": "a/b" is a hub id.
 */
export function resolveModelUrl(base: string, opts: Pick<FetchModelOptions, "revision" | "endpoint"> = {}): string {
  if (isHubId(base)) {
    const { owner, name } = parseModelId(base);
    const endpoint = opts.endpoint ?? DEFAULT_ENDPOINT;
    if (!/^https?:\/\/[^/]/.test(endpoint)) throw new Error(`wasm-lm: hub endpoint ${JSON.stringify(endpoint)} is not an http(s) URL`);
    return hubFileUrl(endpoint, owner, name, checkRevision(opts.revision ?? "main"), "");
  }
  if (opts.revision !== undefined) throw new Error(`wasm-lm: a revision applies to hub ids (owner/name), not to the URL ${base}`);
  const here = (globalThis as { location?: { href?: string } }).location?.href;
  let url: URL;
  try {
    url = new URL(base, here);
  } catch {
    throw new Error(
      here === undefined
        ? `wasm-lm: model URL ${JSON.stringify(base)} is relative and this runtime has no location: give an absolute URL or a hub id (owner/name)`
        : `wasm-lm: invalid model URL ${JSON.stringify(base)}`,
    );
  }
  url.search = "";
  url.hash = "";
  return url.href.endsWith("/") ? url.href : url.href + "/";
}

// ---- Reading files: the network with the Cache API, or picked files ----

interface Fetcher {
  hub: boolean;
  fetch: typeof fetch;
  headers?: Record<string, string>;
  cache: Promise<ModelCache | null>;
  onDownload?: (p: FetchProgress) => void;
  retries?: number;
  signal?: AbortSignal;
}

/**
 * The files of the model directory `base` (a hub id or a URL: see resolveModelUrl), fetched on
 * demand. A 404 is "absent"; 401/403, other statuses and network failures throw, naming the URL.
 */
export function urlFiles(base: string, opts: FetchModelOptions = {}): ModelFiles {
  const root = resolveModelUrl(base, opts);
  const hub = isHubId(base);
  const f: Fetcher = {
    hub,
    fetch: opts.fetch ?? ((input, init) => fetch(input, init)),
    headers: hub && opts.token ? { authorization: `Bearer ${opts.token}` } : undefined,
    cache: openCache(opts.cache),
    onDownload: opts.onDownload,
    retries: opts.retries,
    signal: opts.signal,
  };
  const check = (file: string) => {
    if (!isPlainFileName(file)) throw new Error(`wasm-lm: refusing to fetch ${JSON.stringify(file)}: not a plain file name`);
  };
  const read: ModelFiles = async (file) => {
    check(file);
    return fetchFile(f, root + file, file);
  };
  read.ranges = async (file) => {
    check(file);
    const blob = await cachedBlob(f, root + file, file);
    if (blob !== null) return blob && blobRangeReader(blob, file);
    const bytes = await fetchFile(f, root + file, file); // no Cache API here: the bytes, in memory
    return bytes && bytesRangeReader(bytes);
  };
  return read;
}

async function openCache(c: FetchModelOptions["cache"]): Promise<ModelCache | null> {
  if (c === false) return null;
  if (typeof c === "object") return c;
  if (typeof caches === "undefined") return null;
  try {
    return await caches.open(typeof c === "string" ? c : MODEL_CACHE);
  } catch {
    return null; // e.g. a runtime that declares caches but has none configured: no caching
  }
}

async function fetchFile(f: Fetcher, url: string, file: string): Promise<Uint8Array | undefined> {
  f.signal?.throwIfAborted();
  const cache = /^https?:/.test(url) ? await f.cache : null; // the Cache API keys http(s) only
  const hit = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (hit) {
    try {
      return await readWhole(f, hit, url, file, true);
    } catch (e) {
      if (f.signal?.aborted) throw e;
      await cache!.delete(url).catch(() => false); // a damaged entry: fetch it again
    }
  }
  const got = await retrying(f, async () => {
    const res = await download(f, url);
    return res && { bytes: await readWhole(f, res, url, file, false), type: res.headers.get("content-type") };
  });
  if (!got) return undefined;
  if (cache) {
    const headers = { "content-type": got.type ?? "application/octet-stream", "content-length": String(got.bytes.length) };
    // Only now, with the whole body here. A failed put (quota) costs the next visit a download, nothing more.
    await cache.put(url, new Response(got.bytes as Uint8Array<ArrayBuffer>, { headers })).catch(() => undefined);
  }
  return got.bytes;
}

/** `attempt` under the retry policy (src/http.ts); the HttpError that ends it starts "wasm-lm: " as the loader's errors do. */
async function retrying<T>(f: Fetcher, attempt: () => Promise<T>): Promise<T> {
  try {
    return await withRetries(attempt, { retries: f.retries, signal: f.signal });
  } catch (e) {
    if (e instanceof HttpError) e.message = `wasm-lm: ${e.message}`;
    throw e;
  }
}

/** GET url: the response, undefined for a 404, a one-line error naming the URL otherwise. */
async function download(f: Fetcher, url: string): Promise<Response | undefined> {
  let res: Response;
  try {
    res = await send(url, { headers: f.headers, signal: f.signal }, { fetch: f.fetch });
  } catch (e) {
    if (e instanceof HttpError) e.message += " (offline, or the server does not allow this origin: CORS)";
    throw e;
  }
  if (res.ok) return res;
  await discard(res);
  if (res.status === 404) return undefined;
  if (res.status === 401 || res.status === 403) {
    throw new Error(
      `wasm-lm: access denied to ${redactUrl(url)} (${statusLine(res)})` +
        (f.hub ? ": a private or gated model needs a token ({ token }), with the model's terms accepted on the hub" : ""),
    );
  }
  throw statusError(res, url);
}

/**
 * The file as the Blob the Cache API keeps (a browser holds it on disk, so slices of it are read
 * without the file ever being whole in memory). A download streams into the cache, counted for
 * progress and checked against Content-Length before the entry is kept. undefined for a 404; null
 * when there is no Cache API here or it would not keep the file (the caller reads the bytes).
 */
async function cachedBlob(f: Fetcher, url: string, file: string): Promise<Blob | undefined | null> {
  f.signal?.throwIfAborted();
  const cache = /^https?:/.test(url) ? await f.cache : null;
  if (!cache) return null;
  const complete = async (res: Response | undefined) => {
    const blob = await res?.blob().catch(() => undefined);
    const length = res?.headers.get("content-length");
    return blob && (length === null || length === undefined || Number(length) === blob.size) ? blob : undefined;
  };
  const hit = await cache.match(url).catch(() => undefined);
  if (hit) {
    const blob = await complete(hit);
    if (blob) {
      new Progress(file, f.onDownload, { loaded: blob.size, cached: true }).end();
      return blob;
    }
    await cache.delete(url).catch(() => false); // a damaged entry: fetch it again
  }
  return retrying(f, async () => {
    const res = await download(f, url);
    if (!res) return undefined;
    const length = declaredLength(res);
    const progress = new Progress(file, f.onDownload, { total: length.total });
    // The entry is kept only if the body is whole: a short one errors the stream, so put() fails.
    const body = bodyStream(res, { what: url, signal: f.signal, progress }, (n) => checkLength(url, n, length));
    const headers = {
      "content-type": res.headers.get("content-type") ?? "application/octet-stream",
      ...(length.total !== undefined && !length.mayBeLonger ? { "content-length": String(length.total) } : {}),
    };
    try {
      await cache.put(url, new Response(body.stream, { headers }));
    } catch {
      f.signal?.throwIfAborted();
      if (body.error) throw body.error; // the body broke off (tried again), not the cache
      return null; // the cache refused the file (quota): read it into memory instead
    }
    progress.end();
    return (await complete(await cache.match(url).catch(() => undefined))) ?? null;
  });
}

/** The whole body, with progress events; throws (transient) when it is shorter (or longer) than Content-Length. */
async function readWhole(f: Fetcher, res: Response, url: string, file: string, cached: boolean): Promise<Uint8Array> {
  const length = declaredLength(res);
  const progress = new Progress(file, f.onDownload, { total: length.total, cached });
  const bytes = (await readBody(res, { what: url, signal: f.signal, progress }))!;
  checkLength(url, bytes.length, length);
  progress.end();
  return bytes;
}

/**
 * A model directory the user picked (`<input type="file" webkitdirectory>`) or dropped: files
 * are matched by base name, the one nearest the top of the directory winning. Takes a FileList or
 * File[] (their webkitRelativePath gives the depth) or a record of relative path → File.
 */
export function pickedFiles(files: Iterable<File> | Record<string, File>): ModelFiles {
  const entries: [string, File][] =
    Symbol.iterator in files ? [...(files as Iterable<File>)].map((f) => [f.webkitRelativePath || f.name, f]) : Object.entries(files);
  const byName = new Map<string, { file: File; depth: number }>();
  for (const [path, file] of entries) {
    const parts = path.split("/").filter(Boolean);
    const name = parts.at(-1) ?? file.name;
    const had = byName.get(name);
    if (!had || parts.length < had.depth) byName.set(name, { file, depth: parts.length });
  }
  const read: ModelFiles = async (name) => {
    const e = byName.get(name);
    return e ? new Uint8Array(await e.file.arrayBuffer()) : undefined;
  };
  read.ranges = async (name) => {
    const e = byName.get(name);
    return e && blobRangeReader(e.file, name);
  };
  return read;
}

// ---- Opening a model directory ----

/**
 * The directory's tokenizer: tokenizer.json, else vocab.json + merges.txt (with
 * tokenizer_config.json and special_tokens_map.json when present); null when it has none.
 */
export async function openTokenizer(files: ModelFiles, label = "tokenizer"): Promise<Tokenizer | null> {
  const t: TokenizerFiles = {};
  const read = async (key: keyof TokenizerFiles, file: string) => {
    const b = await files(file);
    if (b) t[key] = text(b);
  };
  await read("tokenizerJson", "tokenizer.json");
  if (t.tokenizerJson === undefined) {
    await read("vocabJson", "vocab.json");
    await read("mergesTxt", "merges.txt");
    if (t.vocabJson === undefined && t.mergesTxt === undefined) return null;
  }
  await read("tokenizerConfigJson", "tokenizer_config.json");
  await read("specialTokensMapJson", "special_tokens_map.json");
  try {
    return Tokenizer.fromFiles(t);
  } catch (e) {
    throw new Error(`${label}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** config.json (checked: a model that cannot run is refused here) and the tokenizer files. */
async function openConfigAndTokenizer(files: ModelFiles, label: string): Promise<{ config: ModelConfig; tokenizer: Tokenizer | null }> {
  const cfg = await files("config.json");
  if (!cfg) throw new Error(`wasm-lm: ${label}/config.json not found (a model directory needs config.json)`);
  const config = parseModelConfig(text(cfg), `${label}/config.json`);
  return { config, tokenizer: await openTokenizer(files, label) };
}

/**
 * Reads a model directory: config.json first (a model that cannot run is refused before its
 * weights are read), then the tokenizer files, then the checkpoint (model.safetensors, an index
 * and its shards, or pytorch_model.bin). `label` names the directory in errors.
 */
export async function openModelFiles(
  files: ModelFiles,
  label: string,
): Promise<{ config: ModelConfig; source: TensorSource | AsyncTensorSource; tokenizer: Tokenizer | null }> {
  const { config, tokenizer } = await openConfigAndTokenizer(files, label);
  if (files.ranges) {
    // A safetensors checkpoint is read in pieces as the weights are copied into wasm.
    const source = await openRangedSafetensorsCheckpoint(files.ranges, label);
    if (source) return { config, source, tokenizer };
  }
  const found = new Map<string, Uint8Array>();
  // (With ranges, the safetensors files are known absent by now.)
  for (const file of CHECKPOINT_FILES.filter((f) => !files.ranges || !f.startsWith("model.safetensors"))) {
    const bytes = await files(file);
    if (!bytes) continue;
    found.set(file, bytes);
    if (file.endsWith(".index.json")) {
      for (const shard of shardFiles(parseShardIndex(bytes, `${label}/${file}`))) {
        const b = await files(shard);
        if (b) found.set(shard, b); // a missing shard is reported by openCheckpoint
      }
    }
    break;
  }
  return { config, source: openCheckpoint(found, label), tokenizer };
}

/**
 * Fetches a model (a hub id `owner/name` or a URL of a directory in the hub layout) and loads it:
 * `loadModelFromUrl("facebook/opt-125m", { onDownload, threads, dtype })`. A second call reads
 * the files from the Cache API where there is one.
 */
export async function loadModelFromUrl(base: string, opts: LoadFromUrlOptions = {}): Promise<LoadedFromUrl> {
  const root = resolveModelUrl(base, opts);
  const label = root.slice(0, -1);
  const files = urlFiles(base, opts);
  if (opts.stream) {
    if (opts.residentLayers === true)
      throw new Error("wasm-lm: stream reads layers as they are needed: it cannot be combined with residentLayers true");
    const { config, tokenizer } = await openConfigAndTokenizer(files, label);
    const headers = isHubId(base) && opts.token ? { authorization: `Bearer ${opts.token}` } : undefined;
    const source = await openRangedCheckpoint(
      async (file) =>
        httpRangeReader(root + file, { fetch: opts.fetch, headers, signal: opts.signal, retries: opts.retries, label: `${label}/${file}` }),
      label,
    );
    const model = await DecoderModel.load(config, source, { ...opts, residentLayers: false, label: opts.label ?? label });
    return { model, tokenizer, config };
  }
  const { config, source, tokenizer } = await openModelFiles(files, label);
  opts.signal?.throwIfAborted();
  const model = await DecoderModel.load(config, source, { ...opts, label: opts.label ?? label });
  return { model, tokenizer, config };
}
