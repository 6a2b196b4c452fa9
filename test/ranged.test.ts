// Checkpoints read by byte ranges, against a local HTTP server that honours Range (and, per test,
// misbehaves on purpose), and against Blobs.
import { describe, it, expect, beforeAll, afterAll, beforeEach } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CheckpointError, openSafetensors, writeSafetensors, type TensorToWrite } from "../src/formats/index.js";
import {
  blobRangeReader,
  httpRangeReader,
  openRangedCheckpoint,
  openRangedSafetensors,
  RangeReadError,
  type RangeReader,
} from "../src/formats/ranged.js";
import { fixtureBytes, rawSafetensors } from "./builders.js";

const TINY = fixtureBytes("model.safetensors");
const TINY_F16 = fixtureBytes("model.fp16.safetensors");
const LAYER0 = openSafetensors(TINY)
  .tensors()
  .map((t) => t.name)
  .filter((n) => n.startsWith("model.decoder.layers.0."));

/** What the server does wrong on purpose, per test. */
interface Faults {
  /** Answer every request with this status and no body (after the first `statusAfter` requests). */
  status?: number;
  statusAfter?: number;
  /** Answer ranged requests with the whole file (200). */
  ignoreRange?: boolean;
  /** Send a 206 without Content-Range. */
  noContentRange?: boolean;
  /** Shift the Content-Range it states by this many bytes (the body is right). */
  shiftRange?: number;
  /** Send at most this many bytes, saying so in Content-Range. */
  cap?: number;
  /** Send this many bytes fewer (or, negative, more) than the Content-Range says, with a Content-Length to match. */
  short?: number;
  /** Destroy the socket after this many body bytes (Content-Length promised more). */
  cut?: number;
  /** Require this bearer token. */
  token?: string;
  /** Send this ETag with every 206. */
  etag?: string;
  /** Fail this many ranged requests, then behave: with `status`, or by cutting the body after `cutAt` bytes. */
  flaky?: { times: number; status?: number; cutAt?: number };
}

let server: Server;
let BASE = "";
let files: Record<string, Uint8Array> = {};
let log: { path: string; range?: string }[] = [];
let faults: Faults = {};

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = decodeURIComponent(req.url!);
    log.push({ path, range: req.headers.range });
    if (path.startsWith("/redirect/")) return void res.writeHead(302, { location: path.replace("/redirect/", "/files/") }).end();
    if (faults.status && log.length > (faults.statusAfter ?? 0)) return void res.writeHead(faults.status).end();
    if (faults.token && req.headers.authorization !== `Bearer ${faults.token}`) return void res.writeHead(401).end();
    const body = files[path.replace(/^\/files\//, "")];
    if (!body) return void res.writeHead(404).end("not here");
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (!m || faults.ignoreRange) return void res.writeHead(200, { "content-length": body.length }).end(body);
    const a = Number(m[1]);
    const b = Math.min(m[2] ? Number(m[2]) : Infinity, body.length - 1, a + (faults.cap ?? Infinity) - 1);
    if (a >= body.length) return void res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
    let part = body.subarray(a, b + 1);
    if (faults.flaky && faults.flaky.times > 0) {
      faults.flaky.times--;
      if (faults.flaky.status) return void res.writeHead(faults.flaky.status).end();
      res.writeHead(206, { "content-range": `bytes ${a}-${b}/${body.length}`, "content-length": part.length });
      return void res.write(part.subarray(0, faults.flaky.cutAt ?? 0), () => res.destroy());
    }
    const headers: Record<string, string | number> = { "accept-ranges": "bytes" };
    if (faults.etag) headers.etag = faults.etag;
    const s = faults.shiftRange ?? 0;
    if (!faults.noContentRange) headers["content-range"] = `bytes ${a + s}-${b + s}/${body.length}`;
    if (faults.short) part = body.subarray(a, a + part.length - faults.short);
    headers["content-length"] = part.length;
    res.writeHead(206, headers);
    if (faults.cut !== undefined) res.write(part.subarray(0, faults.cut), () => res.destroy());
    else res.end(part);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  BASE = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  files = {};
  log = [];
  faults = {};
});

const url = (f: string) => `${BASE}/files/${f}`;
const serve = (f: string, bytes: Uint8Array) => {
  files[f] = bytes;
  return url(f);
};
const openUrl = (u: string) => openRangedSafetensors(httpRangeReader(u), "t.safetensors");
const opener = (dir: string) => async (f: string) => httpRangeReader(url(`${dir}/${f}`));
function u8(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

/** Byte equality without vitest's element-by-element diff (slow on MiBs): the first difference in the message. */
function expectBytes(got: Uint8Array | undefined, want: Uint8Array, what = ""): void {
  expect(got, what).toBeInstanceOf(Uint8Array);
  const at = Buffer.from(got!.buffer, got!.byteOffset, got!.length).equals(want)
    ? -1
    : Array.from({ length: Math.max(got!.length, want.length) }).findIndex((_, i) => got![i] !== want[i]);
  expect(at < 0 ? "equal" : `${what}: lengths ${got!.length}/${want.length}, first difference at byte ${at}`).toBe("equal");
}

/** The error `p` rejects with; its message must be one line. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!(e instanceof Error)) throw new Error("expected a rejection");
  expect(e.message).not.toMatch(/[\n\r]/);
  return e;
}

/** A Blob of the bytes (a File picked in a browser, say). */
const blobOf = (b: Uint8Array) => new Blob([b as Uint8Array<ArrayBuffer>]);

/** A reader that counts its reads. */
function counting(r: RangeReader): RangeReader & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    reads,
    get size() {
      return r.size;
    },
    read: (o, n) => (reads.push([o, n]), r.read(o, n)),
  };
}

function sharded(index: (wm: Record<string, string>) => Record<string, string> = (wm) => wm): Record<string, Uint8Array> {
  const full = openSafetensors(TINY);
  const names = full.tensors().map((t) => t.name);
  const out: Record<string, Uint8Array> = {};
  const weightMap: Record<string, string> = {};
  for (const s of [1, 2]) {
    const file = `model-0000${s}-of-00002.safetensors`;
    const mine = names.filter((_, i) => i % 2 === s - 1);
    for (const n of mine) weightMap[n] = file;
    out[file] = writeSafetensors(mine.map((n) => ({ ...full.get(n)!, data: full.readRaw(n) })));
  }
  out["model.safetensors.index.json"] = new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: index(weightMap) }));
  return out;
}

describe("openRangedSafetensors over HTTP", () => {
  for (const [file, bytes] of [
    ["model.safetensors", TINY],
    ["model.fp16.safetensors", TINY_F16],
  ] as const) {
    it(`reads every tensor of ${file} byte for byte as openSafetensors does`, async () => {
      const whole = openSafetensors(bytes);
      const src = await openUrl(serve(file, bytes));
      expect(src.tensors()).toEqual(whole.tensors());
      expect(src.metadata).toEqual(whole.metadata);
      expect(log.length).toBe(1); // the header fits in the first 64 KiB
      for (const t of whole.tensors()) {
        expect(src.get(t.name)).toEqual(t);
        expectBytes(await src.readRawAsync(t.name), whole.readRaw(t.name), t.name);
      }
      expect(src.get("nope")).toBeUndefined();
    });
  }

  it("readRawMany fetches one layer in ONE request, and the whole file in one", async () => {
    const whole = openSafetensors(TINY);
    const src = await openUrl(serve("m.safetensors", TINY));
    log = [];
    const layer = await src.readRawMany(LAYER0);
    expect(log.length).toBe(1);
    expect([...layer.keys()].sort()).toEqual([...LAYER0].sort());
    for (const n of LAYER0) expectBytes(layer.get(n), whole.readRaw(n), n);

    log = [];
    const all = await src.readRawMany(whole.tensors().map((t) => t.name));
    expect(log.length).toBe(1);
    expect(all.size).toBe(36);
    for (const [n, b] of all) expectBytes(b, whole.readRaw(n), n);
    expect((await src.readRawMany([])).size).toBe(0);
  });

  it("readRawAsync reads part of a tensor, and refuses spans outside it", async () => {
    const whole = openSafetensors(TINY);
    const src = await openUrl(serve("m.safetensors", TINY));
    const name = "model.decoder.layers.1.fc1.weight";
    const raw = whole.readRaw(name);
    expectBytes(await src.readRawAsync(name, 100, 37), raw.subarray(100, 137));
    expectBytes(await src.readRawAsync(name, raw.length - 8), raw.subarray(raw.length - 8));
    expect(log.at(-1)!.range).toBe(`bytes=${raw.byteOffset + raw.length - 8}-${raw.byteOffset + raw.length - 1}`);
    expect((await src.readRawAsync(name, raw.length, 0)).length).toBe(0);
    for (const [off, len] of [
      [raw.length, 1],
      [0, raw.length + 1],
      [-1, 4],
      [1.5, 4],
    ]) {
      const e = await rejection(src.readRawAsync(name, off, len));
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toContain(`t.safetensors: tensor '${name}': bytes [${off}, ${off + len}) are outside its ${raw.length} bytes`);
    }
  });

  it("an unknown tensor name is a CheckpointError naming it", async () => {
    const src = await openUrl(serve("m.safetensors", TINY));
    for (const p of [src.readRawAsync("nope\n"), src.readRawMany([LAYER0[0], "nope\n"])]) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toBe("t.safetensors: no tensor named 'nope\\u000a'");
    }
  });

  it("reads into a caller's scratch buffer when it is large enough", async () => {
    const whole = openSafetensors(TINY);
    const name = "model.decoder.layers.1.fc1.weight";
    for (const reader of [httpRangeReader(serve("m.safetensors", TINY)), blobRangeReader(blobOf(TINY))]) {
      const src = await openRangedSafetensors(reader);
      // The bytes land in scratch's memory: the same ArrayBuffer, or (a BYOB fetch body) the one it
      // moved to, scratch's own left detached. Each next read is given where the memory is now.
      let scratch = new Uint8Array(200_000);
      const inScratch = (v: Uint8Array, was: Uint8Array) =>
        v.buffer === was.buffer || (was.buffer.byteLength === 0 && v.buffer.byteLength === 200_000);
      const part = await src.readRawAsync(name, 8, 100, scratch);
      expect(inScratch(part, scratch)).toBe(true);
      expectBytes(part, whole.readRaw(name).subarray(8, 108));
      scratch = new Uint8Array(part.buffer);
      const small = await src.readRawAsync(name, 0, undefined, new Uint8Array(10)); // too small: ignored
      expect(small.buffer).not.toBe(scratch.buffer);
      expect(scratch.byteLength).toBe(200_000);

      const layer = await src.readRawMany(LAYER0, scratch);
      const moved = layer.get(LAYER0[0])!.buffer;
      for (const n of LAYER0) {
        expect(inScratch(layer.get(n)!, scratch) && layer.get(n)!.buffer === moved, n).toBe(true);
        expectBytes(layer.get(n), whole.readRaw(n), n);
      }
      const tooSmall = new Uint8Array(1000);
      const again = await src.readRawMany(LAYER0, tooSmall);
      for (const n of LAYER0) expectBytes(again.get(n), whole.readRaw(n), n);
      expect(again.get(LAYER0[0])!.buffer).not.toBe(tooSmall.buffer);
    }
  });

  it("merges tensors at most 64 KiB apart into one read, and stops a merged read at 64 MiB", async () => {
    const t = (name: string, n: number): TensorToWrite => ({ name, dtype: "U8", shape: [n], data: u8(n) });
    const near = writeSafetensors([t("a", 1024), t("gap", 60 * 1024), t("b", 1024)]);
    const far = writeSafetensors([t("a", 1024), t("gap", 100 * 1024), t("b", 1024)]);
    for (const [bytes, reads] of [
      [near, 1],
      [far, 2],
    ] as const) {
      const r = counting(blobRangeReader(blobOf(bytes)));
      const src = await openRangedSafetensors(r);
      r.reads.length = 0;
      const got = await src.readRawMany(["b", "a"]);
      expect(r.reads.length).toBe(reads);
      expectBytes(got.get("a"), u8(1024));
      expectBytes(got.get("b"), u8(1024));
    }

    const big = 65 * 1024 * 1024; // one tensor above the limit is read whole, on its own
    const r = counting(blobRangeReader(blobOf(writeSafetensors([t("big", big), t("c", 8), t("d", 8)]))));
    const src = await openRangedSafetensors(r);
    r.reads.length = 0;
    const got = await src.readRawMany(["big", "c", "d"]);
    expect(r.reads.map(([, n]) => n)).toEqual([big, 16]);
    expectBytes(got.get("big"), u8(big));
    expectBytes(got.get("d"), u8(8));
  });

  it("reads a header longer than 64 KiB with a second read", async () => {
    const ts: TensorToWrite[] = Array.from({ length: 1500 }, (_, i) => ({
      name: `model.decoder.layers.${i}.a_rather_long_tensor_name_to_make_the_header_large.weight`,
      dtype: "F32",
      shape: [2],
      data: u8(8, i),
    }));
    const bytes = writeSafetensors(ts);
    const headerLen = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLen).toBeGreaterThan(64 * 1024);
    const src = await openUrl(serve("big-header.safetensors", bytes));
    expect(log.map((l) => l.range)).toEqual(["bytes=0-65535", `bytes=65536-${8 + headerLen - 1}`]);
    expect(src.tensors().length).toBe(1500);
    expectBytes(await src.readRawAsync(ts[1234].name), ts[1234].data);
    const many = await src.readRawMany(ts.map((x) => x.name));
    expect(ts.every((x) => many.get(x.name)!.every((v, i) => v === x.data[i]))).toBe(true);
  });

  it("follows redirects, keeping the Range header", async () => {
    serve("m.safetensors", TINY);
    const src = await openUrl(`${BASE}/redirect/m.safetensors`);
    expect(log.map((l) => [l.path, l.range])).toEqual([
      ["/redirect/m.safetensors", "bytes=0-65535"],
      ["/files/m.safetensors", "bytes=0-65535"],
    ]);
    expectBytes(await src.readRawAsync(LAYER0[0]), openSafetensors(TINY).readRaw(LAYER0[0]));
  });

  it("sends the caller's headers (a token)", async () => {
    faults.token = "secret";
    const u = serve("m.safetensors", TINY);
    const e = await rejection(openUrl(u));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toBe(
      `${u}: access denied (HTTP 401): a private or gated model needs a token ` + "(headers: { authorization: 'Bearer hf_…' })",
    );
    const src = await openRangedSafetensors(httpRangeReader(u, { headers: { authorization: "Bearer secret" } }));
    expect(src.tensors().length).toBe(36);
  });
});

describe("httpRangeReader errors", () => {
  it("a server that ignores Range: refused, unless the read covered the whole file", async () => {
    faults.ignoreRange = true;
    const e = await rejection(openUrl(serve("m.safetensors", TINY)));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toBe(
      `${url("m.safetensors")}: the server does not support range requests (it answered a ranged ` +
        "GET with HTTP 200 and the whole file), so the model cannot be streamed from it",
    );

    const small = writeSafetensors([{ name: "w", dtype: "F32", shape: [4], data: u8(16) }]);
    const src = await openUrl(serve("small.safetensors", small)); // the first 64 KiB are the whole file
    expect(src.tensors()).toEqual([{ name: "w", dtype: "F32", shape: [4] }]);
    expect((await rejection(src.readRawAsync("w"))).message).toContain("does not support range requests");
  });

  it("404, 403 and other statuses", async () => {
    const u = url("missing.safetensors");
    let e = await rejection(openUrl(u));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toBe(`${u}: not found (HTTP 404)`);
    expect((e as RangeReadError).status).toBe(404);

    faults.status = 403;
    e = await rejection(httpRangeReader(u, { label: "hub:opt/model.safetensors" }).read(0, 10));
    expect(e.message).toMatch(/^hub:opt\/model\.safetensors: access denied \(HTTP 403\): a private or gated model needs a token/);

    faults.status = 500;
    e = await rejection(httpRangeReader(u).read(10, 10));
    expect(e.message).toBe(`${u}: HTTP 500 Internal Server Error fetching bytes 10-19`);
  });

  it("a body shorter than asked is 'truncated', a connection cut 'connection lost'", async () => {
    faults.short = 100;
    const u = serve("m.safetensors", TINY);
    let e = await rejection(httpRangeReader(u).read(0, 1000));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toBe(`${u}: truncated: 900 of the 1000 bytes of bytes 0-999`);

    faults = { cut: 5000 };
    e = await rejection(httpRangeReader(u).read(0, 60000));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toMatch(new RegExp(`^${u}: connection lost downloading bytes 0-59999 after \\d+ bytes: `));
  });

  it("a source tries a dropped connection, a 5xx or a 429 again (4 tries: src/http.ts's policy); not a 404 or a bad answer", async () => {
    const u = serve("m.safetensors", TINY);
    const src = await openUrl(u);
    const whole = openSafetensors(TINY);
    // A layer read into a scratch buffer, its first two tries cut mid-body (a BYOB read loses the
    // buffer's memory with the connection): the third try reads it into fresh memory of that size.
    faults.flaky = { times: 2, cutAt: 3000 };
    log = [];
    const layer = await src.readRawMany(LAYER0, new Uint8Array(400_000));
    for (const n of LAYER0) expectBytes(layer.get(n), whole.readRaw(n), n);
    expect(layer.get(LAYER0[0])!.buffer.byteLength).toBe(400_000);
    expect(log).toHaveLength(3);
    for (const status of [503, 429]) {
      faults.flaky = { times: 1, status };
      expectBytes(await src.readRawAsync(LAYER0[0], 0, 64), whole.readRaw(LAYER0[0]).subarray(0, 64));
    }
    faults.flaky = { times: 4, status: 502 };
    log = [];
    const e = await rejection(src.readRawAsync(LAYER0[0]));
    expect(e.message).toMatch(/HTTP 502 Bad Gateway fetching bytes \d+-\d+ \(after 4 tries\)$/);
    expect(log).toHaveLength(4);
    faults = { shiftRange: 1 };
    log = [];
    expect((await rejection(src.readRawAsync(LAYER0[0]))).message).toContain("the server sent Content-Range");
    expect(log).toHaveLength(1);
  });

  it("a 206 whose Content-Range is not what was asked, or absent", async () => {
    faults.shiftRange = 1;
    const u = serve("m.safetensors", TINY);
    let e = await rejection(httpRangeReader(u).read(0, 100));
    expect(e.message).toBe(`${u}: asked for bytes 0-99, the server sent Content-Range "bytes 1-100/${TINY.length}"`);

    faults = { cap: 50 };
    e = await rejection(httpRangeReader(u).read(0, 100));
    expect(e.message).toBe(`${u}: asked for bytes 0-99, the server sent Content-Range "bytes 0-49/${TINY.length}"`);

    faults = { short: -10 };
    e = await rejection(httpRangeReader(u).read(0, 100));
    expect(e.message).toBe(`${u}: the server sent more than the 100 bytes of Content-Range "bytes 0-99/${TINY.length}"`);

    faults = { noContentRange: true };
    e = await rejection(httpRangeReader(u).read(0, 100));
    expect(e.message).toBe(
      `${u}: HTTP 206 without a Content-Range header ` + "(a cross-origin server must list it in Access-Control-Expose-Headers)",
    );
  });

  it("a file that changes size between reads", async () => {
    const u = serve("m.safetensors", TINY);
    const src = await openUrl(u);
    files["m.safetensors"] = new Uint8Array([...TINY, 0]);
    const e = await rejection(src.readRawAsync(LAYER0[0]));
    expect(e.message).toBe(`${u}: file size changed from ${TINY.length} to ${TINY.length + 1} bytes between reads`);
  });

  it("a file replaced by another of the same size between reads (its ETag changed)", async () => {
    const u = serve("m.safetensors", TINY);
    faults.etag = '"v1"';
    const r = httpRangeReader(u);
    await r.read(0, 10);
    await r.read(10, 10); // same ETag: fine
    faults.etag = '"v2"';
    const e = await rejection(r.read(20, 10));
    expect(e.message).toBe(`${u}: the file changed between reads (ETag "\\"v1\\"" → "\\"v2\\"")`);
  });

  it("reads past the end are cut, an empty read past it is empty", async () => {
    const u = serve("m.safetensors", TINY);
    const r = httpRangeReader(u);
    expect(r.size).toBeUndefined();
    expect((await r.read(TINY.length + 5, 10)).length).toBe(0); // 416 → the size
    expect(r.size).toBe(TINY.length);
    expectBytes(await r.read(TINY.length - 4, 100), TINY.subarray(TINY.length - 4));
  });

  it("a network error, and an abort", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const dead = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/m.safetensors`;
    await new Promise((resolve) => closed.close(resolve));
    const e = await rejection(httpRangeReader(dead).read(0, 10));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toMatch(new RegExp(`^${dead}: network error fetching bytes 0-9: .*ECONNREFUSED`));

    const ac = new AbortController();
    ac.abort();
    const a = await rejection(httpRangeReader(url("m.safetensors"), { signal: ac.signal }).read(0, 10));
    expect(a.name).toBe("AbortError");
  });

  it("a hostile header fails with parseSafetensorsHeader's CheckpointError", async () => {
    const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
    const cases: [Uint8Array, string][] = [
      [rawSafetensors({ a: ok }, 8, 1_000_000), "header length 1000000 runs past the end of the file"],
      [rawSafetensors({ a: ok, b: ok }, 8), "overlap"],
      [rawSafetensors({ a: { ...ok, data_offsets: [0, 16] } }, 8), "expected 8"],
      [new Uint8Array(3), "file is 3 bytes, too short"],
    ];
    for (const [bytes, msg] of cases) {
      const e = await rejection(openUrl(serve("h.safetensors", bytes)));
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toMatch(/^t\.safetensors: /);
      expect(e.message).toContain(msg);
    }
  });
});

describe("blobRangeReader", () => {
  it("reads the same bytes as HTTP", async () => {
    const r = blobRangeReader(blobOf(TINY));
    expect(r.size).toBe(TINY.length);
    expectBytes(await r.read(1000, 77), TINY.subarray(1000, 1077));
    expectBytes(await r.read(TINY.length - 3, 10), TINY.subarray(TINY.length - 3));
    const viaBlob = await openRangedSafetensors(r);
    const viaHttp = await openUrl(serve("m.safetensors", TINY));
    const names = viaHttp.tensors().map((t) => t.name);
    const [a, b] = await Promise.all([viaBlob.readRawMany(names), viaHttp.readRawMany(names)]);
    for (const n of names) expectBytes(a.get(n), b.get(n)!, n);
  });
});

describe("openRangedCheckpoint", () => {
  it("opens model.safetensors", async () => {
    files["tiny/model.safetensors"] = TINY;
    const src = await openRangedCheckpoint(opener("tiny"), "tiny");
    expect(src.tensors()).toEqual(openSafetensors(TINY).tensors());
    expect(log.map((l) => l.path)).toEqual(["/files/tiny/model.safetensors"]);
  });

  it("opens a sharded index and reads each tensor from its shard", async () => {
    const whole = openSafetensors(TINY);
    const shards = sharded();
    for (const [f, b] of Object.entries(shards)) files[`sh/${f}`] = b;
    const src = await openRangedCheckpoint(opener("sh"), "sh");
    expect(
      src
        .tensors()
        .map((t) => t.name)
        .sort(),
    ).toEqual(
      whole
        .tensors()
        .map((t) => t.name)
        .sort(),
    );
    const wm = JSON.parse(new TextDecoder().decode(shards["model.safetensors.index.json"])).weight_map;

    for (const n of LAYER0.slice(0, 4)) {
      log = [];
      expectBytes(await src.readRawAsync(n, 4, 8), whole.readRaw(n).subarray(4, 12));
      expect(log.map((l) => l.path)).toEqual([`/files/sh/${wm[n]}`]);
    }
    log = [];
    const scratch = new Uint8Array(200_000); // both shards' reads land in it, side by side
    const layer = await src.readRawMany(LAYER0, scratch);
    for (const n of LAYER0) expectBytes(layer.get(n), whole.readRaw(n), n);
    const memory = layer.get(LAYER0[0])!.buffer; // scratch's, or where a BYOB read moved it
    expect(memory === scratch.buffer || (scratch.buffer.byteLength === 0 && memory.byteLength === 200_000)).toBe(true);
    expect(LAYER0.every((n) => layer.get(n)!.buffer === memory)).toBe(true);
    // layer 0's tensors alternate between the shards, and are adjacent within each: one read per shard
    expect(log.map((l) => l.path).sort()).toEqual([
      "/files/sh/model-00001-of-00002.safetensors",
      "/files/sh/model-00002-of-00002.safetensors",
    ]);
    expect((await rejection(src.readRawMany(["nope"]))).message).toBe("sh/model.safetensors.index.json: no tensor named 'nope'");
  });

  it("reads an index longer than 64 KiB whole", async () => {
    const ts: TensorToWrite[] = Array.from({ length: 1500 }, (_, i) => ({
      name: `tensor.number.${i}.with.a.long.enough.name.to.push.the.index.past.64.KiB`,
      dtype: "U8",
      shape: [2],
      data: u8(2, i),
    }));
    const weightMap: Record<string, string> = {};
    for (const [k, part] of [ts.slice(0, 700), ts.slice(700)].entries()) {
      files[`many/s${k}.safetensors`] = writeSafetensors(part);
      for (const t of part) weightMap[t.name] = `s${k}.safetensors`;
    }
    const index = new TextEncoder().encode(JSON.stringify({ weight_map: weightMap }));
    expect(index.length).toBeGreaterThan(64 * 1024);
    files["many/model.safetensors.index.json"] = index;
    const src = await openRangedCheckpoint(opener("many"));
    expect(log.filter((l) => l.path.endsWith(".index.json")).map((l) => l.range)).toEqual([
      "bytes=0-65535",
      `bytes=65536-${index.length - 1}`,
    ]);
    expect(src.tensors().map((t) => t.name)).toEqual(ts.map((t) => t.name));
    const got = await src.readRawMany([ts[3].name, ts[1400].name]);
    expectBytes(got.get(ts[3].name), ts[3].data);
    expectBytes(got.get(ts[1400].name), ts[1400].data);
  });

  it("an index that misplaces a tensor, or names a missing shard", async () => {
    const n = LAYER0[0];
    for (const [f, b] of Object.entries(sharded((wm) => ({ ...wm, [n]: wm[n].replace("1-of", "2-of") })))) files[`bad/${f}`] = b;
    let e = await rejection(openRangedCheckpoint(opener("bad"), "bad"));
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toBe(
      `bad/model.safetensors.index.json: tensor '${n}': not in shard 'model-00002-of-00002.safetensors' where the index puts it`,
    );

    const shards = sharded();
    delete shards["model-00002-of-00002.safetensors"];
    for (const [f, b] of Object.entries(shards)) files[`gone/${f}`] = b;
    e = await rejection(openRangedCheckpoint(opener("gone"), "gone"));
    expect(e.message).toBe("gone/model.safetensors.index.json: shard 'model-00002-of-00002.safetensors' named by the index is missing");
  });

  it("works with an opener that says undefined for absent files (Blobs)", async () => {
    const shards = sharded();
    const src = await openRangedCheckpoint(async (f) => shards[f] && blobRangeReader(blobOf(shards[f]), f));
    const got = await src.readRawMany(LAYER0);
    for (const n of LAYER0) expectBytes(got.get(n), openSafetensors(TINY).readRaw(n), n);
  });

  it("only pytorch_model.bin: streaming needs safetensors; nothing: what was looked for", async () => {
    files["bin/pytorch_model.bin"] = fixtureBytes("pytorch_model.bin");
    let e = await rejection(openRangedCheckpoint(opener("bin"), "bin"));
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toBe(
      "bin/pytorch_model.bin: streaming needs a safetensors checkpoint; convert this one first " +
        "(wasm-lm quantize --dtype f32 --out DIR writes model.safetensors)",
    );
    expect(log.at(-1)!.range).toBe("bytes=0-0"); // the .bin is only probed

    e = await rejection(openRangedCheckpoint(opener("empty"), "empty"));
    expect(e.message).toBe(
      "empty: no checkpoint found (looked for model.safetensors, model.safetensors.index.json, " +
        "pytorch_model.bin, pytorch_model.bin.index.json)",
    );
    e = await rejection(openRangedCheckpoint(async () => undefined));
    expect(e.message).toMatch(/^checkpoint: no checkpoint found/);
  });

  it("errors other than a 404 on a first read are not taken for an absent file", async () => {
    faults.status = 403;
    let e = await rejection(openRangedCheckpoint(opener("tiny"), "tiny"));
    expect(e).toBeInstanceOf(RangeReadError);
    expect(e.message).toBe(
      `${url("tiny/model.safetensors")}: access denied (HTTP 403): a private or gated model ` +
        "needs a token (headers: { authorization: 'Bearer hf_…' })",
    );

    // a 404 for the second part of a long header: the file was there
    files["long/model.safetensors"] = writeSafetensors(
      Array.from({ length: 1500 }, (_, i) => ({
        name: `tensor.number.${i}.with.a.long.enough.name.to.push.the.header.past.64.KiB`,
        dtype: "U8",
        shape: [1],
        data: u8(1),
      })),
    );
    log = [];
    faults = { status: 404, statusAfter: 1 };
    e = await rejection(openRangedCheckpoint(opener("long"), "long"));
    expect(e.message).toBe(`${url("long/model.safetensors")}: not found (HTTP 404)`);
    expect(log.length).toBe(2);
  });
});
