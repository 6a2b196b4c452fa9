// The hub download against a local stand-in for huggingface.co on 127.0.0.1 (and nothing else).
// The stand-in answers like the hub: X-Repo-Commit on every answer about a known revision, an ETag
// that is the git blob sha1 of a small file, X-Linked-Etag (sha256) and X-Linked-Size on LFS files.
import { describe, it, expect, beforeAll, afterAll, beforeEach, vi } from "vitest";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { HubError, hubCacheRoot, modelCacheDir, parseModelId, resolveModel, type DownloadProgress } from "../src/formats/hub.js";
import { openCheckpointDir } from "../src/formats/node.js";
import { shardedRepo } from "./builders.js";

const FIX = join(import.meta.dirname, "fixtures", "opt-tiny");
const fx = (f: string) => readFileSync(join(FIX, f));
const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
/** What git (and so the hub's ETag) calls a small file: sha1 of "blob <size>\0" + contents. */
const gitSha1 = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const isLfs = (file: string) => /\.(safetensors|bin)$/.test(file);
/** The blob name huggingface_hub gives a file. */
const etagOf = (file: string, body: Buffer) => (isLfs(file) ? sha256(body) : gitSha1(body));

/** repo → branch or tag → file → bytes */
type Repos = Record<string, Record<string, Record<string, Buffer>>>;

const tiny = {
  "config.json": fx("config.json"),
  "model.safetensors": fx("model.safetensors"),
  "generation_config.json": fx("generation_config.json"),
};
const REPOS: Repos = {
  "test/opt-tiny": { main: tiny, v1: { ...tiny, "config.json": Buffer.from('{"rev":"v1"}') } },
  "test/opt-bin": { main: { "config.json": fx("config.json"), "pytorch_model.bin": fx("pytorch_model.bin") } },
  "test/sharded": { main: shardedRepo() },
  "test/no-weights": { main: { "config.json": fx("config.json") } },
  "test/evil-index": {
    main: {
      "config.json": fx("config.json"),
      "model.safetensors.index.json": Buffer.from(JSON.stringify({ weight_map: { w: "../../escape.safetensors" } })),
    },
  },
  "test/private": { main: tiny },
};

/** A revision's commit: a hash of its contents, so changing a file moves the branch. */
function commitOf(repo: string, rev: string): string {
  const files = REPOS[repo][rev];
  const h = createHash("sha1").update(repo);
  for (const f of Object.keys(files).sort()) h.update(`\0${f}\0${etagOf(f, files[f])}`);
  return h.digest("hex");
}

/** The files of `rev` (a branch, a tag or a commit) of `repo`, and its commit. */
function lookup(repo: string, rev: string): { files: Record<string, Buffer>; commit: string } | undefined {
  const revs = REPOS[repo];
  if (!revs) return undefined;
  if (revs[rev]) return { files: revs[rev], commit: commitOf(repo, rev) };
  const branch = Object.keys(revs).find((b) => commitOf(repo, b) === rev);
  return branch ? { files: revs[branch], commit: rev } : undefined;
}

interface Logged {
  method: string;
  url: string;
  range?: string;
  auth?: string;
  host?: string;
}

/** What the server does wrong (or differently) on purpose, per test. */
interface Faults {
  /** Destroy the socket after this many body bytes, for the first `times` GETs of `file`. */
  cut?: { file: string; bytes: number; times: number };
  /** Send this many body bytes of `file`, then nothing more (the response never ends). */
  stall?: { file: string; bytes: number };
  /** Answer ranged requests with the whole file (200). */
  ignoreRange?: boolean;
  /** ETag / X-Linked-Size that do not match the file. */
  badEtag?: string;
  badSize?: string;
  /** Redirect weight files to the "CDN" server, with X-Linked-* headers on the redirect. */
  lfsRedirect?: boolean;
  /** Require this bearer token on the hub (not on the CDN). */
  token?: string;
  /** A mirror that sends no X-Repo-Commit, and no ETag of any kind. */
  plain?: boolean;
}

let hub: Server;
let cdn: Server;
let HUB = "";
let CDN = "";
let log: Logged[] = [];
let faults: Faults = {};

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<[Server, string]> {
  const s = createServer(handler);
  return new Promise((resolve) =>
    s.listen(0, "127.0.0.1", () => {
      resolve([s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`]);
    }),
  );
}

/** Sends `body` honouring `Range: bytes=N-` (HEAD: the same headers, no body). */
function sendFile(req: IncomingMessage, res: ServerResponse, file: string, body: Buffer, headers: Record<string, string>): void {
  headers["accept-ranges"] = "bytes";
  let start = 0;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  if (m && !faults.ignoreRange) {
    start = Number(m[1]);
    if (start >= body.length) {
      res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
      return;
    }
    headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
  }
  headers["content-length"] = String(body.length - start);
  res.writeHead(start ? 206 : 200, headers);
  if (req.method === "HEAD") return void res.end();
  const cut = faults.cut;
  if (cut && cut.file === file && cut.times > 0) {
    cut.times--;
    res.write(body.subarray(start, start + cut.bytes), () => res.destroy());
    return;
  }
  if (faults.stall?.file === file) return void res.write(body.subarray(start, start + faults.stall.bytes));
  res.end(body.subarray(start));
}

/** The hub's headers about one file: ETag, and for LFS files X-Linked-Etag / X-Linked-Size. */
function fileHeaders(file: string, body: Buffer, commit: string): Record<string, string> {
  if (faults.plain) return {};
  const etag = faults.badEtag === file ? sha256("other") : etagOf(file, body);
  const h: Record<string, string> = { "x-repo-commit": commit, etag: `"${etag}"` };
  if (isLfs(file)) {
    h["x-linked-etag"] = `"${etag}"`;
    h["x-linked-size"] = String(faults.badSize === file ? body.length + 1 : body.length);
  }
  return h;
}

beforeAll(async () => {
  [hub, HUB] = await listen((req, res) => {
    log.push({ method: req.method!, url: req.url!, range: req.headers.range, auth: req.headers.authorization, host: "hub" });
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(req.url!);
    if (!m) return void res.writeHead(404).end("no route");
    const [, repo, rev, file] = m.map(decodeURIComponent);
    const wantToken = repo === "test/private" ? "secret" : faults.token;
    if (wantToken && req.headers.authorization !== `Bearer ${wantToken}`) {
      return void res.writeHead(401, { "x-error-code": "RepositoryNotFound" }).end();
    }
    const found = lookup(repo, rev);
    if (!found) return void res.writeHead(404, { "x-error-code": "RevisionNotFound" }).end();
    const body = found.files[file];
    if (!body) {
      return void res.writeHead(404, { "x-error-code": "EntryNotFound", ...(faults.plain ? {} : { "x-repo-commit": found.commit }) }).end();
    }
    const headers = fileHeaders(file, body, found.commit);
    if (faults.lfsRedirect && isLfs(file)) {
      res.writeHead(302, { ...headers, location: `${CDN}/lfs/${encodeURIComponent(repo)}/${found.commit}/${file}` }).end();
      return;
    }
    sendFile(req, res, file, body, headers);
  });
  [cdn, CDN] = await listen((req, res) => {
    log.push({ method: req.method!, url: req.url!, range: req.headers.range, auth: req.headers.authorization, host: "cdn" });
    const m = /^\/lfs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(req.url!);
    const body = m && lookup(decodeURIComponent(m[1]), m[2])?.files[m[3]];
    if (!body) return void res.writeHead(404).end();
    // The CDN's own ETag is not the sha256 (as with real object stores): only the hub's
    // X-Linked-Etag on the redirect can be checked.
    sendFile(req, res, m![3], body, { etag: `"${createHash("md5").update(body).digest("hex")}"` });
  });
});

afterAll(() => {
  for (const s of [hub, cdn]) {
    s.closeAllConnections();
    s.close();
  }
});

let cache = "";
let legacy = "";
beforeEach(() => {
  log = [];
  faults = {};
  cache = mkdtempSync(join(tmpdir(), "wasm-lm-hub-"));
  legacy = join(cache, "old-wasm-lm-cache"); // never the user's ~/.cache/wasm-lm
  // The tests say everything explicitly; keep the caller's environment out of them.
  for (const k of [
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HOME",
    "XDG_CACHE_HOME",
  ]) {
    vi.stubEnv(k, undefined);
  }
  vi.stubEnv("WASM_LM_CACHE", legacy);
  return () => vi.unstubAllEnvs();
});

const opts = (extra: object = {}) => ({ endpoint: HUB, cacheDir: cache, ...extra });
const gets = (file: string) => log.filter((l) => l.method === "GET" && l.url.endsWith(`/${file}`));
const heads = (file: string) => log.filter((l) => l.method === "HEAD" && l.url.endsWith(`/${file}`));
const repoDir = (repo: string) => join(cache, `models--${repo.replace("/", "--")}`);
const snapshotOf = (repo: string, rev = "main") => join(repoDir(repo), "snapshots", commitOf(repo, rev));

/** Every path under `dir`: files as "path", symlinks as "path -> target", directories as "path/". */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isSymbolicLink()) out.push(`${rel} -> ${readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else out.push(rel);
    }
  };
  walk(dir);
  return out.sort();
}

/** A cache written the way huggingface_hub writes one (hf_hub_download / snapshot_download). */
function pythonCache(repo: string, commit: string, files: Record<string, Buffer>, refs: Record<string, string> = { main: commit }): string {
  const base = repoDir(repo);
  mkdirSync(join(base, "blobs"), { recursive: true });
  mkdirSync(join(base, "snapshots", commit), { recursive: true });
  for (const [f, body] of Object.entries(files)) {
    const etag = etagOf(f, body);
    writeFileSync(join(base, "blobs", etag), body);
    symlinkSync(`../../blobs/${etag}`, join(base, "snapshots", commit, f));
  }
  for (const [ref, c] of Object.entries(refs)) {
    mkdirSync(join(base, "refs"), { recursive: true });
    writeFileSync(join(base, "refs", ref), c);
  }
  return join(base, "snapshots", commit);
}

describe("resolveModel: the hub cache layout", () => {
  it("downloads config, weights and the optional files that exist into a snapshot", async () => {
    const progress: DownloadProgress[] = [];
    const dir = await resolveModel("test/opt-tiny", opts({ onDownload: (p: DownloadProgress) => progress.push(p) }));
    const commit = commitOf("test/opt-tiny", "main");
    expect(dir).toBe(join(cache, "models--test--opt-tiny", "snapshots", commit));
    for (const f of ["config.json", "model.safetensors", "generation_config.json"]) {
      expect(readFileSync(join(dir, f)).equals(fx(f)), f).toBe(true);
    }
    expect(existsSync(join(dir, "vocab.json"))).toBe(false); // 404 for an optional file is fine
    // model.safetensors was found first, so no other weight file was asked for
    expect(log.filter((l) => l.url.endsWith("/pytorch_model.bin"))).toEqual([]);
    // The branch is asked once; every file then comes from the commit it named.
    expect(log[0]).toMatchObject({ method: "HEAD", url: "/test/opt-tiny/resolve/main/config.json" });
    expect(log.slice(1).every((l) => l.url.startsWith(`/test/opt-tiny/resolve/${commit}/`))).toBe(true);
    const last = progress.filter((p) => p.file === "model.safetensors").at(-1)!;
    const size = fx("model.safetensors").length;
    // The one event shape of every download (src/http.ts): `done` is the web loader's old name for `loaded`.
    expect(last).toEqual({ file: "model.safetensors", loaded: size, total: size, cached: false, done: size });
    expect(progress.every((p, i) => i === 0 || p.file !== progress[i - 1].file || p.loaded >= progress[i - 1].loaded)).toBe(true);
    expect(openCheckpointDir(dir).tensors().length).toBe(36);
  });

  it("writes exactly huggingface_hub's layout: blobs by etag, relative symlinks, refs/main, .no_exist", async () => {
    await resolveModel("test/opt-tiny", opts());
    const c = commitOf("test/opt-tiny", "main");
    const [cfg, model, gen] = [gitSha1(fx("config.json")), sha256(fx("model.safetensors")), gitSha1(fx("generation_config.json"))];
    expect(tree(repoDir("test/opt-tiny"))).toEqual(
      [
        ".no_exist/",
        `.no_exist/${c}/`,
        ...["merges.txt", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"].map(
          (f) => `.no_exist/${c}/${f}`,
        ),
        "blobs/",
        `blobs/${cfg}`,
        `blobs/${gen}`,
        `blobs/${model}`,
        "refs/",
        "refs/main",
        "snapshots/",
        `snapshots/${c}/`,
        `snapshots/${c}/config.json -> ../../blobs/${cfg}`,
        `snapshots/${c}/generation_config.json -> ../../blobs/${gen}`,
        `snapshots/${c}/model.safetensors -> ../../blobs/${model}`,
      ].sort(),
    );
    expect(readFileSync(join(repoDir("test/opt-tiny"), "refs", "main"), "utf8")).toBe(c); // no newline, as Python writes it
    expect(readFileSync(join(repoDir("test/opt-tiny"), "blobs", model)).equals(fx("model.safetensors"))).toBe(true);
    expect(statSync(join(repoDir("test/opt-tiny"), ".no_exist", c, "vocab.json")).size).toBe(0);
    // The locks are gone once the downloads are done.
    expect(readdirSync(join(cache, ".locks", "models--test--opt-tiny"))).toEqual([]);
  });

  it("loads a cache written by huggingface_hub offline, with no request", async () => {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const dir = pythonCache("test/opt-tiny", commit, tiny);
    expect(await resolveModel("test/opt-tiny", opts({ offline: true }))).toBe(dir);
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    expect(await resolveModel("test/opt-tiny", opts())).toBe(dir);
    expect(await resolveModel("test/opt-tiny", opts({ revision: commit }))).toBe(dir);
    expect(log).toEqual([]);
    expect(openCheckpointDir(dir).tensors().length).toBe(36);
  });

  it("online, a model huggingface_hub already has costs HEAD requests only, and a commit none", async () => {
    const commit = commitOf("test/opt-tiny", "main");
    const dir = pythonCache("test/opt-tiny", commit, tiny);
    expect(await resolveModel("test/opt-tiny", opts())).toBe(dir);
    expect(log.filter((l) => l.method !== "HEAD")).toEqual([]);
    // The optional files it lacked are now known missing: the next call is the ref check alone.
    log = [];
    expect(await resolveModel("test/opt-tiny", opts())).toBe(dir);
    expect(log).toEqual([{ method: "HEAD", url: "/test/opt-tiny/resolve/main/config.json", host: "hub" }]);
    log = [];
    expect(await resolveModel("test/opt-tiny", opts({ revision: commit }))).toBe(dir);
    expect(log).toEqual([]);
  });

  it("uses a checkpoint the snapshot has rather than fetch the one the hub prefers", async () => {
    const files = { "config.json": fx("config.json"), "pytorch_model.bin": fx("pytorch_model.bin") };
    REPOS["test/both"] = { main: { ...files, "model.safetensors": fx("model.safetensors") } };
    try {
      const dir = pythonCache("test/both", commitOf("test/both", "main"), files);
      expect(await resolveModel("test/both", opts())).toBe(dir);
      expect(log.filter((l) => l.url.includes("model.safetensors"))).toEqual([]);
    } finally {
      delete REPOS["test/both"];
    }
  });

  it("a branch that moved: the ref is refreshed and only changed files are downloaded", async () => {
    const first = await resolveModel("test/opt-tiny", opts());
    const saved = REPOS["test/opt-tiny"].main;
    REPOS["test/opt-tiny"].main = { ...saved, "generation_config.json": Buffer.from('{"max_length": 7}') };
    try {
      log = [];
      const c2 = commitOf("test/opt-tiny", "main");
      const second = await resolveModel("test/opt-tiny", opts());
      expect(second).toBe(join(repoDir("test/opt-tiny"), "snapshots", c2));
      expect(second).not.toBe(first);
      expect(readFileSync(join(repoDir("test/opt-tiny"), "refs", "main"), "utf8")).toBe(c2);
      expect(readFileSync(join(second, "generation_config.json"), "utf8")).toBe('{"max_length": 7}');
      expect(log.filter((l) => l.method === "GET").map((l) => l.url)).toEqual([`/test/opt-tiny/resolve/${c2}/generation_config.json`]);
      // Unchanged files share their blob; the old snapshot is left as it was.
      expect(readlinkSync(join(second, "model.safetensors"))).toBe(readlinkSync(join(first, "model.safetensors")));
      expect(readFileSync(join(first, "generation_config.json")).equals(fx("generation_config.json"))).toBe(true);
      log = [];
      expect(await resolveModel("test/opt-tiny", opts({ offline: true }))).toBe(second);
      expect(log).toEqual([]);
    } finally {
      REPOS["test/opt-tiny"].main = saved;
    }
  });

  it("offline with no ref, or an incomplete snapshot, is one clear line", async () => {
    const where = `offline mode: model 'test/opt-tiny' (revision main) is not in the cache at ${repoDir("test/opt-tiny")}`;
    await expect(resolveModel("test/opt-tiny", opts({ offline: true }))).rejects.toThrow(`${where}: no refs/main`);
    const dir = await resolveModel("test/opt-tiny", opts());
    rmSync(join(dir, "model.safetensors"));
    log = [];
    const err = await resolveModel("test/opt-tiny", opts({ offline: true })).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.message).toBe(
      `${where}: snapshots/${commitOf("test/opt-tiny", "main")}: no weights ` +
        "(looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json)",
    );
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    await expect(resolveModel("test/opt-bin", opts())).rejects.toThrow(
      /offline mode: model 'test\/opt-bin' \(revision main\).*no refs\/main/,
    );
    vi.stubEnv("HF_HUB_OFFLINE", undefined);
    vi.stubEnv("TRANSFORMERS_OFFLINE", "1");
    await expect(resolveModel("test/opt-bin", opts())).rejects.toThrow(/offline mode/);
    expect(log).toEqual([]);
  });

  it("offline names a missing shard", async () => {
    const dir = await resolveModel("test/sharded", opts());
    expect(await resolveModel("test/sharded", opts({ offline: true }))).toBe(dir);
    rmSync(join(dir, "model-00002-of-00002.safetensors"));
    await expect(resolveModel("test/sharded", opts({ offline: true }))).rejects.toThrow(
      /shard model-00002-of-00002\.safetensors is missing/,
    );
  });

  it("falls back on the cache when the hub cannot be reached", async () => {
    const dir = await resolveModel("test/opt-tiny", opts());
    const [s, url] = await listen(() => {});
    await new Promise((r) => s.close(r)); // a port on 127.0.0.1 where nothing listens now
    expect(await resolveModel("test/opt-tiny", { ...opts({ retries: 0 }), endpoint: url })).toBe(dir);
  });

  it("fetches a given revision into its own snapshot, with its own ref", async () => {
    const dir = await resolveModel("test/opt-tiny", opts({ revision: "v1" }));
    const c1 = commitOf("test/opt-tiny", "v1");
    expect(dir).toBe(snapshotOf("test/opt-tiny", "v1"));
    expect(readFileSync(join(dir, "config.json"), "utf8")).toBe('{"rev":"v1"}');
    expect(readFileSync(join(repoDir("test/opt-tiny"), "refs", "v1"), "utf8")).toBe(c1);
    expect(existsSync(join(repoDir("test/opt-tiny"), "refs", "main"))).toBe(false);
    expect(log[0].url).toBe("/test/opt-tiny/resolve/v1/config.json");
    expect(log.slice(1).every((l) => l.url.startsWith(`/test/opt-tiny/resolve/${c1}/`))).toBe(true);
    await expect(resolveModel("test/opt-tiny", opts({ revision: "nope" }))).rejects.toThrow(
      `model 'test/opt-tiny' not found at ${HUB}/test/opt-tiny/resolve/nope/config.json`,
    );
    await expect(resolveModel("test/opt-tiny", opts({ revision: "../x" }))).rejects.toThrow(/invalid revision/);
  });

  it("a commit hash as revision: no ref file, and no request once complete", async () => {
    const c = commitOf("test/opt-tiny", "main");
    const dir = await resolveModel("test/opt-tiny", opts({ revision: c }));
    expect(dir).toBe(snapshotOf("test/opt-tiny"));
    expect(existsSync(join(repoDir("test/opt-tiny"), "refs"))).toBe(false);
    log = [];
    expect(await resolveModel("test/opt-tiny", opts({ revision: c }))).toBe(dir);
    expect(log).toEqual([]);
  });

  it("falls back to pytorch_model.bin, and downloads sharded checkpoints", async () => {
    const bin = await resolveModel("test/opt-bin", opts());
    expect(heads("model.safetensors").length).toBe(1); // 404, then the index, then the .bin
    expect(gets("model.safetensors")).toEqual([]);
    expect(heads("model.safetensors.index.json").length).toBe(1);
    expect(openCheckpointDir(bin).get("decoder.embed_tokens.weight")?.dtype).toBe("F16");

    const sharded = await resolveModel("test/sharded", opts());
    expect(readdirSync(sharded).sort()).toEqual([
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
    ]);
    expect(openCheckpointDir(sharded).tensors().length).toBe(36);

    await expect(resolveModel("test/no-weights", opts())).rejects.toThrow(/model 'test\/no-weights' has no weights/);
  });

  it("refuses an index whose shard names are paths", async () => {
    await expect(resolveModel("test/evil-index", opts())).rejects.toThrow(/not a plain file name/);
    expect(existsSync(join(cache, "escape.safetensors"))).toBe(false);
    expect(existsSync(join(repoDir("test/evil-index"), "escape.safetensors"))).toBe(false);
    expect(log.some((l) => l.url.includes("escape"))).toBe(false);
  });

  it("a mirror without X-Repo-Commit or ETag: snapshots/<revision>, blobs named by sha256", async () => {
    faults.plain = true;
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(dir).toBe(join(repoDir("test/opt-tiny"), "snapshots", "main"));
    expect(readlinkSync(join(dir, "model.safetensors"))).toBe(`../../blobs/${sha256(fx("model.safetensors"))}`);
    expect(existsSync(join(repoDir("test/opt-tiny"), "refs"))).toBe(false);
    log = [];
    expect(await resolveModel("test/opt-tiny", opts({ offline: true }))).toBe(dir);
  });
});

describe("resolveModel: downloads", () => {
  const blobs = () => join(repoDir("test/opt-tiny"), "blobs");
  const modelPart = () => join(blobs(), `${sha256(fx("model.safetensors"))}.incomplete`);

  it("resumes after the connection is cut midway", async () => {
    const size = fx("model.safetensors").length;
    faults.cut = { file: "model.safetensors", bytes: 200_000, times: 1 };
    const dir = await resolveModel("test/opt-tiny", opts());
    const reqs = gets("model.safetensors");
    expect(reqs.length).toBe(2);
    expect(reqs[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(reqs[1].range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(200_000);
    expect(statSync(join(dir, "model.safetensors")).size).toBe(size);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("keeps blobs/<sha256>.incomplete when a call fails, and the next call resumes it", async () => {
    faults.cut = { file: "model.safetensors", bytes: 100_000, times: 1 };
    const c = commitOf("test/opt-tiny", "main");
    await expect(resolveModel("test/opt-tiny", opts({ retries: 0 }))).rejects.toThrow(
      new RegExp(`connection lost downloading ${HUB}/test/opt-tiny/resolve/${c}/model.safetensors`),
    );
    expect(statSync(modelPart()).size).toBeGreaterThan(0);
    const dir = await resolveModel("test/opt-tiny", opts({ retries: 0 }));
    expect(gets("model.safetensors").at(-1)!.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
    expect(existsSync(modelPart())).toBe(false);
  });

  it("abort stops the download promptly and leaves a resumable .incomplete", async () => {
    faults.stall = { file: "model.safetensors", bytes: 150_000 };
    const ac = new AbortController();
    let abortedAt = 0;
    const call = resolveModel(
      "test/opt-tiny",
      opts({
        signal: ac.signal,
        onDownload: (p: DownloadProgress) => {
          if (p.file === "model.safetensors" && p.loaded >= 150_000 && !abortedAt) {
            abortedAt = Date.now();
            ac.abort();
          }
        },
      }),
    );
    const err = await call.catch((e) => e);
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(err).toBe(ac.signal.reason);
    expect((err as Error).name).toBe("AbortError");
    expect(statSync(modelPart()).size).toBe(150_000);
    expect(readdirSync(join(cache, ".locks", "models--test--opt-tiny"))).toEqual([]);

    faults = {};
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(gets("model.safetensors").at(-1)!.range).toBe("bytes=150000-");
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);

    // Aborted before it starts: no request at all.
    log = [];
    await expect(resolveModel("test/opt-bin", opts({ signal: AbortSignal.abort() }))).rejects.toThrow(/aborted/);
    expect(log).toEqual([]);
  });

  it("two concurrent calls download each blob once and both succeed", async () => {
    const [a, b] = await Promise.all([resolveModel("test/opt-tiny", opts()), resolveModel("test/opt-tiny", opts())]);
    expect(a).toBe(b);
    expect(gets("model.safetensors").length).toBe(1);
    expect(gets("config.json").length).toBe(1);
    expect(readFileSync(join(a, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("waits for a live lock holder, and takes over a lock left by a dead process", async () => {
    const locks = join(cache, ".locks", "models--test--opt-tiny");
    mkdirSync(locks, { recursive: true });
    const modelLock = join(locks, `${sha256(fx("model.safetensors"))}.wasm-lm.lock`);
    const configLock = join(locks, `${gitSha1(fx("config.json"))}.wasm-lm.lock`);
    writeFileSync(configLock, `99999999 ${hostname()}`); // no such process
    writeFileSync(modelLock, `${process.pid} ${hostname()}`); // alive: wait until it is released
    let released = false;
    setTimeout(() => {
      released = true;
      rmSync(modelLock);
    }, 300);
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(released).toBe(true);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
    expect(readdirSync(locks)).toEqual([]);
  });

  it("restarts from zero when the server ignores Range", async () => {
    faults.cut = { file: "model.safetensors", bytes: 100_000, times: 1 };
    faults.ignoreRange = true;
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(gets("model.safetensors").length).toBe(2);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("restarts when the partial file is already complete (416)", async () => {
    mkdirSync(blobs(), { recursive: true });
    writeFileSync(modelPart(), Buffer.concat([fx("model.safetensors"), Buffer.from("junk")]));
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("refuses a sha256 or size mismatch and leaves nothing in the cache", async () => {
    faults.badEtag = "model.safetensors";
    await expect(resolveModel("test/opt-tiny", opts())).rejects.toThrow(
      /model\.safetensors: downloaded file rejected \(sha256 does not match [0-9a-f]{64}\) from http:\/\/127\.0\.0\.1/,
    );
    const dir = snapshotOf("test/opt-tiny");
    const modelBlobs = () =>
      readdirSync(blobs()).filter((f) => f.startsWith(sha256("other")) || f.startsWith(sha256(fx("model.safetensors"))));
    expect(modelBlobs()).toEqual([]);
    expect(existsSync(join(dir, "model.safetensors"))).toBe(false);

    faults = { badSize: "model.safetensors" };
    await expect(resolveModel("test/opt-tiny", opts())).rejects.toThrow(
      /model\.safetensors: downloaded file rejected \(size \d+ bytes, expected \d+\)/,
    );
    expect(modelBlobs()).toEqual([]);
    // A healthy server later fills it in.
    faults = {};
    await resolveModel("test/opt-tiny", opts());
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("follows LFS redirects: verifies X-Linked-* and keeps the token on the hub", async () => {
    faults.lfsRedirect = true;
    faults.token = "tok";
    const dir = await resolveModel("test/opt-tiny", opts({ token: "tok" }));
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
    expect(readlinkSync(join(dir, "model.safetensors"))).toBe(`../../blobs/${sha256(fx("model.safetensors"))}`);
    const cdnReqs = log.filter((l) => l.host === "cdn");
    expect(cdnReqs.map((l) => l.method)).toEqual(["GET"]); // the HEAD stops at the hub's 302
    expect(cdnReqs[0].auth).toBeUndefined();
    expect(log.filter((l) => l.host === "hub").every((l) => l.auth === "Bearer tok")).toBe(true);

    // The sha256 stated on the redirect is checked against what the CDN sent.
    const other = mkdtempSync(join(tmpdir(), "wasm-lm-hub-"));
    faults.badEtag = "model.safetensors";
    await expect(resolveModel("test/opt-tiny", { ...opts({ token: "tok" }), cacheDir: other })).rejects.toThrow(/sha256 does not match/);
  });

  it("sends HF_TOKEN, and says when a repository needs one", async () => {
    await expect(resolveModel("test/private", opts())).rejects.toThrow(
      /model 'test\/private' not found at .*config\.json \(private or gated repositories need HF_TOKEN\)/,
    );
    vi.stubEnv("HF_TOKEN", "secret");
    const dir = await resolveModel("test/private", opts());
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
  });

  it("reports a model that does not exist with its URL", async () => {
    await expect(resolveModel("test/nope", opts())).rejects.toThrow(
      `model 'test/nope' not found at ${HUB}/test/nope/resolve/main/config.json`,
    );
    expect(existsSync(join(repoDir("test/nope"), "snapshots"))).toBe(false);
  });

  it("reports a network error with the URL", async () => {
    const [s, url] = await listen(() => {});
    await new Promise((r) => s.close(r)); // a port on 127.0.0.1 where nothing listens now
    const err = await resolveModel("test/opt-tiny", { ...opts({ retries: 0 }), endpoint: url }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.message).toMatch(new RegExp(`network error fetching ${url}/test/opt-tiny/resolve/main/config.json`));
  });

  it("validates model ids before touching the network", async () => {
    for (const id of [
      "",
      "opt",
      "a/b/c",
      "../x",
      "a/..",
      "..a/b",
      "a/b..c",
      "a b/c",
      "a/b\n",
      "/a",
      "a/",
      "./b",
      "a/.",
      "a/b?x=1",
      "a/b#c",
      "a/%2e%2e",
      "ä/b",
    ]) {
      expect(() => parseModelId(id), JSON.stringify(id)).toThrow(HubError);
      await expect(resolveModel(id, opts())).rejects.toThrow(/invalid model id/);
    }
    expect(parseModelId("facebook/opt-125m")).toEqual({ owner: "facebook", name: "opt-125m" });
    expect(parseModelId("A_b.c/x-Y.z_1")).toEqual({ owner: "A_b.c", name: "x-Y.z_1" });
    expect(log).toEqual([]);
  });
});

describe("the cache root and the old wasm-lm cache", () => {
  it("finds the root as huggingface_hub does: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~/.cache", () => {
    vi.stubEnv("HOME", "/home/u");
    expect(hubCacheRoot()).toBe("/home/u/.cache/huggingface/hub");
    vi.stubEnv("XDG_CACHE_HOME", "/xdg");
    expect(hubCacheRoot()).toBe("/xdg/huggingface/hub");
    vi.stubEnv("HF_HOME", "~/hf");
    expect(hubCacheRoot()).toBe("/home/u/hf/hub");
    vi.stubEnv("HUGGINGFACE_HUB_CACHE", "/old-name");
    expect(hubCacheRoot()).toBe("/old-name");
    vi.stubEnv("HF_HUB_CACHE", "/hub-cache");
    expect(hubCacheRoot()).toBe("/hub-cache");
    expect(hubCacheRoot("/given")).toBe("/given");
    expect(modelCacheDir("facebook/opt-125m")).toBe("/hub-cache/models--facebook--opt-125m");
  });

  it("takes the endpoint and the cache from HF_ENDPOINT and HF_HUB_CACHE", async () => {
    vi.stubEnv("HF_ENDPOINT", HUB + "/");
    vi.stubEnv("HF_HUB_CACHE", cache);
    expect(await resolveModel("test/opt-tiny")).toBe(snapshotOf("test/opt-tiny"));
  });

  /** The old layout: <WASM_LM_CACHE>/<owner>--<name>/<revision>/ with the files and a manifest. */
  function oldCache(files: Record<string, Buffer>): string {
    const dir = join(legacy, "test--opt-tiny", "main");
    mkdirSync(dir, { recursive: true });
    for (const [f, b] of Object.entries(files)) writeFileSync(join(dir, f), b);
    writeFileSync(
      join(dir, ".wasm-lm-complete.json"),
      JSON.stringify({ id: "test/opt-tiny", revision: "main", files: Object.keys(files) }),
    );
    return dir;
  }

  it("offline, a model in the old layout still loads, with no request", async () => {
    const dir = oldCache(tiny);
    expect(await resolveModel("test/opt-tiny", opts({ offline: true }))).toBe(dir);
    expect(log).toEqual([]);
    expect(openCheckpointDir(dir).tensors().length).toBe(36);
  });

  it("online, files of the old layout that hash to the hub's ETag are adopted instead of downloaded", async () => {
    const old = oldCache({ ...tiny, "generation_config.json": Buffer.from("{}") }); // stale: not adopted
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(dir).toBe(snapshotOf("test/opt-tiny"));
    expect(log.filter((l) => l.method === "GET").map((l) => l.url.split("/").pop())).toEqual(["generation_config.json"]);
    for (const f of ["config.json", "model.safetensors", "generation_config.json"]) {
      expect(readFileSync(join(dir, f)).equals(fx(f)), f).toBe(true);
      expect(lstatSync(join(dir, f)).isSymbolicLink()).toBe(true);
    }
    // A hard link where the file system allows: no second copy of the weights.
    expect(statSync(join(dir, "model.safetensors")).ino).toBe(statSync(join(old, "model.safetensors")).ino);
    expect(readFileSync(join(old, "generation_config.json"), "utf8")).toBe("{}"); // the old cache is not changed
  });
});

describe("the CLI on a hub id", () => {
  it("downloads through HF_ENDPOINT into HF_HUB_CACHE and generates transformers' tokens", async () => {
    const { execFile } = await import("node:child_process");
    const cli = new URL("../dist/cli.js", import.meta.url).pathname;
    const ref = JSON.parse(fx("reference.json").toString("utf8"));
    // Async: the fake hub runs in this process and must keep answering.
    const run = () =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          [cli, "generate", "--model", "test/opt-tiny", "--ids", ref.input_ids.join(","), "-n", "8", "--ignore-eos", "--json"],
          { env: { ...process.env, HF_ENDPOINT: HUB, HF_HUB_CACHE: cache, WASM_LM_CACHE: legacy, HF_HUB_OFFLINE: "" } },
          (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
        );
      });
    const r = await run();
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
    expect(existsSync(join(snapshotOf("test/opt-tiny"), "model.safetensors"))).toBe(true);
    log = [];
    expect((await run()).code).toBe(0);
    expect(log.map((l) => `${l.method} ${l.url}`)).toEqual(["HEAD /test/opt-tiny/resolve/main/config.json"]); // the ref check only
  });
});
