// Faults injected into a running model: WebAssembly memory exhausted (wasm32's 4 GiB, or a host
// that refuses to grow), aborted and failing generations, concurrent calls, a checkpoint read that
// fails halfway through a streamed forward, worker threads that stop. Each must be a clear error
// (never a hang or a crash inside a kernel) and leave the model working, with its arena where it
// was. (The hub download's faults — a cut connection, resume, a hash mismatch — are in hub.test.ts.)
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CheckpointError, openSafetensors, type TensorSource } from "../src/formats/index.js";
import { OutOfMemoryError } from "../src/arena.js";
import { parseOptConfig, type OptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { generate, streamGenerate } from "../src/generate/index.js";
import { FIXTURE_DIR, reference } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const source = () => openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors"))));
const prompt: number[] = ref.input_ids;
const greedy = (n: number): number[] => ref.generation.new_tokens.slice(0, n);
let model: DecoderModel;

beforeAll(async () => {
  model = await DecoderModel.load(config, source(), { build: "simd", threads: 1 });
});

async function caught(p: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

/** The model gives transformers' greedy tokens and its arena is back where it was. */
async function healthy(m: DecoderModel, used: number, n = 8): Promise<void> {
  expect(m.arena.used).toBe(used);
  expect((await generate(m, undefined, prompt, { maxNewTokens: n, ignoreEos: true })).new_tokens).toEqual(greedy(n));
  expect(m.arena.used).toBe(used);
}

describe("WebAssembly memory exhausted", () => {
  it("a KV cache larger than wasm32 is an OutOfMemoryError naming the size, and nothing is allocated", async () => {
    const used = model.arena.used,
      cap = model.arena.capacity;
    for (const B of [1e6, 2 ** 31, Number.MAX_SAFE_INTEGER]) {
      const e = await caught(() => model.createCache(B, 64));
      expect(e).toBeInstanceOf(OutOfMemoryError);
      expect(e.message).toMatch(/^wasm-lm: out of WebAssembly memory: \d+\.\d MiB needed, wasm32 can address at most 4096\.0 MiB$/);
      expect(model.arena.used).toBe(used);
      expect(model.arena.capacity).toBe(cap); // refused before growing
    }
    for (const [B, ctx, msg] of [
      [0, 64, /batch size/],
      [1.5, 64, /batch size/],
      [NaN, 64, /batch size/],
      [1, 65, /cache length 65/],
      [1, 0, /cache length 0/],
      [1, NaN, /cache length NaN/],
    ] as const) {
      expect((await caught(() => model.createCache(B, ctx))).message).toMatch(msg);
    }
    await healthy(model, used);
  });

  it("a host that refuses to grow memory is an OutOfMemoryError, and the model keeps working", async () => {
    // 320 pages = 20 MiB: what a constrained browser tab might allow.
    const m = await DecoderModel.load(config, source(), {
      build: "simd",
      threads: 1,
      memory: new WebAssembly.Memory({ initial: 256, maximum: 320 }),
    });
    const used = m.arena.used;
    const e = await caught(() => m.createCache(400, 64));
    expect(e).toBeInstanceOf(OutOfMemoryError);
    expect(e.message).toMatch(/^wasm-lm: cannot grow WebAssembly memory to \d+\.\d MiB \(.+\); the host refused the allocation$/);
    await healthy(m, used);
    // A forward whose scratch the host refuses: a clear error, and the model still generates.
    const f = await caught(() =>
      m.forward(
        Array.from({ length: 300 }, () => prompt),
        { logits: "all" },
      ),
    );
    expect(f).toBeInstanceOf(OutOfMemoryError);
    expect((await generate(m, undefined, prompt, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(greedy(8));
  });

  // A model whose logits dominate its scratch (vocabulary 2^20, hidden size 8): a forward of batch
  // 16 × 64 tokens with logits for every position needs 4 GiB of scratch but only 70 kB of cache.
  const wide: OptConfig = {
    ...config,
    vocab_size: 2 ** 20,
    hidden_size: 8,
    word_embed_proj_dim: 8,
    num_attention_heads: 1,
    ffn_dim: 8,
    num_hidden_layers: 1,
  };
  const batch = Array.from({ length: 16 }, (_, b) => Array.from({ length: 64 }, (_, t) => (b * 64 + t) % 1000));

  it("a forward too large for wasm32 is an OutOfMemoryError, and the model still generates the same tokens", async () => {
    const w = await DecoderModel.load(wide, new SyntheticSource(wide, 1), { build: "simd", threads: 1 });
    const before = (await generate(w, undefined, [2, 10, 20], { maxNewTokens: 6, ignoreEos: true })).new_tokens;
    const e = await caught(() => w.forward(batch, { logits: "all" }));
    expect(e).toBeInstanceOf(OutOfMemoryError);
    expect(e.message).toMatch(/out of WebAssembly memory: \d+\.\d MiB needed/);
    expect(w.arena.frozen).toBe(false);
    expect((await generate(w, undefined, [2, 10, 20], { maxNewTokens: 6, ignoreEos: true })).new_tokens).toEqual(before);
    // The same batch with logits for the last positions only fits.
    expect(w.forward(batch, { logits: "last" }).logits.length).toBe(16 * 2 ** 20);
  });

  // Was a bug: DecoderModel.begin created the call's own KV cache, then `arena.reserve(plan)`
  // throws without releasing it: every failed call leaks its cache (here 70 kB; at OPT-125M's
  // shape a batch that just misses wasm32 leaks ~1 GB), until legitimate calls run out of memory.
  // Fix: in begin, `try { arena.reserve(plan) } catch (e) { if (ownCache) cache.release(); throw e; }`.
  it("… and leaves the arena where it was (wasm32 limit)", async () => {
    const w = await DecoderModel.load(wide, new SyntheticSource(wide, 1), { build: "simd", threads: 1 });
    const used = w.arena.used;
    await caught(() => w.forward(batch, { logits: "all" }));
    expect(w.arena.used).toBe(used);
  });
  it("… and leaves the arena where it was (a host that refuses to grow: 3.7 MB leaked per call)", async () => {
    const m = await DecoderModel.load(config, source(), {
      build: "simd",
      threads: 1,
      memory: new WebAssembly.Memory({ initial: 256, maximum: 320 }),
    });
    const used = m.arena.used;
    await caught(() =>
      m.forward(
        Array.from({ length: 300 }, () => prompt),
        { logits: "all" },
      ),
    );
    expect(m.arena.used).toBe(used);
  });
});

describe("aborted and failing generations", () => {
  it("aborts at every point release the cache and never raise the high-water mark", async () => {
    const used = model.arena.used;
    await generate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true });
    const high = model.arena.highWater;
    const reason = new Error("user pressed stop");
    for (let at = 0; at <= 12; at += 3) {
      const ac = new AbortController();
      if (at === 0) ac.abort(reason);
      let n = 0;
      const run = (async () => {
        for await (const _ of streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true, signal: ac.signal })) {
          if (++n === at) ac.abort(reason);
        }
      })();
      expect(await caught(run)).toBe(reason); // the signal's reason, as fetch does
      expect(n).toBe(at);
      expect(model.arena.used).toBe(used);
    }
    expect(model.arena.highWater).toBe(high);
    await healthy(model, used);
  });

  it("a consumer that throws inside for-await, or breaks out, releases the model", async () => {
    const used = model.arena.used;
    const boom = new Error("consumer failed");
    const e = await caught(
      (async () => {
        for await (const t of streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true })) if (t.id >= 0) throw boom;
      })(),
    );
    expect(e).toBe(boom);
    for await (const _ of streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true })) break;
    await healthy(model, used);
  });

  it("concurrent calls where some fail or abort: the others get their own right answers", async () => {
    const used = model.arena.used;
    const ac = new AbortController();
    let n = 0;
    const aborted = (async () => {
      for await (const _ of streamGenerate(model, undefined, prompt, { maxNewTokens: 50, ignoreEos: true, signal: ac.signal })) {
        if (++n === 3) ac.abort();
      }
    })();
    const runs = await Promise.allSettled([
      generate(model, undefined, prompt, { maxNewTokens: 12, ignoreEos: true }),
      generate(model, undefined, [2, 600], { maxNewTokens: 12 }),
      aborted,
      generate(model, undefined, prompt, { maxNewTokens: 12, temperature: NaN }),
      generate(model, undefined, prompt, { maxNewTokens: 12, ignoreEos: true }),
      generate(model, undefined, prompt, { maxNewTokens: 12, ignoreEos: true }),
    ]);
    expect(runs.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "rejected", "fulfilled", "fulfilled"]);
    for (const i of [0, 4, 5]) expect((runs[i] as PromiseFulfilledResult<{ new_tokens: number[] }>).value.new_tokens).toEqual(greedy(12));
    expect(String((runs[1] as PromiseRejectedResult).reason)).toContain("token id 600");
    expect(String((runs[2] as PromiseRejectedResult).reason)).toMatch(/abort/i);
    expect(n).toBe(3);
    expect(String((runs[3] as PromiseRejectedResult).reason)).toContain("temperature = NaN");
    expect(model.arena.used).toBe(used);
  });

  // BUG (reported, design): streamGenerate holds the model's queue until the iterator finishes;
  // an iterator that is neither finished nor return()ed (a consumer that stops calling next())
  // blocks every later call on the model forever. Fix: document it, or hold the lock per step
  // with the cache allocated outside the LIFO arena; at least time out with a clear error.
  it.fails("an abandoned stream does not block the next call forever", async () => {
    const it = streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true });
    await it.next(); // …and never again
    const next = generate(model, undefined, prompt, { maxNewTokens: 2, ignoreEos: true });
    const winner = await Promise.race([
      next.then(
        () => "done",
        () => "error",
      ),
      new Promise((r) => setTimeout(() => r("blocked"), 300)),
    ]);
    await it.return(undefined as never); // unblock for the other tests
    await next;
    expect(winner).not.toBe("blocked");
  });

  it("a step left open is a clear error for the next call until it is ended", async () => {
    const used = model.arena.used;
    const s = model.begin([prompt]);
    expect((await caught(() => model.forward([prompt]))).message).toBe("wasm-lm: a step is already open on this model (end() it first)");
    expect((await caught(generate(model, undefined, prompt, { maxNewTokens: 2 }))).message).toContain("a step is already open");
    s.end();
    s.end(); // idempotent
    await healthy(model, used);
  });

  // Was a bug: KVCache carried no owner and no released flag, so begin() accepts a cache
  // from another model (its pointers index this model's memory: kv writes land in scratch or
  // worse) or a released one (whose region the next allocation reuses). Both silently give wrong
  // logits. Fix: KVCache records its arena and a `released` flag; begin refuses a cache whose
  // arena is not this.arena or that was released, naming which.
  it("a KV cache from another model is refused", async () => {
    const other = await DecoderModel.load(config, source(), { build: "simd", threads: 1 });
    const foreign = other.createCache(1, 32);
    expect((await caught(() => model.forward([prompt], { cache: foreign }))).message).toMatch(/cache/);
  });
  it("a released KV cache is refused", async () => {
    const c = model.createCache(1, 32);
    c.release();
    expect((await caught(() => model.forward([prompt], { cache: c }))).message).toMatch(/released/);
  });
});

describe("a checkpoint read that fails halfway through a streamed forward", () => {
  it("is the reader's error, and once the file reads again the model gives the right tokens", async () => {
    const inner = source();
    let failOn: string | null = "model.decoder.layers.1.fc1.weight";
    const flaky: TensorSource = {
      tensors: () => inner.tensors(),
      get: (n) => inner.get(n),
      readRaw: (n) => {
        if (n === failOn) throw new CheckpointError(`flaky.safetensors: tensor '${n}': I/O error (injected)`);
        return inner.readRaw(n);
      },
      readF32: (n, dst) => {
        if (n === failOn) {
          dst.fill(NaN); // half-written garbage, as a failing read may leave
          throw new CheckpointError(`flaky.safetensors: tensor '${n}': I/O error (injected)`);
        }
        inner.readF32(n, dst);
      },
    };
    const streamed = await DecoderModel.load(config, flaky, { build: "simd", threads: 1, residentLayers: false });
    const used = streamed.arena.used;
    for (let i = 0; i < 2; i++) {
      const e = await caught(generate(streamed, undefined, prompt, { maxNewTokens: 4, ignoreEos: true }));
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toBe("flaky.safetensors: tensor 'model.decoder.layers.1.fc1.weight': I/O error (injected)");
      expect(streamed.arena.used).toBe(used);
    }
    failOn = null;
    await healthy(streamed, used); // layer 1's half-filled slot was not reused
  });
});

describe("worker threads", () => {
  it("a pool closed between calls: the model continues on one thread with identical tokens", async () => {
    const two = await DecoderModel.load(config, source(), { build: "simd", threads: 2 });
    expect(two.threads).toBe(2);
    const used = two.arena.used;
    const a = await generate(two, undefined, prompt, { maxNewTokens: 16, ignoreEos: true });
    two.dispose();
    expect(two.threads).toBe(1);
    const b = await generate(two, undefined, prompt, { maxNewTokens: 16, ignoreEos: true });
    expect(b.new_tokens).toEqual(a.new_tokens);
    expect(a.new_tokens).toEqual(greedy(16));
    await healthy(two, used);
  });

  // A worker that dies between calls is noticed through its 'exit' event, one that dies idle
  // through the job acknowledgement (5 s): either way an error, then the model runs on one thread.
  it("a worker that dies: an error within seconds, then one thread", async () => {
    const two = await DecoderModel.load(config, source(), { build: "simd", threads: 2 });
    const workers = (two.pool as unknown as { workers: { terminate(): Promise<number> }[] }).workers;
    await Promise.all(workers.map((w) => w.terminate()));
    const t0 = performance.now();
    const r = await generate(two, undefined, prompt, { maxNewTokens: 8, ignoreEos: true }).catch((e: Error) => e);
    expect(performance.now() - t0).toBeLessThan(5000);
    if (r instanceof Error) expect(r.message).toMatch(/worker/);
    else expect(r.new_tokens).toEqual(greedy(8));
    expect(two.threads).toBe(1);
    expect((await generate(two, undefined, prompt, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(greedy(8));
  }, 120_000);
});
