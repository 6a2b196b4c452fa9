// The hub download against a local stand-in for huggingface.co on 127.0.0.1 (and nothing else).
import { describe, it, expect, beforeAll, afterAll, beforeEach, vi } from "vitest";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HubError, modelCacheDir, parseModelId, resolveModel, type DownloadProgress } from "../src/formats/hub.js";
import { openCheckpointDir } from "../src/formats/node.js";
import { shardedRepo } from "./builders.js";

const FIX = join(import.meta.dirname, "fixtures", "opt-tiny");
const fx = (f: string) => readFileSync(join(FIX, f));
const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** repo → revision → file → bytes */
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

interface Logged { url: string; range?: string; auth?: string; host?: string }

/** What the server does wrong on purpose, per test. */
interface Faults {
  /** Destroy the socket after this many body bytes, for the first `times` requests of `file`. */
  cut?: { file: string; bytes: number; times: number };
  /** Answer ranged requests with the whole file (200). */
  ignoreRange?: boolean;
  /** ETag / X-Linked-Size that do not match the file. */
  badEtag?: string;
  badSize?: string;
  /** Redirect weight files to the "CDN" server, with X-Linked-* headers on the redirect. */
  lfsRedirect?: boolean;
  /** Require this bearer token on the hub (not on the CDN). */
  token?: string;
}

let hub: Server;
let cdn: Server;
let HUB = "";
let CDN = "";
let log: Logged[] = [];
let faults: Faults = {};

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<[Server, string]> {
  const s = createServer(handler);
  return new Promise((resolve) => s.listen(0, "127.0.0.1", () => {
    resolve([s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`]);
  }));
}

/** Sends `body` honouring `Range: bytes=N-`, with ETag = sha256 like the hub's LFS files. */
function sendFile(req: IncomingMessage, res: ServerResponse, file: string, body: Buffer, etag?: string): void {
  const headers: Record<string, string> = {
    etag: etag ?? `"${faults.badEtag === file ? sha256("other") : sha256(body)}"`,
    "accept-ranges": "bytes",
  };
  if (faults.badSize === file) headers["x-linked-size"] = String(body.length + 1);
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
  const cut = faults.cut;
  if (cut && cut.file === file && cut.times > 0) {
    cut.times--;
    res.write(body.subarray(start, start + cut.bytes), () => res.destroy());
    return;
  }
  res.end(body.subarray(start));
}

beforeAll(async () => {
  [hub, HUB] = await listen((req, res) => {
    log.push({ url: req.url!, range: req.headers.range, auth: req.headers.authorization, host: "hub" });
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(req.url!);
    if (!m) return void res.writeHead(404).end("no route");
    const [, repo, rev, file] = m.map(decodeURIComponent);
    const body = REPOS[repo]?.[rev]?.[file];
    const wantToken = repo === "test/private" ? "secret" : faults.token;
    if (wantToken && req.headers.authorization !== `Bearer ${wantToken}`) {
      return void res.writeHead(401, { "x-error-code": "RepositoryNotFound" }).end();
    }
    if (!body) return void res.writeHead(404, { "x-error-code": "EntryNotFound" }).end();
    if (faults.lfsRedirect && /\.(safetensors|bin)$/.test(file)) {
      res.writeHead(302, {
        location: `${CDN}/lfs/${encodeURIComponent(repo)}/${rev}/${file}`,
        "x-linked-size": faults.badSize === file ? String(body.length + 1) : String(body.length),
        "x-linked-etag": `"${faults.badEtag === file ? sha256("other") : sha256(body)}"`,
      }).end();
      return;
    }
    sendFile(req, res, file, body);
  });
  [cdn, CDN] = await listen((req, res) => {
    log.push({ url: req.url!, range: req.headers.range, auth: req.headers.authorization, host: "cdn" });
    const m = /^\/lfs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(req.url!);
    const body = m && REPOS[decodeURIComponent(m[1])]?.[m[2]]?.[m[3]];
    if (!body) return void res.writeHead(404).end();
    // The CDN's own ETag is not the sha256 (as with real object stores): only the hub's
    // X-Linked-ETag on the redirect can be checked.
    sendFile(req, res, m![3], body, `"${createHash("md5").update(body).digest("hex")}"`);
  });
});

afterAll(() => {
  for (const s of [hub, cdn]) {
    s.closeAllConnections();
    s.close();
  }
});

let cache = "";
beforeEach(() => {
  log = [];
  faults = {};
  cache = mkdtempSync(join(tmpdir(), "wasm-lm-hub-"));
  // The tests say everything explicitly; keep the caller's environment out of them.
  for (const k of ["HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "WASM_LM_CACHE"]) {
    vi.stubEnv(k, undefined);
  }
  return () => vi.unstubAllEnvs();
});

const opts = (extra: object = {}) => ({ endpoint: HUB, cacheDir: cache, ...extra });
const requests = (file: string) => log.filter((l) => l.url.endsWith(`/${file}`));

describe("resolveModel", () => {
  it("downloads config, weights and the optional files that exist into the cache layout", async () => {
    const progress: DownloadProgress[] = [];
    const dir = await resolveModel("test/opt-tiny", opts({ onDownload: (p: DownloadProgress) => progress.push(p) }));
    expect(dir).toBe(join(cache, "test--opt-tiny", "main"));
    for (const f of ["config.json", "model.safetensors", "generation_config.json"]) {
      expect(readFileSync(join(dir, f)).equals(fx(f)), f).toBe(true);
    }
    expect(existsSync(join(dir, "vocab.json"))).toBe(false); // 404 for an optional file is fine
    expect(readdirSync(dir).filter((f) => f.endsWith(".incomplete"))).toEqual([]);
    // model.safetensors was found first, so no other weight file was asked for
    expect(requests("pytorch_model.bin")).toEqual([]);
    expect(log.every((l) => l.url.startsWith("/test/opt-tiny/resolve/main/"))).toBe(true);
    const last = progress.filter((p) => p.file === "model.safetensors").at(-1)!;
    expect(last).toEqual({ file: "model.safetensors", loaded: fx("model.safetensors").length, total: fx("model.safetensors").length });
    expect(openCheckpointDir(dir).tensors().length).toBe(36);
  });

  it("makes no request the second time", async () => {
    await resolveModel("test/opt-tiny", opts());
    log = [];
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(log).toEqual([]);
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
  });

  it("takes the endpoint and cache from HF_ENDPOINT and WASM_LM_CACHE", async () => {
    vi.stubEnv("HF_ENDPOINT", HUB + "/");
    vi.stubEnv("WASM_LM_CACHE", cache);
    const dir = await resolveModel("test/opt-tiny");
    expect(dir).toBe(join(cache, "test--opt-tiny", "main"));
    expect(modelCacheDir("test/opt-tiny", { revision: "v1" })).toBe(join(cache, "test--opt-tiny", "v1"));
  });

  it("offline mode uses only the cache", async () => {
    await expect(resolveModel("test/opt-tiny", opts({ offline: true }))).rejects.toThrow(
      /offline mode: model 'test\/opt-tiny' .*not in the cache.*config\.json is missing/);
    await resolveModel("test/opt-tiny", opts());
    log = [];
    expect(await resolveModel("test/opt-tiny", opts({ offline: true }))).toBe(join(cache, "test--opt-tiny", "main"));
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    await expect(resolveModel("test/opt-bin", opts())).rejects.toThrow(/offline mode.*test\/opt-bin/);
    expect(log).toEqual([]);
  });

  it("offline mode without a manifest accepts a complete directory, and names a missing shard", async () => {
    await resolveModel("test/sharded", opts());
    const dir = join(cache, "test--sharded", "main");
    rmSync(join(dir, ".wasm-lm-complete.json"));
    expect(await resolveModel("test/sharded", opts({ offline: true }))).toBe(dir);
    rmSync(join(dir, "model-00002-of-00002.safetensors"));
    await expect(resolveModel("test/sharded", opts({ offline: true }))).rejects.toThrow(/shard model-00002-of-00002\.safetensors is missing/);
    expect(log.length).toBeGreaterThan(0);
  });

  it("fetches a given revision into its own directory", async () => {
    const dir = await resolveModel("test/opt-tiny", opts({ revision: "v1" }));
    expect(dir).toBe(join(cache, "test--opt-tiny", "v1"));
    expect(readFileSync(join(dir, "config.json"), "utf8")).toBe('{"rev":"v1"}');
    expect(log.every((l) => l.url.startsWith("/test/opt-tiny/resolve/v1/"))).toBe(true);
    await expect(resolveModel("test/opt-tiny", opts({ revision: "nope" }))).rejects.toThrow(
      `model 'test/opt-tiny' not found at ${HUB}/test/opt-tiny/resolve/nope/config.json`);
    await expect(resolveModel("test/opt-tiny", opts({ revision: "../x" }))).rejects.toThrow(/invalid revision/);
  });

  it("falls back to pytorch_model.bin, and downloads sharded checkpoints", async () => {
    const bin = await resolveModel("test/opt-bin", opts());
    expect(requests("model.safetensors").length).toBe(1); // 404, then the index, then the .bin
    expect(requests("model.safetensors.index.json").length).toBe(1);
    expect(openCheckpointDir(bin).get("decoder.embed_tokens.weight")?.dtype).toBe("F16");

    const sharded = await resolveModel("test/sharded", opts());
    expect(readdirSync(sharded).sort()).toEqual([".wasm-lm-complete.json", "config.json",
      "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]);
    expect(openCheckpointDir(sharded).tensors().length).toBe(36);

    await expect(resolveModel("test/no-weights", opts())).rejects.toThrow(/model 'test\/no-weights' has no weights/);
  });

  it("refuses an index whose shard names are paths", async () => {
    await expect(resolveModel("test/evil-index", opts())).rejects.toThrow(/not a plain file name/);
    expect(existsSync(join(cache, "escape.safetensors"))).toBe(false);
    expect(log.some((l) => l.url.includes("escape"))).toBe(false);
  });

  it("resumes after the connection is cut midway", async () => {
    const size = fx("model.safetensors").length;
    faults.cut = { file: "model.safetensors", bytes: 200_000, times: 1 };
    const dir = await resolveModel("test/opt-tiny", opts());
    const reqs = requests("model.safetensors");
    expect(reqs.length).toBe(2);
    expect(reqs[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(reqs[1].range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(200_000);
    expect(statSync(join(dir, "model.safetensors")).size).toBe(size);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("keeps the partial file when a call fails, and the next call resumes it", async () => {
    faults.cut = { file: "model.safetensors", bytes: 100_000, times: 1 };
    await expect(resolveModel("test/opt-tiny", opts({ retries: 0 }))).rejects.toThrow(
      new RegExp(`connection lost downloading ${HUB}/test/opt-tiny/resolve/main/model.safetensors`));
    const part = join(cache, "test--opt-tiny", "main", "model.safetensors.incomplete");
    expect(statSync(part).size).toBeGreaterThan(0);
    const dir = await resolveModel("test/opt-tiny", opts({ retries: 0 }));
    expect(requests("model.safetensors").at(-1)!.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
    expect(existsSync(part)).toBe(false);
  });

  it("restarts from zero when the server ignores Range", async () => {
    faults.cut = { file: "model.safetensors", bytes: 100_000, times: 1 };
    faults.ignoreRange = true;
    const dir = await resolveModel("test/opt-tiny", opts());
    expect(requests("model.safetensors").length).toBe(2);
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("restarts when the partial file is already complete (416)", async () => {
    const dir = join(cache, "test--opt-tiny", "main");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "model.safetensors.incomplete"), Buffer.concat([fx("model.safetensors"), Buffer.from("junk")]));
    await resolveModel("test/opt-tiny", opts());
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("refuses a sha256 or size mismatch and leaves nothing in the cache", async () => {
    faults.badEtag = "model.safetensors";
    await expect(resolveModel("test/opt-tiny", opts())).rejects.toThrow(
      /model\.safetensors: downloaded file rejected \(sha256 does not match [0-9a-f]{64}\) from http:\/\/127\.0\.0\.1/);
    const dir = join(cache, "test--opt-tiny", "main");
    expect(readdirSync(dir).filter((f) => f.startsWith("model.safetensors"))).toEqual([]);

    faults = { badSize: "model.safetensors" };
    await expect(resolveModel("test/opt-tiny", opts())).rejects.toThrow(/model\.safetensors: downloaded file rejected \(size \d+ bytes, expected \d+\)/);
    expect(readdirSync(dir).filter((f) => f.startsWith("model.safetensors"))).toEqual([]);
    // The model is not marked complete: a healthy server later fills it in.
    faults = {};
    await resolveModel("test/opt-tiny", opts());
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
  });

  it("follows LFS redirects: verifies X-Linked-* and keeps the token on the hub", async () => {
    faults.lfsRedirect = true;
    faults.token = "tok";
    const dir = await resolveModel("test/opt-tiny", opts({ token: "tok" }));
    expect(readFileSync(join(dir, "model.safetensors")).equals(fx("model.safetensors"))).toBe(true);
    const cdnReqs = log.filter((l) => l.host === "cdn");
    expect(cdnReqs.length).toBe(1);
    expect(cdnReqs[0].auth).toBeUndefined();
    expect(log.filter((l) => l.host === "hub").every((l) => l.auth === "Bearer tok")).toBe(true);

    // The sha256 stated on the redirect is checked against what the CDN sent.
    const other = mkdtempSync(join(tmpdir(), "wasm-lm-hub-"));
    faults.badEtag = "model.safetensors";
    await expect(resolveModel("test/opt-tiny", { ...opts({ token: "tok" }), cacheDir: other })).rejects.toThrow(/sha256 does not match/);
  });

  it("sends HF_TOKEN, and says when a repository needs one", async () => {
    await expect(resolveModel("test/private", opts())).rejects.toThrow(/model 'test\/private' not found at .*config\.json \(private or gated repositories need HF_TOKEN\)/);
    vi.stubEnv("HF_TOKEN", "secret");
    const dir = await resolveModel("test/private", opts());
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
  });

  it("reports a model that does not exist with its URL", async () => {
    await expect(resolveModel("test/nope", opts())).rejects.toThrow(
      `model 'test/nope' not found at ${HUB}/test/nope/resolve/main/config.json`);
    expect(existsSync(join(cache, "test--nope", "main", "config.json"))).toBe(false);
  });

  it("reports a network error with the URL", async () => {
    const [s, url] = await listen(() => {});
    await new Promise((r) => s.close(r)); // a port on 127.0.0.1 where nothing listens now
    const err = await resolveModel("test/opt-tiny", { ...opts({ retries: 0 }), endpoint: url }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.message).toMatch(new RegExp(`network error fetching ${url}/test/opt-tiny/resolve/main/config.json`));
  });

  it("validates model ids before touching the network", async () => {
    for (const id of ["", "opt", "a/b/c", "../x", "a/..", "..a/b", "a/b..c", "a b/c", "a/b\n", "/a", "a/", "./b", "a/.",
      "a/b?x=1", "a/b#c", "a/%2e%2e", "ä/b"]) {
      expect(() => parseModelId(id), JSON.stringify(id)).toThrow(HubError);
      await expect(resolveModel(id, opts())).rejects.toThrow(/invalid model id/);
    }
    expect(parseModelId("facebook/opt-125m")).toEqual({ owner: "facebook", name: "opt-125m" });
    expect(parseModelId("A_b.c/x-Y.z_1")).toEqual({ owner: "A_b.c", name: "x-Y.z_1" });
    expect(log).toEqual([]);
  });
});

describe("the CLI on a hub id", () => {
  it("downloads through HF_ENDPOINT into WASM_LM_CACHE and generates transformers' tokens", async () => {
    const { execFile } = await import("node:child_process");
    const cli = new URL("../dist/cli.js", import.meta.url).pathname;
    const ref = JSON.parse(fx("reference.json").toString("utf8"));
    // Async: the fake hub runs in this process and must keep answering.
    const run = () => new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(process.execPath, [cli, "generate", "--model", "test/opt-tiny", "--ids", ref.input_ids.join(","), "-n", "8", "--ignore-eos", "--json"],
        { env: { ...process.env, HF_ENDPOINT: HUB, WASM_LM_CACHE: cache, HF_HUB_OFFLINE: "" } },
        (e, out, err) => resolve({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err }));
    });
    const r = await run();
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
    expect(existsSync(join(cache, "test--opt-tiny", "main", "model.safetensors"))).toBe(true);
    log = [];
    expect((await run()).code).toBe(0);
    expect(log).toEqual([]); // the second run used the cache
  });
});
