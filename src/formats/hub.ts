// Node-only: a model from the Hugging Face hub, kept in the hub's own cache, so a model Python
// (huggingface_hub, transformers) already downloaded loads with no download, and ours serve Python.
//
// Layout, as https://huggingface.co/docs/hub/local-cache and huggingface_hub's file_download.py
// write it (root: see hubCacheRoot):
//   <root>/models--<owner>--<name>/
//     refs/<revision>            the commit a branch or tag resolved to (X-Repo-Commit); none for a commit
//     blobs/<etag>               contents, named by the hub's ETag: an LFS file's sha256 (X-Linked-Etag),
//                                a small file's git blob sha1
//     blobs/<etag>.incomplete    a download in progress: resumed with Range, renamed once verified
//     snapshots/<commit>/<file>  relative symlink to ../../blobs/<etag> (a copy where symlinks fail)
//     .no_exist/<commit>/<file>  empty: the file is known not to exist at that commit
//   <root>/.locks/models--<owner>--<name>/<etag>.wasm-lm.lock   one wasm-lm download per blob
// Python's own locks (flock on <etag>.lock, same folder) cannot be seen from Node, so a Python
// and a wasm-lm process fetching the same blob at the same moment are not kept apart: the size
// and sha256 checks then reject a damaged LFS file.
//
// A branch or tag costs one request per call (HEAD on config.json for X-Repo-Commit); a commit
// hash whose snapshot is complete costs none; offline, refs/<revision> names the snapshot.
// The old wasm-lm cache (<WASM_LM_CACHE or ~/.cache/wasm-lm/hub>/<owner>--<name>/<revision>/) is
// still read: offline it is used as it is; online its files are adopted into blobs/ (hard link,
// else copy) when they hash to the hub's ETag, instead of being downloaded again.
// Requests, retries, bodies and progress events go through ../http.ts.

import { createHash, randomUUID } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { copyFile, link, mkdir, open, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { homedir, hostname } from "node:os";
import { dirname, join, relative } from "node:path";
import { CHECKPOINT_FILES } from "./index.js";
import { isPlainFileName, parseShardIndex, shardFiles } from "./multi.js";
import { checkRevision, DEFAULT_ENDPOINT, HubError, hubFileUrl, parseModelId } from "./hubids.js";
import {
  declaredLength,
  discard,
  HttpError,
  isTransient,
  Progress,
  readChunks,
  send,
  sleep,
  statusError,
  withRetries,
  type DownloadProgress,
} from "../http.js";

export { HubError, parseModelId } from "./hubids.js";
export type { DownloadProgress } from "../http.js";

export interface ResolveOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Hub cache root (default: see hubCacheRoot — $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub URL (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Use only the cache (default: $HF_HUB_OFFLINE or $TRANSFORMERS_OFFLINE is 1/true/yes/on). */
  offline?: boolean;
  /** Bearer token (default $HF_TOKEN); sent to the hub's origin only, never to a redirect target. */
  token?: string;
  /**
   * Download progress: at most ~10 events a second per file, plus a last one per file when it is
   * complete (`loaded` counts a resumed part). (Not `onProgress`: the model loader's LoadOptions
   * use that name for weight loading, and src/node.ts merges both option sets.)
   */
  onDownload?: (p: DownloadProgress) => void;
  /**
   * How many times a failed try is tried again, resuming (default 3): a dropped connection, HTTP
   * 408, 429 or 5xx, after the server's Retry-After or a growing pause (see src/http.ts).
   */
  retries?: number;
  /**
   * Called with config.json (text, local path) as soon as it is downloaded, before any weight
   * file: throw to stop there, so a model that cannot run is refused without fetching gigabytes.
   */
  checkConfig?: (text: string, path: string) => void;
  /** Stops a download promptly (rejecting with signal.reason); the part on disk resumes next time. */
  signal?: AbortSignal;
}

/** Files fetched when present; a 404 for them is normal. */
export const OPTIONAL_FILES = [
  "tokenizer.json",
  "vocab.json",
  "merges.txt",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
] as const;

/** A full commit hash: huggingface_hub uses such a revision as the snapshot name directly. */
const COMMIT_HASH = /^[0-9a-f]{40}$/;
/** What a commit from a header or a ref file must look like before it names a directory. */
const COMMIT_LIKE = /^[0-9a-fA-F]{40,64}$/;
/** A lock untouched this long, held from another host, is taken to be left by a dead process. */
const LOCK_STALE_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Where things are

function envFlag(v: string | undefined): boolean {
  return v !== undefined && ["1", "on", "yes", "true"].includes(v.trim().toLowerCase());
}

function envPath(name: string): string | undefined {
  const v = process.env[name];
  if (!v) return undefined;
  return v === "~" || v.startsWith("~/") ? join(homedir(), v.slice(1)) : v;
}

/**
 * The hub cache root, as huggingface_hub's constants.py picks it: `cacheDir`, else $HF_HUB_CACHE
 * (or the older $HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 * else ~/.cache/huggingface/hub.
 */
export function hubCacheRoot(cacheDir?: string): string {
  return (
    cacheDir ??
    envPath("HF_HUB_CACHE") ??
    envPath("HUGGINGFACE_HUB_CACHE") ??
    join(envPath("HF_HOME") ?? join(envPath("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "huggingface"), "hub")
  );
}

/** The model's folder in the hub cache (refs/, blobs/, snapshots/), without touching the network. */
export function modelCacheDir(id: string, opts: Pick<ResolveOptions, "cacheDir"> = {}): string {
  const { owner, name } = parseModelId(id);
  return join(hubCacheRoot(opts.cacheDir), `models--${owner}--${name}`);
}

/** Where wasm-lm ≤ this version kept a model: <WASM_LM_CACHE or ~/.cache/wasm-lm/hub>/<owner>--<name>/<revision>. */
export function legacyModelDir(id: string, revision = "main"): string {
  const { owner, name } = parseModelId(id);
  const root = envPath("WASM_LM_CACHE") ?? join(homedir(), ".cache", "wasm-lm", "hub");
  return join(root, `${owner}--${name}`, ...checkRevision(revision).split("/"));
}

/** The commit `revision` resolved to last time (itself when it is a commit hash), from refs/. */
function cachedCommit(repoDir: string, revision: string): string | undefined {
  if (COMMIT_HASH.test(revision)) return revision;
  try {
    const c = readFileSync(join(repoDir, "refs", ...revision.split("/")), "utf8").trim();
    return COMMIT_LIKE.test(c) ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Why `dir` cannot be loaded (no config.json, no checkpoint, a missing shard), or undefined. */
function snapshotProblem(dir: string): string | undefined {
  if (!existsSync(join(dir, "config.json"))) return "config.json is missing";
  for (const file of CHECKPOINT_FILES) {
    const p = join(dir, file);
    if (!existsSync(p)) continue;
    if (file.endsWith(".index.json")) {
      for (const shard of shardFiles(parseShardIndex(readFileSync(p), p))) {
        if (!isPlainFileName(shard)) return `${file} names ${JSON.stringify(shard)}, not a plain file name`;
        if (!existsSync(join(dir, shard))) return `shard ${shard} is missing`;
      }
    }
    return undefined;
  }
  return `no weights (looked for ${CHECKPOINT_FILES.join(", ")})`;
}

/** The cached snapshot of `revision` (else the old wasm-lm directory), or a one-line error. */
function fromCache(id: string, revision: string, repoDir: string): string {
  const commit = cachedCommit(repoDir, revision);
  let problem = `no refs/${revision}`;
  if (commit) {
    const dir = join(repoDir, "snapshots", commit);
    const p = snapshotProblem(dir);
    if (!p) return dir;
    problem = `snapshots/${commit}: ${p}`;
  } else {
    // From a server that sends no X-Repo-Commit, the snapshot is named by the revision (and
    // huggingface_hub, finding no ref, looks there too).
    const dir = join(repoDir, "snapshots", ...revision.split("/"));
    if (!snapshotProblem(dir)) return dir;
  }
  const legacy = legacyModelDir(id, revision);
  if (!snapshotProblem(legacy)) return legacy;
  throw new HubError(`offline mode: model '${id}' (revision ${revision}) is not in the cache at ${repoDir}: ${problem}`);
}

// ---------------------------------------------------------------------------------------------
// resolveModel

interface Ctx {
  id: string;
  owner: string;
  name: string;
  revision: string;
  repoDir: string;
  locksDir: string;
  legacyDir: string;
  endpoint: string;
  token?: string;
  retries: number;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** X-Repo-Commit, when the server sends it. */
  commit?: string;
  /** What URLs name: the commit once known, so every file comes from the same one. */
  urlRevision: string;
  /** snapshots/<commit> (snapshots/<revision> from a server that sends no commit). */
  snapshot: string;
}

/**
 * Returns a local directory holding the model `id` (config.json, the weights, tokenizer files
 * when the repository has them) — a snapshot in the hub cache — downloading what it lacks.
 */
export async function resolveModel(id: string, opts: ResolveOptions = {}): Promise<string> {
  try {
    return await resolve(id, opts);
  } catch (e) {
    throw e instanceof HttpError ? new HubError(e.message, { cause: e }) : e;
  }
}

async function resolve(id: string, opts: ResolveOptions): Promise<string> {
  const { owner, name } = parseModelId(id);
  const revision = checkRevision(opts.revision ?? "main");
  const root = hubCacheRoot(opts.cacheDir);
  const repoDir = join(root, `models--${owner}--${name}`);
  opts.signal?.throwIfAborted();

  // A commit never changes: a complete snapshot of it needs no request.
  if (COMMIT_HASH.test(revision) && !snapshotProblem(join(repoDir, "snapshots", revision))) {
    return join(repoDir, "snapshots", revision);
  }
  if (opts.offline ?? (envFlag(process.env.HF_HUB_OFFLINE) || envFlag(process.env.TRANSFORMERS_OFFLINE))) {
    return fromCache(id, revision, repoDir);
  }

  const ctx: Ctx = {
    id,
    owner,
    name,
    revision,
    repoDir,
    locksDir: join(root, ".locks", `models--${owner}--${name}`),
    legacyDir: legacyModelDir(id, revision),
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: opts.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN,
    retries: opts.retries ?? 3,
    onProgress: opts.onDownload,
    signal: opts.signal,
    urlRevision: revision,
    snapshot: join(repoDir, "snapshots", ...revision.split("/")),
  };

  // The ref check: one HEAD, which also describes config.json.
  let head: Head;
  try {
    head = await retrying(ctx, () => headOnce(ctx, "config.json"));
  } catch (e) {
    // The hub is out of reach: use what the cache has, as huggingface_hub does.
    if (isTransient(e)) {
      try {
        return fromCache(id, revision, repoDir);
      } catch {
        // nothing cached either: the network error says more
      }
    }
    throw e;
  }
  if (head.status !== "ok") {
    const hint = head.status === "denied" ? " (private or gated repositories need HF_TOKEN)" : "";
    throw new HubError(`model '${id}' not found at ${fileUrl(ctx, "config.json")}${hint}`);
  }
  if (head.commit !== undefined) {
    if (!COMMIT_LIKE.test(head.commit))
      throw new HubError(`${fileUrl(ctx, "config.json")}: invalid X-Repo-Commit ${JSON.stringify(head.commit)}`);
    ctx.commit = head.commit;
    ctx.urlRevision = head.commit;
    ctx.snapshot = join(repoDir, "snapshots", head.commit);
    if (revision !== head.commit) await writeRef(repoDir, revision, head.commit);
  }

  await ensure(ctx, "config.json", head);
  if (opts.checkConfig) {
    const path = join(ctx.snapshot, "config.json");
    opts.checkConfig(readFileSync(path, "utf8"), path);
  }

  // A checkpoint already in the snapshot is used as it is (say pytorch_model.bin from Python),
  // even when the hub also has a preferred one.
  const have = CHECKPOINT_FILES.find((f) => existsSync(join(ctx.snapshot, f)));
  let weights = false;
  for (const file of have ? [have] : CHECKPOINT_FILES) {
    const r = await ensure(ctx, file);
    if (r === "denied") throw new HubError(`access denied to ${fileUrl(ctx, file)} (set HF_TOKEN)`);
    if (r === "missing") continue;
    if (file.endsWith(".index.json")) {
      const wm = parseShardIndex(readFileSync(join(ctx.snapshot, file)), `${id}/${file}`);
      for (const shard of shardFiles(wm)) {
        if ((await ensure(ctx, shard)) !== "ok") {
          throw new HubError(`shard ${shard} named by ${file} is missing at ${fileUrl(ctx, shard)}`);
        }
      }
    }
    weights = true;
    break;
  }
  if (!weights) {
    throw new HubError(`model '${id}' has no weights at ${ctx.endpoint}/${owner}/${name} ` + `(looked for ${CHECKPOINT_FILES.join(", ")})`);
  }
  for (const file of OPTIONAL_FILES) await ensure(ctx, file);
  return ctx.snapshot;
}

async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  const path = join(repoDir, "refs", ...revision.split("/"));
  try {
    if (readFileSync(path, "utf8") === commit) return;
  } catch {
    // no ref yet
  }
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.tmp`; // a unique name: concurrent calls write the same ref
  await writeFile(tmp, commit);
  await rename(tmp, path);
}

function fileUrl(ctx: Ctx, file: string): string {
  return hubFileUrl(ctx.endpoint, ctx.owner, ctx.name, ctx.urlRevision, file);
}

/** Puts `file` in the snapshot unless it is there or known missing; fetches its blob if needed. */
async function ensure(ctx: Ctx, file: string, head?: Head): Promise<"ok" | "missing" | "denied"> {
  if (!isPlainFileName(file)) throw new HubError(`refusing to download ${JSON.stringify(file)}: not a plain file name`);
  const dest = join(ctx.snapshot, file);
  if (existsSync(dest)) return "ok";
  const noExist = ctx.commit && join(ctx.repoDir, ".no_exist", ctx.commit, file);
  if (noExist && existsSync(noExist)) return "missing";

  head ??= await retrying(ctx, () => headOnce(ctx, file));
  if (head.status === "denied") return "denied";
  if (head.status === "missing") {
    if (noExist) {
      await mkdir(dirname(noExist), { recursive: true });
      await writeFile(noExist, "");
    }
    return "missing";
  }
  const blob = await fetchBlob(ctx, file, head);
  await linkIntoSnapshot(blob, dest);
  return "ok";
}

/** Points snapshots/<commit>/<file> at its blob: a relative symlink, or a copy where there are none. */
async function linkIntoSnapshot(blob: string, dest: string): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  await rm(dest, { force: true });
  try {
    await symlink(relative(dirname(dest), blob), dest);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && existsSync(dest)) return; // made by a concurrent call
    if (code !== "EPERM" && code !== "EACCES" && code !== "ENOSYS" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
    // Windows without developer mode: huggingface_hub's degraded mode keeps a copy in snapshots/.
    const tmp = `${dest}.${randomUUID()}.tmp`;
    await copyFile(blob, tmp);
    await rename(tmp, dest);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP (through ../http.ts): one request function (manual redirects, the token on the hub's
// origin only), HEAD, GET

/** The partial file could not be resumed (or was bad after a resume): delete it and retry. */
class Restart extends HubError {}

interface Head {
  status: "ok" | "missing" | "denied";
  commit?: string;
  /** The blob name: X-Linked-Etag (LFS sha256), else ETag (git sha1), normalized; unset when unusable. */
  etag?: string;
  size?: number;
}

interface Hop {
  res: Response;
  url: string;
  commit?: string;
  linkedEtag?: string;
  linkedSize?: string;
  crossOrigin: boolean;
}

/**
 * Fetches `url`, following redirects by hand: the hub states X-Linked-Size / X-Linked-Etag and
 * X-Repo-Commit on its 302 to the LFS storage, and the token must not travel to another origin.
 * A HEAD stops at a redirect to another origin (its headers are the ones wanted).
 */
async function request(ctx: Ctx, url: string, method: "GET" | "HEAD", range?: number): Promise<Hop> {
  const origin = new URL(url).origin;
  let u = url;
  let commit: string | undefined;
  let linkedEtag: string | undefined;
  let linkedSize: string | undefined;
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (range) headers.range = `bytes=${range}-`;
    if (ctx.token && new URL(u).origin === origin) headers.authorization = `Bearer ${ctx.token}`;
    const res = await send(u, { method, headers, redirect: "manual", signal: ctx.signal });
    commit ??= res.headers.get("x-repo-commit") ?? undefined;
    linkedEtag ??= res.headers.get("x-linked-etag") ?? undefined;
    linkedSize ??= res.headers.get("x-linked-size") ?? undefined;
    const loc = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && loc) {
      const next = new URL(loc, u);
      if (method === "HEAD" && next.origin !== origin) return { res, url: u, commit, linkedEtag, linkedSize, crossOrigin: true };
      await discard(res);
      u = next.href;
      continue;
    }
    return { res, url: u, commit, linkedEtag, linkedSize, crossOrigin: false };
  }
  throw new HubError(`too many redirects fetching ${url}`);
}

/** Fails on a status that is not success (transient for 408, 429, 5xx). */
async function failOn(res: Response, u: string): Promise<never> {
  await discard(res);
  throw statusError(res, u);
}

/** huggingface_hub's _normalize_etag (no W/, no quotes), kept only if it is a safe file name. */
function blobName(etag: string | null | undefined): string | undefined {
  const v = etag?.trim().replace(/^W\//, "").replace(/"/g, "");
  return v && /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(v) && !v.endsWith(".incomplete") ? v : undefined;
}

const SHA256 = /^[0-9a-f]{64}$/;
const SHA1 = /^[0-9a-f]{40}$/;

async function headOnce(ctx: Ctx, file: string): Promise<Head> {
  const hop = await request(ctx, fileUrl(ctx, file), "HEAD");
  const { res } = hop;
  const commit = hop.commit;
  if (res.status === 404) return { status: "missing", commit };
  if (res.status === 401 || res.status === 403) return { status: "denied", commit };
  if (!hop.crossOrigin && (res.status < 200 || res.status >= 300)) await failOn(res, hop.url);
  const etag = blobName(hop.linkedEtag ?? res.headers.get("etag"));
  let size = hop.linkedSize !== undefined && /^\d+$/.test(hop.linkedSize) ? Number(hop.linkedSize) : undefined;
  const len = res.headers.get("content-length");
  if (size === undefined && !hop.crossOrigin && len !== null && /^\d+$/.test(len) && !res.headers.get("content-encoding"))
    size = Number(len);
  return { status: "ok", commit, etag, size };
}

/**
 * Runs `what` under the retry policy (a retried download resumes the part on disk); a Restart
 * (the part was deleted) starts it over, twice at most.
 */
async function retrying<T>(ctx: Ctx, what: () => Promise<T>): Promise<T> {
  for (let restarts = 0; ; restarts++) {
    try {
      return await withRetries(what, { retries: ctx.retries, signal: ctx.signal });
    } catch (e) {
      if (!(e instanceof Restart)) throw e;
      if (restarts >= 2) throw new HubError(e.message);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Blobs: one writer per blob (a lock), resumable .incomplete, verified, renamed into place

/**
 * Returns the path of the blob for `file` (blobs/<etag>), fetching it unless present: adopted
 * from the old wasm-lm cache when it hashes to the ETag, else downloaded. A server without a
 * usable ETag gets the blob named by the content's sha256.
 */
async function fetchBlob(ctx: Ctx, file: string, head: Head): Promise<string> {
  const blobs = join(ctx.repoDir, "blobs");
  const key = head.etag ?? `wasm-lm-${sha256(fileUrl(ctx, file)).slice(0, 32)}`;
  if (head.etag && existsSync(join(blobs, head.etag))) return join(blobs, head.etag);
  await mkdir(blobs, { recursive: true });
  const release = await acquireLock(join(ctx.locksDir, `${key}.wasm-lm.lock`), ctx.signal);
  try {
    if (head.etag && existsSync(join(blobs, head.etag))) return join(blobs, head.etag); // another process finished it
    if (head.etag && (await adoptLegacy(ctx, file, head.etag))) return join(blobs, head.etag);
    const part = join(blobs, `${key}.incomplete`);
    const sha = await retrying(ctx, () => getOnce(ctx, file, part, head));
    const final = join(blobs, head.etag ?? sha);
    await rename(part, final);
    return final;
  } finally {
    await release();
  }
}

/** Downloads `file` into `part` (resuming what is there); verifies size and sha256; returns the sha256. */
async function getOnce(ctx: Ctx, file: string, part: string, head: Head): Promise<string> {
  const start = existsSync(part) ? statSync(part).size : 0;
  const url = fileUrl(ctx, file);
  const { res, url: u, linkedSize } = await request(ctx, url, "GET", start);

  if (res.status === 416 && start > 0) {
    await discard(res);
    await rm(part, { force: true });
    throw new Restart(`${file}: server refused to resume at byte ${start}`);
  }
  if (res.status !== 200 && res.status !== 206) await failOn(res, u);

  // 200 to a ranged request: the server ignored Range, so the body is the whole file.
  let from = start;
  let total = head.size;
  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
    if (!m || Number(m[1]) !== start) {
      await discard(res);
      await rm(part, { force: true });
      throw new Restart(`${file}: server answered a resume at byte ${start} with ${res.headers.get("content-range")}`);
    }
    if (m[3] !== "*") total ??= Number(m[3]);
  } else {
    from = 0;
    if (!res.headers.get("content-encoding")) total ??= declaredLength(res).total;
  }
  if (linkedSize !== undefined && /^\d+$/.test(linkedSize)) total ??= Number(linkedSize);
  const want = head.etag && SHA256.test(head.etag) ? head.etag : undefined;

  // Hash the part already on disk, then the rest as it arrives.
  const hash = createHash("sha256");
  if (from > 0) {
    for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  }
  // Each chunk is on disk before the next is read, so a retry after a lost connection resumes there.
  const fh = await open(part, from > 0 ? "a" : "w");
  const progress = new Progress(file, ctx.onProgress, { loaded: from, total });
  let loaded = from;
  try {
    loaded += await readChunks(res, { what: url, signal: ctx.signal, progress }, async (chunk) => {
      await fh.write(chunk);
      hash.update(chunk);
    });
  } finally {
    await fh.close();
  }

  const got = hash.digest("hex");
  let bad: string | undefined;
  if (total !== undefined && loaded !== total) bad = `size ${loaded} bytes, expected ${total}`;
  else if (want && got !== want) bad = `sha256 does not match ${want}`;
  if (bad) {
    await rm(part, { force: true });
    const msg = `${file}: downloaded file rejected (${bad}) from ${url}`;
    if (from > 0) throw new Restart(msg); // the kept part may be stale: try once from scratch
    throw new HubError(msg);
  }
  progress.end();
  return got;
}

/** Takes the old cache's copy of `file` as blob `etag` when its sha256 (LFS) or git sha1 matches. */
async function adoptLegacy(ctx: Ctx, file: string, etag: string): Promise<boolean> {
  const src = join(ctx.legacyDir, file);
  if (!existsSync(src) || !(SHA256.test(etag) || SHA1.test(etag))) return false;
  const { size } = statSync(src);
  const hash = SHA256.test(etag) ? createHash("sha256") : createHash("sha1").update(`blob ${size}\0`);
  for await (const chunk of createReadStream(src)) hash.update(chunk as Buffer);
  if (hash.digest("hex") !== etag) return false;
  const blob = join(ctx.repoDir, "blobs", etag);
  const tmp = `${blob}.${randomUUID()}.adopt`;
  try {
    await link(src, tmp); // no second copy on the same file system
  } catch {
    await copyFile(src, tmp);
  }
  await rename(tmp, blob);
  return true;
}

/**
 * A lock file created exclusively, holding "<pid> <host>", touched while held. Waits while
 * another live holder has it; takes it over from a dead process on this host, or after
 * LOCK_STALE_MS untouched from another host. Returns the release function.
 */
async function acquireLock(path: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  const me = `${process.pid} ${hostname()}`;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const fh = await open(path, "wx");
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      const timer = setInterval(() => {
        const now = new Date();
        utimes(path, now, now).catch(() => {});
      }, LOCK_STALE_MS / 6);
      timer.unref();
      return async () => {
        clearInterval(timer);
        await rm(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    if (await lockIsStale(path)) {
      await rm(path, { force: true });
      continue;
    }
    await sleep(100, signal);
  }
}

async function lockIsStale(path: string): Promise<boolean> {
  try {
    const [text, st] = await Promise.all([readFile(path, "utf8"), stat(path)]);
    const [pid, host] = text.split(" ");
    if (host === hostname() && /^\d+$/.test(pid)) return !processAlive(Number(pid));
    return Date.now() - st.mtimeMs > LOCK_STALE_MS;
  } catch {
    return false; // just released: try again
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
