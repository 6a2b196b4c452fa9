// The fetch-based loader (src/web.ts) against a local stand-in for huggingface.co on 127.0.0.1:
// hub ids and URLs, the Cache API (an in-memory Cache given through the `cache` option: Node has
// no `caches`), progress, errors, picked files, and the loaded model's logits against transformers'.
import { describe, it, expect, beforeAll, afterAll, beforeEach } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { HubError } from "../src/formats/hubids.js";
import { isAsyncSource, openSafetensors } from "../src/formats/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import {
  loadModelFromUrl,
  openModelFiles,
  pickedFiles,
  resolveModelUrl,
  urlFiles,
  type FetchProgress,
  type ModelCache,
} from "../src/web.js";
import { generate } from "../src/generate/index.js";
import { FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";
import { shardedRepo } from "./builders.js";

const ref = reference();
const fx = (f: string) => readFileSync(join(FIXTURE_DIR, f));
const tok = (f: string) => readFileSync(join(import.meta.dirname, "..", "tokenizers", "opt", f));
const LOGIT_TOL = 1e-4;

const tiny = { "config.json": fx("config.json"), "model.safetensors": fx("model.safetensors") };
/** The tiny LLaMA and GPT-2 fixtures (transformers' outputs in their reference.json). */
const family = (name: string) => {
  const f = (file: string) => readFileSync(join(import.meta.dirname, "fixtures", name, file));
  return {
    files: { "config.json": f("config.json"), "model.safetensors": f("model.safetensors") },
    ref: JSON.parse(f("reference.json").toString()),
  };
};
const FAMILY_REPOS = { "test/llama-tiny": family("llama-tiny"), "test/gpt2-tiny": family("gpt2-tiny") };
/** repo → revision → file → bytes */
const REPOS: Record<string, Record<string, Record<string, Buffer>>> = {
  "test/opt-tiny": { main: tiny, v1: tiny },
  "test/with-tokenizer": { main: { ...tiny, "vocab.json": tok("vocab.json"), "merges.txt": tok("merges.txt") } },
  "test/opt-bin": { main: { "config.json": fx("config.json"), "pytorch_model.bin": fx("pytorch_model.bin") } },
  "test/sharded": { main: shardedRepo() },
  "test/bad-config": {
    main: { ...tiny, "config.json": Buffer.from(JSON.stringify({ ...JSON.parse(fx("config.json").toString()), model_type: "mamba" })) },
  },
  "test/no-config": { main: { "model.safetensors": fx("model.safetensors") } },
  "test/no-weights": { main: { "config.json": fx("config.json") } },
  "test/private": { main: tiny },
  "test/gated": { main: tiny },
  "test/broken": { main: tiny },
  ...Object.fromEntries(Object.entries(FAMILY_REPOS).map(([repo, f]) => [repo, { main: f.files }])),
};

interface Logged {
  url: string;
  auth?: string;
}

/** What the server does wrong on purpose, per test. */
interface Faults {
  /** Send Content-Length of the whole file, then this many bytes of `file`, then close the socket. */
  cut?: { file: string; bytes: number };
  /** Send the file in pieces of this many bytes, a few ms apart (progress events). */
  slow?: number;
  /** Answer the first `times` requests for `file` with 503 and Retry-After: 0. */
  busy?: { file: string; times: number };
}

let server: Server;
let HUB = "";
let log: Logged[] = [];
let faults: Faults = {};

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    log.push({ url: req.url!, auth: req.headers.authorization });
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(req.url!);
    if (!m) return void res.writeHead(404).end("no route");
    const [, repo, rev, file] = m.map(decodeURIComponent);
    if (repo === "test/private" && req.headers.authorization !== "Bearer secret") return void res.writeHead(401).end();
    if (repo === "test/gated") return void res.writeHead(403).end();
    if (repo === "test/broken" && file === "model.safetensors") return void res.writeHead(500).end();
    if (faults.busy?.file === file && faults.busy.times-- > 0) return void res.writeHead(503, { "retry-after": "0" }).end();
    const body = REPOS[repo]?.[rev]?.[file];
    if (!body) return void res.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (range) {
      const a = Number(range[1]),
        b = Math.min(Number(range[2]), body.length - 1);
      res.writeHead(206, { "content-length": String(b - a + 1), "content-range": `bytes ${a}-${b}/${body.length}` });
      return void res.end(body.subarray(a, b + 1));
    }
    res.writeHead(200, { "content-length": String(body.length), "content-type": "application/octet-stream" });
    if (faults.cut?.file === file) {
      res.write(body.subarray(0, faults.cut.bytes), () => res.destroy());
      return;
    }
    if (faults.slow) {
      const step = faults.slow;
      let at = 0;
      const next = () => {
        if (at >= body.length) return void res.end();
        res.write(body.subarray(at, at + step));
        at += step;
        setTimeout(next, 30);
      };
      return next();
    }
    res.end(body);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
  HUB = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  log = [];
  faults = {};
});

/** An in-memory Cache API cache (what `caches.open()` gives in a browser). */
class MemoryCache implements ModelCache {
  readonly entries = new Map<string, { body: Uint8Array; headers: [string, string][] }>();
  protected key(r: RequestInfo | URL): string {
    return typeof r === "string" ? r : r instanceof URL ? r.href : r.url;
  }
  async match(r: RequestInfo | URL): Promise<Response | undefined> {
    const e = this.entries.get(this.key(r));
    return e ? new Response(e.body as Uint8Array<ArrayBuffer>, { headers: e.headers }) : undefined;
  }
  async put(r: RequestInfo | URL, res: Response): Promise<void> {
    this.entries.set(this.key(r), { body: new Uint8Array(await res.arrayBuffer()), headers: [...res.headers] });
  }
  async delete(r: RequestInfo | URL): Promise<boolean> {
    return this.entries.delete(this.key(r));
  }
}

const requested = (file: string) => log.filter((l) => l.url.endsWith(`/${file}`));
const WEIGHTS = /\.(safetensors|bin)$/;

async function logitsDiff(model: Awaited<ReturnType<typeof loadModelFromUrl>>["model"]): Promise<number> {
  const r = model.forward([ref.input_ids]);
  return maxAbsDiff(r.logits, ref.logits.flat()).max;
}

describe("loadModelFromUrl", () => {
  it("loads a hub id: transformers' logits, progress per file ending at its size, then the cache serves the second load", async () => {
    const cache = new MemoryCache();
    const events: FetchProgress[] = [];
    const a = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache, threads: 1, onDownload: (p) => events.push(p) });
    try {
      expect(await logitsDiff(a.model)).toBeLessThanOrEqual(LOGIT_TOL);
      expect(a.tokenizer).toBeNull(); // the repository has no tokenizer files
      expect(a.config.num_hidden_layers).toBe(ref.config.num_hidden_layers);
    } finally {
      a.model.dispose();
    }
    // config.json before any weight file
    expect(log.findIndex((l) => l.url.endsWith("/config.json"))).toBe(0);
    expect(log.every((l) => l.url.startsWith("/test/opt-tiny/resolve/main/"))).toBe(true);
    for (const file of ["config.json", "model.safetensors"]) {
      const mine = events.filter((e) => e.file === file);
      expect(mine.length, file).toBeGreaterThan(0);
      expect(mine.at(-1), file).toEqual({ file, loaded: fx(file).length, total: fx(file).length, cached: false, done: fx(file).length });
      expect(mine.every((e, i) => e.done === e.loaded && (i === 0 || e.loaded >= mine[i - 1].loaded))).toBe(true);
    }
    expect([...cache.entries.keys()].sort()).toEqual([
      `${HUB}/test/opt-tiny/resolve/main/config.json`,
      `${HUB}/test/opt-tiny/resolve/main/model.safetensors`,
    ]);

    log = [];
    events.length = 0;
    const b = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache, threads: 1, onDownload: (p) => events.push(p) });
    try {
      expect(await logitsDiff(b.model)).toBeLessThanOrEqual(LOGIT_TOL);
    } finally {
      b.model.dispose();
    }
    expect(log.filter((l) => WEIGHTS.test(l.url) || l.url.endsWith("/config.json"))).toEqual([]);
    const last = events.filter((e) => e.file === "model.safetensors").at(-1);
    const size = fx("model.safetensors").length;
    expect(last).toEqual({ file: "model.safetensors", loaded: size, total: size, cached: true, done: size });
  });

  it("keys the cache by revision: another revision is downloaded", async () => {
    const cache = new MemoryCache();
    const a = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache, threads: 1 });
    a.model.dispose();
    log = [];
    const b = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache, threads: 1, revision: "v1" });
    b.model.dispose();
    expect(requested("model.safetensors").map((l) => l.url)).toEqual(["/test/opt-tiny/resolve/v1/model.safetensors"]);
    expect(cache.entries.has(`${HUB}/test/opt-tiny/resolve/v1/model.safetensors`)).toBe(true);
  });

  it("reports progress while a large body arrives", async () => {
    faults.slow = 32768;
    const events: FetchProgress[] = [];
    const files = urlFiles("test/opt-tiny", { endpoint: HUB, cache: false, onDownload: (p) => events.push(p) });
    const bytes = await files("model.safetensors");
    const size = fx("model.safetensors").length;
    expect(bytes?.length).toBe(size);
    // ~30 ms per piece, events at most every 100 ms: several, but far fewer than the pieces
    expect(events.length).toBeGreaterThan(2);
    expect(events.length).toBeLessThan(Math.ceil(size / 32768));
    expect(events.slice(0, -1).every((e) => e.total === size && e.loaded <= size && !e.cached)).toBe(true);
    expect(events.at(-1)).toEqual({ file: "model.safetensors", loaded: size, total: size, cached: false, done: size });
  });

  it("reads a URL in the hub layout, sharded safetensors and pytorch_model.bin", async () => {
    for (const repo of ["test/sharded", "test/opt-bin"]) {
      const r = await loadModelFromUrl(`${HUB}/${repo}/resolve/main`, { cache: false, threads: 1 });
      try {
        expect(await logitsDiff(r.model), repo).toBeLessThanOrEqual(LOGIT_TOL);
      } finally {
        r.model.dispose();
      }
    }
    expect(requested("model-00002-of-00002.safetensors")).toHaveLength(1);
    expect(requested("pytorch_model.bin")).toHaveLength(1);
  });

  it("returns the directory's tokenizer when it has one", async () => {
    const { tokenizer } = await openModelFiles(urlFiles("test/with-tokenizer", { endpoint: HUB }), "with-tokenizer");
    expect(tokenizer?.encode("Hello world!")).toEqual([2, 31414, 232, 328]);
  });

  it("refuses a bad config.json before any weight file is requested", async () => {
    await expect(loadModelFromUrl("test/bad-config", { endpoint: HUB, cache: false })).rejects.toThrow(
      `${HUB}/test/bad-config/resolve/main/config.json: model_type 'mamba' is not supported`,
    );
    expect(log.filter((l) => WEIGHTS.test(l.url))).toEqual([]);
  });

  it("sends the token to the hub, and says a private or gated model needs one", async () => {
    const url = `${HUB}/test/private/resolve/main/config.json`;
    await expect(loadModelFromUrl("test/private", { endpoint: HUB, cache: false })).rejects.toThrow(
      new RegExp(`^wasm-lm: access denied to ${url} \\(HTTP 401 Unauthorized\\): a private or gated model needs a token`),
    );
    await expect(loadModelFromUrl("test/gated", { endpoint: HUB, cache: false })).rejects.toThrow(
      /access denied to .*\/test\/gated\/.*config\.json \(HTTP 403 Forbidden\).*token/,
    );
    log = [];
    const r = await loadModelFromUrl("test/private", { endpoint: HUB, cache: false, token: "secret", threads: 1 });
    r.model.dispose();
    expect(log.length).toBeGreaterThan(0);
    expect(log.every((l) => l.auth === "Bearer secret")).toBe(true);
  });

  it("never sends the token to a plain URL", async () => {
    await expect(loadModelFromUrl(`${HUB}/test/private/resolve/main/`, { cache: false, token: "secret" })).rejects.toThrow(/access denied/);
    expect(log.every((l) => l.auth === undefined)).toBe(true);
  });

  it("names the URL when config.json is missing, a status is unexpected, or there are no weights", async () => {
    await expect(loadModelFromUrl("test/no-config", { endpoint: HUB, cache: false })).rejects.toThrow(
      `wasm-lm: ${HUB}/test/no-config/resolve/main/config.json not found`,
    );
    expect(log.filter((l) => WEIGHTS.test(l.url))).toEqual([]);
    await expect(loadModelFromUrl("test/broken", { endpoint: HUB, cache: false })).rejects.toThrow(
      `wasm-lm: HTTP 500 Internal Server Error fetching ${HUB}/test/broken/resolve/main/model.safetensors`,
    );
    await expect(loadModelFromUrl("test/no-weights", { endpoint: HUB, cache: false })).rejects.toThrow(
      /test\/no-weights\/resolve\/main: no checkpoint found/,
    );
  });

  it("tries a 503 again (src/http.ts's policy), `retries` times", async () => {
    faults.busy = { file: "config.json", times: 2 };
    const bytes = await urlFiles("test/opt-tiny", { endpoint: HUB, cache: false })("config.json");
    expect(Buffer.from(bytes!).equals(fx("config.json"))).toBe(true);
    expect(requested("config.json")).toHaveLength(3);
    faults.busy = { file: "config.json", times: 1 };
    await expect(urlFiles("test/opt-tiny", { endpoint: HUB, cache: false, retries: 0 })("config.json")).rejects.toThrow(
      `wasm-lm: HTTP 503 Service Unavailable fetching ${HUB}/test/opt-tiny/resolve/main/config.json`,
    );
  });

  it("names the URL when the network fails", async () => {
    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, "127.0.0.1", () => ok()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((ok) => closed.close(ok));
    await expect(loadModelFromUrl("test/opt-tiny", { endpoint: `http://127.0.0.1:${port}`, cache: false })).rejects.toThrow(
      new RegExp(`^wasm-lm: network error fetching http://127\\.0\\.0\\.1:${port}/test/opt-tiny/resolve/main/config\\.json: `),
    );
  });

  it("caches nothing from a download cut short, and downloads it again next time", async () => {
    const cache = new MemoryCache();
    faults.cut = { file: "model.safetensors", bytes: 1000 };
    await expect(loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache })).rejects.toThrow(
      `downloading ${HUB}/test/opt-tiny/resolve/main/model.safetensors after`,
    );
    expect([...cache.entries.keys()]).toEqual([`${HUB}/test/opt-tiny/resolve/main/config.json`]);
    faults = {};
    log = [];
    const r = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache, threads: 1 });
    r.model.dispose();
    expect(requested("config.json")).toEqual([]);
    expect(requested("model.safetensors")).toHaveLength(1);
  });

  it("drops a damaged cache entry and downloads the file again", async () => {
    const cache = new MemoryCache();
    const url = `${HUB}/test/opt-tiny/resolve/main/model.safetensors`;
    const whole = fx("model.safetensors");
    cache.entries.set(url, { body: new Uint8Array(whole.subarray(0, 100)), headers: [["content-length", String(whole.length)]] });
    const bytes = await urlFiles("test/opt-tiny", { endpoint: HUB, cache })("model.safetensors");
    expect(Buffer.from(bytes!).equals(whole)).toBe(true);
    expect(requested("model.safetensors")).toHaveLength(1);
    expect(cache.entries.get(url)!.body.length).toBe(whole.length);
  });

  it("reads a cached safetensors file by slices of the cache's Blob: damaged entries are refetched, a full cache falls back to memory", async () => {
    const url = `${HUB}/test/opt-tiny/resolve/main/model.safetensors`;
    const whole = fx("model.safetensors");
    const cache = new MemoryCache();
    cache.entries.set(url, { body: new Uint8Array(whole.subarray(0, 100)), headers: [["content-length", String(whole.length)]] });
    const events: FetchProgress[] = [];
    const files = urlFiles("test/opt-tiny", { endpoint: HUB, cache, onDownload: (p) => events.push(p) });
    const { config, source } = await openModelFiles(files, "tiny");
    expect(isAsyncSource(source)).toBe(true);
    expect(requested("model.safetensors")).toHaveLength(1); // the damaged entry was fetched again
    expect(cache.entries.get(url)!.body.length).toBe(whole.length);
    expect(events.filter((e) => e.file === "model.safetensors").at(-1)).toMatchObject({
      loaded: whole.length,
      total: whole.length,
      cached: false,
    });
    const model = await DecoderModel.load(config, source, { threads: 1 });
    expect(await logitsDiff(model)).toBeLessThanOrEqual(LOGIT_TOL);
    // A cache that refuses the file (quota): the file is read into memory instead, still right.
    log = [];
    class FullCache extends MemoryCache {
      override async put(r: RequestInfo | URL, res: Response): Promise<void> {
        if (!this.key(r).endsWith(".safetensors")) return super.put(r, res);
        await res.arrayBuffer();
        throw new DOMException("quota", "QuotaExceededError");
      }
    }
    const r = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache: new FullCache(), threads: 1 });
    expect(await logitsDiff(r.model)).toBeLessThanOrEqual(LOGIT_TOL);
    expect(requested("model.safetensors")).toHaveLength(2); // streamed into the cache, refused, read again
  });

  it("stops on an aborted signal", async () => {
    const ac = new AbortController();
    ac.abort(new Error("user stopped"));
    await expect(loadModelFromUrl("test/opt-tiny", { endpoint: HUB, cache: false, signal: ac.signal })).rejects.toThrow("user stopped");
    expect(log).toEqual([]);
  });

  it("runs without a Cache API (Node has no `caches`): every load downloads", async () => {
    for (let i = 0; i < 2; i++) {
      const r = await loadModelFromUrl("test/opt-tiny", { endpoint: HUB, threads: 1 });
      r.model.dispose();
    }
    expect(requested("model.safetensors")).toHaveLength(2);
  });
});

describe("loadModelFromUrl with stream: the checkpoint read by ranges", () => {
  it("hub id with a token: transformers' logits and tokens, one request per layer per pass, only config and tokenizer cached", async () => {
    const cache = new MemoryCache();
    for (const residentEmbeddings of [true, false]) {
      log = [];
      const { model } = await loadModelFromUrl("test/private", {
        endpoint: HUB,
        token: "secret",
        cache,
        stream: true,
        residentEmbeddings,
        threads: 1,
      });
      expect(model.streamsLayers).toBe(true);
      expect(model.streamsEmbeddings).toBe(!residentEmbeddings);
      expect(() => model.forward([ref.input_ids])).toThrow(/forwardAsync/);
      const d = maxAbsDiff((await model.forwardAsync([ref.input_ids])).logits, ref.logits.flat());
      expect(d.max).toBeLessThanOrEqual(LOGIT_TOL);
      const before = requested("model.safetensors").length;
      const g = await generate(model, undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true });
      expect(g.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
      if (residentEmbeddings) expect(requested("model.safetensors").length - before).toBe(8 * 2); // 8 passes × 2 layers
      expect(log.every((l) => l.auth === "Bearer secret")).toBe(true);
    }
    expect([...cache.entries.keys()].some((k) => k.endsWith("model.safetensors"))).toBe(false);
    expect([...cache.entries.keys()].some((k) => k.endsWith("config.json"))).toBe(true);
  });

  for (const [repo, f] of Object.entries(FAMILY_REPOS)) {
    it(`${repo}: loaded whole and streamed (embeddings too), transformers' logits and greedy tokens`, async () => {
      for (const o of [{ stream: false }, { stream: true, residentEmbeddings: false }]) {
        const { model, tokenizer } = await loadModelFromUrl(repo, { endpoint: HUB, cache: false, threads: 1, ...o });
        expect(tokenizer).toBeNull(); // the fixtures have no tokenizer files
        expect(model.dims.family).toBe(repo.includes("llama") ? "llama" : "gpt2");
        const d = maxAbsDiff((await model.forwardAsync([f.ref.input_ids])).logits, f.ref.logits.flat());
        expect(d.max).toBeLessThanOrEqual(LOGIT_TOL);
        const g = await generate(model, undefined, f.ref.input_ids, { maxNewTokens: 8, ignoreEos: true });
        expect(g.new_tokens).toEqual(f.ref.generation.new_tokens.slice(0, 8));
      }
    });
  }

  it("sharded safetensors stream; a pytorch_model.bin alone is a clear error; a bad config is refused first", async () => {
    const { model } = await loadModelFromUrl(`${HUB}/test/sharded/resolve/main`, { cache: false, stream: true, threads: 1 });
    expect(maxAbsDiff((await model.forwardAsync([ref.input_ids])).logits, ref.logits.flat()).max).toBeLessThanOrEqual(LOGIT_TOL);
    await expect(loadModelFromUrl(`${HUB}/test/opt-bin/resolve/main`, { cache: false, stream: true, threads: 1 })).rejects.toThrow(
      /streaming needs a safetensors checkpoint/,
    );
    await expect(
      loadModelFromUrl(`${HUB}/test/opt-tiny/resolve/main`, { cache: false, stream: true, residentLayers: true }),
    ).rejects.toThrow(/cannot be combined with residentLayers true/);
  });
});

describe("resolveModelUrl", () => {
  it("tells hub ids from URLs, and validates ids and revisions", () => {
    expect(resolveModelUrl("facebook/opt-125m")).toBe("https://huggingface.co/facebook/opt-125m/resolve/main/");
    expect(resolveModelUrl("a/b", { endpoint: "http://mirror/", revision: "refs/pr/1" })).toBe("http://mirror/a/b/resolve/refs%2Fpr%2F1/");
    expect(resolveModelUrl("https://example.com/models/opt")).toBe("https://example.com/models/opt/");
    expect(() => resolveModelUrl("a b/c")).toThrow(HubError);
    expect(() => resolveModelUrl("a/b", { revision: "../x" })).toThrow(HubError);
    expect(() => resolveModelUrl("https://example.com/m", { revision: "v1" })).toThrow(/revision applies to hub ids/);
    // Node has no location: a relative URL cannot be resolved
    expect(() => resolveModelUrl("./models/opt")).toThrow(/relative and this runtime has no location/);
    expect(() => resolveModelUrl("a/b", { endpoint: "ftp://x" })).toThrow(/not an http\(s\) URL/);
  });
});

describe("pickedFiles", () => {
  it("opens a picked directory, matching by base name with the top level winning", async () => {
    const file = (f: string, body: Uint8Array | string = fx(f)) => new File([body as BlobPart], f.split("/").pop()!);
    const files = pickedFiles({
      "opt-tiny/sub/config.json": file("config.json", "{}"),
      "opt-tiny/config.json": file("config.json"),
      "opt-tiny/model.safetensors": file("model.safetensors"),
      "opt-tiny/README.md": file("README.md", "hi"),
    });
    const { config, source, tokenizer } = await openModelFiles(files, "picked");
    expect(config.hidden_size).toBe(ref.config.hidden_size);
    expect(source.tensors().length).toBe(openSafetensors(new Uint8Array(fx("model.safetensors"))).tensors().length);
    // A picked safetensors file is read in pieces (never whole), and loads to transformers' logits.
    expect(isAsyncSource(source)).toBe(true);
    const model = await DecoderModel.load(config, source, { threads: 1 });
    expect(model.streamsLayers).toBe(false);
    expect(await logitsDiff(model)).toBeLessThanOrEqual(LOGIT_TOL);
    // A pytorch_model.bin is read whole.
    const bin = await openModelFiles(pickedFiles([file("config.json"), file("pytorch_model.bin")]), "picked");
    expect(isAsyncSource(bin.source)).toBe(false);
    expect(tokenizer).toBeNull();
    expect(await files("vocab.json")).toBeUndefined();
    // A FileList-like iterable of Files works too (names are base names)
    const list = pickedFiles([file("config.json"), file("model.safetensors")]);
    expect((await list("config.json"))?.length).toBe(fx("config.json").length);
    await expect(openModelFiles(pickedFiles([file("model.safetensors")]), "picked")).rejects.toThrow(
      "wasm-lm: picked/config.json not found",
    );
  });
});
