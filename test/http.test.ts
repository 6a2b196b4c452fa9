// src/http.ts, the one HTTP client of hub downloads, URL loads and range reads, against a local
// server on 127.0.0.1 that answers each path as the test tells it to.
import { describe, it, expect, beforeAll, afterAll, beforeEach } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  backoffMs,
  bodyStream,
  checkLength,
  declaredLength,
  HttpError,
  Progress,
  readBody,
  readChunks,
  redactUrl,
  retryAfterMs,
  send,
  statusError,
  withRetries,
  type DownloadProgress,
} from "../src/http.js";

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

let server: Server;
let BASE = "";
/** path → what to answer; the handler gets how many requests that path has had before. */
let routes: Record<string, Handler> = {};
let hits: Record<string, number> = {};

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url!, "http://x").pathname;
    const n = hits[path] ?? 0;
    hits[path] = n + 1;
    const h = routes[path];
    if (!h) return void res.writeHead(404).end();
    h(req, res, n);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  BASE = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  routes = {};
  hits = {};
});

const BODY = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7 + 3) & 255);

/** Sends `body` in `pieces` writes `ms` apart (a pause of `pauseMs` before the last one). */
function slowly(body: Uint8Array, pieces: number, ms: number, pauseMs = 0): Handler {
  return (_req, res) => {
    res.writeHead(200, { "content-length": String(body.length) });
    const step = Math.ceil(body.length / pieces);
    let at = 0;
    const next = () => {
      if (at >= body.length) return void res.end();
      res.write(body.subarray(at, at + step));
      at += step;
      setTimeout(next, at + step >= body.length ? ms + pauseMs : ms);
    };
    next();
  };
}

/** GET path under the retry policy: the body, or the HttpError of a failed status. */
function getRetrying(path: string, opts: { retries?: number; signal?: AbortSignal } = {}): Promise<Uint8Array> {
  return withRetries(async () => {
    const res = await send(BASE + path, { signal: opts.signal });
    if (!res.ok) {
      await res.body?.cancel();
      throw statusError(res, BASE + path);
    }
    return (await readBody(res, { what: BASE + path, signal: opts.signal }))!;
  }, opts);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!(e instanceof Error)) throw new Error("expected a rejection");
  return e;
}

describe("the retry policy", () => {
  it("retries a 503 after its Retry-After (seconds), and no sooner", async () => {
    routes["/busy"] = (_req, res, n) => (n === 0 ? res.writeHead(503, { "retry-after": "1" }).end() : res.writeHead(200).end("ok"));
    const t0 = performance.now();
    const body = await getRetrying("/busy");
    const ms = performance.now() - t0;
    expect(new TextDecoder().decode(body)).toBe("ok");
    expect(hits["/busy"]).toBe(2);
    expect(ms).toBeGreaterThanOrEqual(990);
    expect(ms).toBeLessThan(2500);
  });

  it("reads Retry-After as seconds or an HTTP date, and caps it at 30 s", () => {
    const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
    expect(retryAfterMs("2", now)).toBe(2000);
    expect(retryAfterMs("Wed, 21 Oct 2015 07:28:03 GMT", now)).toBe(3000);
    expect(retryAfterMs("Wed, 21 Oct 2015 07:27:00 GMT", now)).toBe(0); // in the past: at once
    expect(retryAfterMs("3600", now)).toBe(30_000);
    for (const v of [null, "", "soon", "-1", "1.5"]) expect(retryAfterMs(v, now), String(v)).toBeUndefined();
  });

  it("without Retry-After: exponential backoff with jitter, bounded", () => {
    expect([0, 1, 2, 3].map((n) => backoffMs(n, () => 0))).toEqual([125, 250, 500, 1000]);
    expect([0, 1, 2, 3].map((n) => backoffMs(n, () => 1))).toEqual([250, 500, 1000, 2000]);
    expect(backoffMs(20, () => 1)).toBe(8000);
  });

  it("retries 408, 429 and 5xx, `retries` times, and says how many tries there were", async () => {
    for (const status of [408, 429, 500, 502]) {
      routes["/flaky"] = (_req, res, n) => (n < 2 ? res.writeHead(status).end() : res.writeHead(200).end("ok"));
      hits = {};
      expect((await getRetrying("/flaky", { retries: 2 })).length, String(status)).toBe(2);
      expect(hits["/flaky"]).toBe(3);
    }
    routes["/down"] = (_req, res) => res.writeHead(503).end();
    const e = await rejection(getRetrying("/down", { retries: 2 }));
    expect(e).toBeInstanceOf(HttpError);
    expect(e.message).toBe(`HTTP 503 Service Unavailable fetching ${BASE}/down (after 3 tries)`);
    expect(hits["/down"]).toBe(3);
  });

  it("never retries 404, 403 or another 4xx", async () => {
    for (const status of [404, 403, 401, 400, 416]) {
      routes["/no"] = (_req, res) => res.writeHead(status, { "retry-after": "0" }).end();
      hits = {};
      const e = await rejection(getRetrying("/no"));
      expect(e, String(status)).toBeInstanceOf(HttpError);
      expect((e as HttpError).status).toBe(status);
      expect((e as HttpError).transient).toBe(false);
      expect(e.message).not.toContain("tries");
      expect(hits["/no"], String(status)).toBe(1);
    }
  });

  it("retries a connection dropped mid-body and a refused connection", async () => {
    routes["/cut"] = (_req, res, n) => {
      res.writeHead(200, { "content-length": String(BODY.length) });
      if (n === 0) res.write(BODY.subarray(0, 1000), () => res.destroy());
      else res.end(BODY);
    };
    expect(Buffer.from(await getRetrying("/cut")).equals(BODY)).toBe(true);
    expect(hits["/cut"]).toBe(2);

    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, "127.0.0.1", ok));
    const dead = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/x`;
    await new Promise((ok) => closed.close(ok));
    let tries = 0;
    const e = await rejection(withRetries(() => (tries++, send(dead)), { retries: 1 }));
    expect(tries).toBe(2);
    expect(e.message).toMatch(new RegExp(`^network error fetching ${dead}: .*ECONNREFUSED.* \\(after 2 tries\\)$`));
  });

  it("an abort during the pause before a retry ends it at once, with the signal's reason", async () => {
    routes["/busy"] = (_req, res) => res.writeHead(503, { "retry-after": "10" }).end();
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(), 150);
    const e = await rejection(getRetrying("/busy", { signal: ac.signal }));
    expect(e).toBe(ac.signal.reason);
    expect(e.name).toBe("AbortError");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(hits["/busy"]).toBe(1);
    // Aborted already: no request at all.
    await expect(getRetrying("/busy", { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
    expect(hits["/busy"]).toBe(1);
  });

  it("an abort mid-body ends the read at once, with the signal's reason, and is not retried", async () => {
    routes["/stall"] = (_req, res) => {
      res.writeHead(200, { "content-length": String(BODY.length) });
      res.write(BODY.subarray(0, 50_000)); // and nothing more
    };
    const ac = new AbortController();
    let abortedAt = 0;
    const progress = new Progress("f", (p) => {
      if (p.loaded >= 50_000 && !abortedAt) {
        abortedAt = performance.now();
        ac.abort();
      }
    });
    const e = await rejection(
      withRetries(async () => {
        const res = await send(`${BASE}/stall`, { signal: ac.signal });
        return readBody(res, { what: "stall", signal: ac.signal, progress });
      }),
    );
    expect(e).toBe(ac.signal.reason);
    expect(performance.now() - abortedAt).toBeLessThan(500);
    expect(hits["/stall"]).toBe(1);
  });
});

describe("progress", () => {
  it("one event shape; loaded only grows; at most one event per 100 ms; the last has total = loaded", async () => {
    routes["/slow"] = slowly(BODY, 30, 20);
    const events: DownloadProgress[] = [];
    const at: number[] = [];
    const res = await send(`${BASE}/slow`);
    const progress = new Progress("model.safetensors", (p) => (events.push(p), at.push(performance.now())), {
      total: declaredLength(res).total,
    });
    const bytes = await readBody(res, { what: "slow", progress });
    progress.end();
    expect(Buffer.from(bytes!).equals(BODY)).toBe(true);
    expect(events.length).toBeGreaterThan(2);
    expect(events.length).toBeLessThan(30);
    for (const [i, e] of events.entries()) {
      expect(Object.keys(e).sort()).toEqual(["cached", "done", "file", "loaded", "total"]);
      expect(e).toMatchObject({ file: "model.safetensors", total: BODY.length, cached: false, done: e.loaded });
      if (i > 0) expect(e.loaded).toBeGreaterThanOrEqual(events[i - 1].loaded);
      if (i > 0 && i < events.length - 1) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(95);
    }
    expect(events.at(-1)).toEqual({ file: "model.safetensors", loaded: BODY.length, total: BODY.length, cached: false, done: BODY.length });
  });

  it("a body that pauses still reports its latest count, and a resumed download counts its start", async () => {
    routes["/pause"] = slowly(BODY, 3, 10, 400);
    const events: DownloadProgress[] = [];
    const res = await send(`${BASE}/pause`);
    const progress = new Progress("f", (p) => events.push(p), { loaded: 1000, total: 1000 + BODY.length });
    let sawTwoThirds = false;
    await readChunks(res, { what: "pause", progress }, () => {
      sawTwoThirds ||= events.some((e) => e.loaded >= 1000 + 200_000);
    });
    // Two thirds arrive within a few ms, then 400 ms of nothing: the deferred event comes in the gap.
    expect(sawTwoThirds).toBe(true);
    expect(events[0].loaded).toBeGreaterThan(1000);
    expect(events.every((e) => e.total === 1000 + BODY.length)).toBe(true);
  });

  it("an exception in a deferred report fails the read instead of going unhandled", async () => {
    routes["/pause"] = slowly(BODY, 3, 10, 300);
    let calls = 0;
    const progress = new Progress("f", () => {
      if (++calls === 2) throw new Error("report failed");
    });
    const res = await send(`${BASE}/pause`);
    await expect(readBody(res, { what: "pause", progress })).rejects.toThrow("report failed");
  });
});

describe("bodies", () => {
  it("readBody fills a caller's buffer in place (BYOB) and refuses a body longer than asked", async () => {
    routes["/b"] = (_req, res) => res.writeHead(200, { "content-length": String(BODY.length) }).end(BODY);
    const scratch = new Uint8Array(BODY.length + 100);
    const got = await readBody(await send(`${BASE}/b`), { what: "b", max: BODY.length, into: scratch });
    expect(Buffer.from(got!).equals(BODY)).toBe(true);
    expect(got!.buffer.byteLength).toBe(BODY.length + 100); // scratch's memory, moved, not a new buffer
    expect(await readBody(await send(`${BASE}/b`), { what: "b", max: BODY.length - 1 })).toBeUndefined();
  });

  it("a body shorter than its Content-Length is refused, transiently, in memory and as a stream", async () => {
    // (Over HTTP/1.1 a short body is a dropped connection, retried above: these bodies end cleanly.)
    const short = () => new Response("12345", { headers: { "content-length": "10" } });
    let res = short();
    const bytes = await readBody(res, { what: "short" });
    const e = await rejection((async () => checkLength(`${BASE}/short`, bytes!.length, declaredLength(res)))());
    expect(e.message).toBe(`incomplete download of ${BASE}/short: 5 bytes, Content-Length 10`);
    expect((e as HttpError).transient).toBe(true);
    // A decoded body may be longer than its Content-Length, never shorter.
    expect(() => checkLength("gz", 20, { total: 10, mayBeLonger: true })).not.toThrow();
    expect(() => checkLength("gz", 5, { total: 10, mayBeLonger: true })).toThrow(/incomplete/);

    res = short();
    const body = bodyStream(res, { what: "short" }, (n) => checkLength("short", n, declaredLength(res)));
    await expect(new Response(body.stream).arrayBuffer()).rejects.toBeDefined();
    expect((body.error as HttpError).message).toBe("incomplete download of short: 5 bytes, Content-Length 10");
  });
});

describe("the error text", () => {
  it("one line: status, the URL with its secrets redacted, the hub's x-error-code and x-error-message", async () => {
    routes["/gone/hf_abcdefghijk/file"] = (_req, res) =>
      res
        .writeHead(500, "Internal Server Error", {
          "x-error-code": "EntryNotFound",
          "x-error-message": "Entry\tnot found",
        })
        .end();
    const url = `${BASE}/gone/hf_abcdefghijk/file?token=hf_secret123456&X-Amz-Signature=abc&download=true#frag`;
    const res = await send(url);
    const e = statusError(res, url);
    expect(e.message).toBe(
      `HTTP 500 Internal Server Error fetching ${BASE}/gone/hf_***/file?token=***&X-Amz-Signature=***&download=true ` +
        "(EntryNotFound: Entry\\u0009not found)",
    );
    expect(e.message).not.toMatch(/[\n\r\t]|secret|abcdefghijk/);
    expect(e.transient).toBe(true);

    // fetch refuses a URL with credentials: the network error names the URL without them.
    const creds = `http://user:pa55word@127.0.0.1:${new URL(BASE).port}/x?access_token=t0ken`;
    const n = await rejection(send(creds));
    expect(n.message).toMatch(new RegExp(`^network error fetching http://127\\.0\\.0\\.1:\\d+/x\\?access_token=\\*\\*\\*: `));
    expect(n.message).not.toMatch(/pa55word|t0ken|user/);
    expect(redactUrl("not a url hf_abcdefghij")).toBe("not a url hf_***");
  });
});
