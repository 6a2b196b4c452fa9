// Node-only: download a model from the Hugging Face hub into a local cache.
//
// Layout: <cache>/<owner>--<name>/<revision>/<file>. Files arrive as <file>.incomplete and
// are renamed only once complete and verified (size and sha256 when the server states them),
// so a file without that suffix is trusted. A completed model also gets a manifest, which
// lets the next call return without any request (a cached "main" is therefore not refreshed:
// pin a commit as `revision`, or delete the directory, to update).
// Not handled: two processes downloading the same file at once (they would share the
// .incomplete file; the sha256 check catches the damage for LFS files).

import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { CHECKPOINT_FILES } from "./index.js";
import { isPlainFileName, parseShardIndex, shardFiles } from "./multi.js";
import { checkRevision, DEFAULT_ENDPOINT, HubError, hubFileUrl, parseModelId } from "./hubids.js";
import { errorText } from "./types.js";

export { HubError, parseModelId } from "./hubids.js";

export interface DownloadProgress {
  file: string;
  /** Bytes on disk so far, including a resumed part. */
  loaded: number;
  /** Expected size, when the server says. */
  total?: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Cache root (default $WASM_LM_CACHE, else ~/.cache/wasm-lm/hub). */
  cacheDir?: string;
  /** Hub URL (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Use only the cache (default: $HF_HUB_OFFLINE is 1/true/yes/on). */
  offline?: boolean;
  /** Bearer token (default $HF_TOKEN); sent to the hub's origin only, never to a redirect target. */
  token?: string;
  /**
   * Download progress, per chunk. (Not `onProgress`: the model loader's LoadOptions use that
   * name for weight loading, and src/node.ts merges both option sets.)
   */
  onDownload?: (p: DownloadProgress) => void;
  /** How many times a dropped connection or 5xx is retried, resuming (default 3). */
  retries?: number;
  /**
   * Called with config.json (text, local path) as soon as it is downloaded, before any weight
   * file: throw to stop there, so a model that cannot run is refused without fetching gigabytes.
   */
  checkConfig?: (text: string, path: string) => void;
}

/** Files fetched when present; a 404 for them is normal. */
export const OPTIONAL_FILES = [
  "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
  "special_tokens_map.json", "generation_config.json",
] as const;

const MANIFEST = ".wasm-lm-complete.json";

function envFlag(v: string | undefined): boolean {
  return v !== undefined && ["1", "on", "yes", "true"].includes(v.trim().toLowerCase());
}

/** Where `resolveModel` keeps (or would keep) a model, without touching the network. */
export function modelCacheDir(id: string, opts: Pick<ResolveOptions, "cacheDir" | "revision"> = {}): string {
  const { owner, name } = parseModelId(id);
  const root = opts.cacheDir ?? process.env.WASM_LM_CACHE ?? join(homedir(), ".cache", "wasm-lm", "hub");
  return join(root, `${owner}--${name}`, ...checkRevision(opts.revision ?? "main").split("/"));
}

interface Ctx {
  id: string;
  owner: string;
  name: string;
  revision: string;
  dir: string;
  endpoint: string;
  token?: string;
  retries: number;
  onProgress?: (p: DownloadProgress) => void;
}

/**
 * Returns a local directory holding the model `id` (config.json, the weights, tokenizer files
 * when the repository has them), downloading what the cache lacks.
 */
export async function resolveModel(id: string, opts: ResolveOptions = {}): Promise<string> {
  const { owner, name } = parseModelId(id);
  const revision = checkRevision(opts.revision ?? "main");
  const dir = modelCacheDir(id, { ...opts, revision });

  const cached = readManifest(dir);
  if (cached && cached.every((f) => existsSync(join(dir, f)))) return dir;

  if (opts.offline ?? envFlag(process.env.HF_HUB_OFFLINE)) {
    checkOfflineDir(dir, id, revision);
    return dir;
  }

  const ctx: Ctx = {
    id, owner, name, revision, dir,
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: opts.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN,
    retries: opts.retries ?? 3,
    onProgress: opts.onDownload,
  };
  await mkdir(dir, { recursive: true });

  const got: string[] = [];
  const cfg = await download(ctx, "config.json");
  if (cfg !== "ok") {
    const hint = cfg === "denied" ? " (private or gated repositories need HF_TOKEN)" : "";
    throw new HubError(`model '${id}' not found at ${fileUrl(ctx, "config.json")}${hint}`);
  }
  got.push("config.json");
  if (opts.checkConfig) {
    const path = join(dir, "config.json");
    opts.checkConfig(readFileSync(path, "utf8"), path);
  }

  let weights = false;
  for (const file of CHECKPOINT_FILES) {
    const r = await download(ctx, file);
    if (r === "denied") throw new HubError(`access denied to ${fileUrl(ctx, file)} (set HF_TOKEN)`);
    if (r === "missing") continue;
    got.push(file);
    if (file.endsWith(".index.json")) {
      const wm = parseShardIndex(readFileSync(join(dir, file)), `${id}/${file}`);
      for (const shard of shardFiles(wm)) {
        if (await download(ctx, shard) !== "ok") {
          throw new HubError(`shard ${shard} named by ${file} is missing at ${fileUrl(ctx, shard)}`);
        }
        got.push(shard);
      }
    }
    weights = true;
    break;
  }
  if (!weights) {
    throw new HubError(`model '${id}' has no weights at ${ctx.endpoint}/${owner}/${name} ` +
      `(looked for ${CHECKPOINT_FILES.join(", ")})`);
  }

  for (const file of OPTIONAL_FILES) {
    const r = await download(ctx, file);
    if (r === "ok") got.push(file);
  }
  await writeFile(join(dir, MANIFEST), JSON.stringify({ id, revision, files: got }, null, 1) + "\n");
  return dir;
}

function readManifest(dir: string): string[] | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as { files?: unknown };
    if (Array.isArray(m.files) && m.files.every((f) => typeof f === "string" && isPlainFileName(f))) {
      return m.files as string[];
    }
  } catch {
    // no manifest, or a damaged one: treat the model as not complete
  }
  return undefined;
}

/** Offline without a manifest: accept a directory that has config.json and a full checkpoint. */
function checkOfflineDir(dir: string, id: string, revision: string): void {
  const where = `offline mode: model '${id}' (revision ${revision}) is not in the cache at ${dir}`;
  if (!existsSync(join(dir, "config.json"))) throw new HubError(`${where}: config.json is missing`);
  for (const file of CHECKPOINT_FILES) {
    const p = join(dir, file);
    if (!existsSync(p)) continue;
    if (file.endsWith(".index.json")) {
      for (const shard of shardFiles(parseShardIndex(readFileSync(p), p))) {
        if (!existsSync(join(dir, shard))) throw new HubError(`${where}: shard ${shard} is missing`);
      }
    }
    return;
  }
  throw new HubError(`${where}: no weights (looked for ${CHECKPOINT_FILES.join(", ")})`);
}

function fileUrl(ctx: Ctx, file: string): string {
  return hubFileUrl(ctx.endpoint, ctx.owner, ctx.name, ctx.revision, file);
}

/** A failure worth retrying (with resume): the network, or a 5xx. */
class Transient extends HubError {}

/** Downloads one file into the cache unless already there. */
async function download(ctx: Ctx, file: string): Promise<"ok" | "missing" | "denied"> {
  if (!isPlainFileName(file)) throw new HubError(`refusing to download ${JSON.stringify(file)}: not a plain file name`);
  if (existsSync(join(ctx.dir, file))) return "ok";
  let restarts = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetchOnce(ctx, file);
    } catch (e) {
      if (e instanceof Restart && restarts++ < 2) continue; // a resume went wrong: start over
      if (e instanceof Transient && attempt < ctx.retries) {
        await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        continue;
      }
      throw e instanceof Restart ? new HubError(e.message) : e;
    }
  }
}

/** The partial file could not be resumed (or was bad after a resume): delete it and retry. */
class Restart extends HubError {}

async function fetchOnce(ctx: Ctx, file: string): Promise<"ok" | "missing" | "denied"> {
  const dest = join(ctx.dir, file);
  const part = dest + ".incomplete";
  const start = existsSync(part) ? statSync(part).size : 0;
  const url = fileUrl(ctx, file);

  // Follow redirects by hand: the hub states X-Linked-Size / X-Linked-ETag on its 302 to the
  // LFS storage, and the token must not travel to another origin.
  const origin = new URL(url).origin;
  let u = url;
  let res: Response | undefined;
  let linkedSize: string | null = null;
  let linkedEtag: string | null = null;
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (start > 0) headers.range = `bytes=${start}-`;
    if (ctx.token && new URL(u).origin === origin) headers.authorization = `Bearer ${ctx.token}`;
    try {
      res = await fetch(u, { headers, redirect: "manual" });
    } catch (e) {
      throw new Transient(`network error fetching ${u}: ${errorText(e)}`);
    }
    linkedSize ??= res.headers.get("x-linked-size");
    linkedEtag ??= res.headers.get("x-linked-etag");
    const loc = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && loc) {
      await res.body?.cancel();
      u = new URL(loc, u).href;
      continue;
    }
    break;
  }
  if (!res || (res.status >= 300 && res.status < 400)) throw new HubError(`too many redirects fetching ${url}`);

  if (res.status === 404) {
    await res.body?.cancel();
    return "missing";
  }
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    return "denied";
  }
  if (res.status === 416 && start > 0) {
    await res.body?.cancel();
    await rm(part, { force: true });
    throw new Restart(`${file}: server refused to resume at byte ${start}`);
  }
  if (res.status >= 500) {
    await res.body?.cancel();
    throw new Transient(`HTTP ${res.status} ${res.statusText} fetching ${u}`);
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new HubError(`HTTP ${res.status} ${res.statusText} fetching ${u}`);
  }

  // 200 to a ranged request: the server ignored Range, so the body is the whole file.
  let from = start;
  let total: number | undefined;
  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
    if (!m || Number(m[1]) !== start) {
      await res.body?.cancel();
      await rm(part, { force: true });
      throw new Restart(`${file}: server answered a resume at byte ${start} with ${res.headers.get("content-range")}`);
    }
    if (m[3] !== "*") total = Number(m[3]);
  } else {
    from = 0;
    const len = res.headers.get("content-length");
    if (len !== null && !res.headers.get("content-encoding")) total = Number(len);
  }
  if (linkedSize !== null && /^\d+$/.test(linkedSize)) total = Number(linkedSize);
  const sha = sha256Of(linkedEtag) ?? sha256Of(res.headers.get("etag"));

  // Hash the part already on disk, then the rest as it arrives.
  const hash = createHash("sha256");
  if (from > 0) {
    for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  }
  const fh = await open(part, from > 0 ? "a" : "w");
  let loaded = from;
  try {
    const reader = res.body?.getReader();
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array> | undefined;
      try {
        r = await reader?.read();
      } catch (e) {
        // What arrived is on disk, so the retry resumes from here.
        throw new Transient(`connection lost downloading ${url} after ${loaded} bytes: ${errorText(e)}`);
      }
      if (!r || r.done) break;
      await fh.write(r.value);
      hash.update(r.value);
      loaded += r.value.length;
      ctx.onProgress?.({ file, loaded, total });
    }
  } finally {
    await fh.close();
  }

  let bad: string | undefined;
  if (total !== undefined && loaded !== total) bad = `size ${loaded} bytes, expected ${total}`;
  else if (sha && hash.digest("hex") !== sha) bad = `sha256 does not match ${sha}`;
  if (bad) {
    await rm(part, { force: true });
    const msg = `${file}: downloaded file rejected (${bad}) from ${url}`;
    if (from > 0) throw new Restart(msg); // the kept part may be stale: try once from scratch
    throw new HubError(msg);
  }
  await rename(part, dest);
  return "ok";
}

/** A sha256 from an ETag (the hub's LFS ETags are the file's sha256), else undefined. */
function sha256Of(etag: string | null): string | undefined {
  const v = etag?.replace(/^W\//, "").replace(/"/g, "").trim().toLowerCase();
  return v && /^[0-9a-f]{64}$/.test(v) ? v : undefined;
}

