// Generation on the tiny fixture: sampling options, stop conditions, streaming, abort, queueing,
// iterators left unread (leaseMs) or dropped; and the layer-streaming mode (one layer resident at a time).
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { generate, streamGenerate, type TextCodec } from "../src/generate/index.js";
import { applyRepetitionPenalty, logSoftmax, Sampler, topIds } from "../src/generate/sampling.js";
import { loadTokenizer } from "../src/tokenizer/node.js";
import { FIXTURE_DIR, maxAbsDiff, reference, TOKENIZER_FIXTURE_DIR } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const source = () => openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors"))));
const tokenizer = loadTokenizer(TOKENIZER_FIXTURE_DIR);
// The fixture's vocabulary is the first 512 OPT ids, so the OPT tokenizer decodes its output.
const codec: TextCodec = { encode: (t) => tokenizer.encode(t), decode: (ids) => tokenizer.decode(ids), vocabSize: config.vocab_size };
const prompt: number[] = ref.input_ids;
let model: DecoderModel;

beforeAll(async () => {
  model = await DecoderModel.load(config, source(), { build: "simd" });
});

describe("generate", () => {
  it("greedy text equals the decoded reference tokens; streamed pieces add up to it", async () => {
    const r = await generate(model, codec, prompt, { maxNewTokens: 32, ignoreEos: true });
    expect(r.new_tokens).toEqual(ref.generation.new_tokens);
    expect(r.text).toBe(tokenizer.decode(ref.generation.new_tokens));
    expect(r.finish_reason).toBe("length");
    let streamed = "";
    const ids: number[] = [];
    for await (const t of streamGenerate(model, codec, prompt, { maxNewTokens: 32, ignoreEos: true })) {
      streamed += t.text;
      if (t.id >= 0) ids.push(t.id);
    }
    expect(ids).toEqual(ref.generation.new_tokens);
    expect(streamed).toBe(r.text);
    expect(r.timings.prefill_ms).toBeGreaterThan(0);
    expect(r.timings.decode_ms_per_token).toBeGreaterThan(0);
  });

  it("forward's logitsOut: the same logits written into the given array (a view when it is longer); too short is an error", async () => {
    const V = model.dims.V;
    const fresh = model.forward([prompt], { logits: "last" }).logits;
    const out = new Float32Array(V).fill(NaN);
    const r = model.forward([prompt], { logits: "last", logitsOut: out });
    expect(r.logits).toBe(out);
    expect(Array.from(out)).toEqual(Array.from(fresh));
    const longer = new Float32Array(V + 3).fill(7);
    const v = model.forward([prompt], { logits: "last", logitsOut: longer }).logits;
    expect(v.buffer).toBe(longer.buffer);
    expect(v.length).toBe(V);
    expect(Array.from(v)).toEqual(Array.from(fresh));
    expect(Array.from(longer.subarray(V))).toEqual([7, 7, 7]);
    expect(() => model.forward([prompt], { logits: "last", logitsOut: new Float32Array(V - 1) })).toThrow(/logitsOut holds/);
    // The model is usable afterwards (the step was ended).
    expect(Array.from(model.forward([prompt], { logits: "last" }).logits)).toEqual(Array.from(fresh));
  });
  it("sampling is reproducible with a seed and differs across seeds; top-k 1 is greedy", async () => {
    const a = await generate(model, undefined, prompt, { maxNewTokens: 24, temperature: 1.5, seed: 1, ignoreEos: true });
    const b = await generate(model, undefined, prompt, { maxNewTokens: 24, temperature: 1.5, seed: 1, ignoreEos: true });
    const c = await generate(model, undefined, prompt, { maxNewTokens: 24, temperature: 1.5, seed: 2, ignoreEos: true });
    expect(a.new_tokens).toEqual(b.new_tokens);
    expect(a.new_tokens).not.toEqual(c.new_tokens);
    const k1 = await generate(model, undefined, prompt, { maxNewTokens: 16, topK: 1, temperature: 2, seed: 5, ignoreEos: true });
    expect(k1.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 16));
    const p = await generate(model, undefined, prompt, { maxNewTokens: 16, topP: 1e-6, seed: 5, ignoreEos: true });
    expect(p.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 16));
  });

  it("top-k and top-p keep only allowed tokens", () => {
    const logits = Float32Array.from([0, 5, 4, 3, -1, 2]);
    const seen = new Set<number>();
    const s = new Sampler({ topK: 2, seed: 3 });
    for (let i = 0; i < 200; i++) seen.add(s.next(logits.slice(), []));
    expect([...seen].sort()).toEqual([1, 2]);
    const seenP = new Set<number>();
    const sp = new Sampler({ topP: 0.5, temperature: 1, seed: 3 }); // p(1) = 0.64 ≥ 0.5 alone
    for (let i = 0; i < 200; i++) seenP.add(sp.next(logits.slice(), []));
    expect([...seenP]).toEqual([1]);
  });

  it("repetition penalty follows transformers (divide positive, multiply negative)", () => {
    const l = Float32Array.from([2, -2, 1]);
    applyRepetitionPenalty(l, [0, 1, 1], 2);
    expect(Array.from(l)).toEqual([1, -4, 1]);
  });

  it("logprobs: log-softmax of the logits before temperature; the greedy token is the most likely", async () => {
    // Reference for the first token: float64 log-softmax of the prompt's last logits.
    const row = Array.from(model.forward([prompt], { logits: "last" }).logits);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    const r = await generate(model, codec, prompt, { maxNewTokens: 6, ignoreEos: true, logprobs: 4 });
    expect(r.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 6));
    expect(r.logprobs).toHaveLength(6);
    expect(r.logprobs![0].logprob).toBeCloseTo(row[r.new_tokens[0]] - lse, 5);
    r.logprobs!.forEach((t, i) => {
      expect(t.id).toBe(r.new_tokens[i]);
      expect(t.top_logprobs.map((c) => c.logprob)).toEqual(t.top_logprobs.map((c) => c.logprob).sort((a, b) => b - a));
      expect(t.top_logprobs[0]).toEqual({ id: t.id, logprob: t.logprob });
      expect(t.top_logprobs.reduce((a, c) => a + Math.exp(c.logprob), 0)).toBeLessThanOrEqual(1 + 1e-6);
    });
    // The stream carries the same numbers, token by token.
    const events = [];
    for await (const t of streamGenerate(model, codec, prompt, { maxNewTokens: 6, ignoreEos: true, logprobs: 4 }))
      if (t.id >= 0) events.push(t);
    expect(events.map(({ id, logprob, top_logprobs }) => ({ id, logprob, top_logprobs }))).toEqual(r.logprobs);
    // Sampled at temperature 3, the first token's log-probability is still the untempered one.
    const hot = await generate(model, undefined, prompt, { maxNewTokens: 1, temperature: 3, seed: 7, logprobs: 0 });
    expect(hot.logprobs![0].logprob).toBeCloseTo(row[hot.new_tokens[0]] - lse, 5);
    expect(hot.logprobs![0].top_logprobs).toEqual([]);
    // None unless asked for.
    const plain = await generate(model, undefined, prompt, { maxNewTokens: 2, ignoreEos: true });
    expect(plain).not.toHaveProperty("logprobs");
    for await (const t of streamGenerate(model, undefined, prompt, { maxNewTokens: 2, ignoreEos: true }))
      expect(t).not.toHaveProperty("logprob");
    for (const bad of [-1, 21, 1.5])
      await expect(generate(model, undefined, prompt, { logprobs: bad })).rejects.toThrow(/logprobs = .* must be an integer in \[0, 20\]/);
  });

  it("logprobs come after the repetition penalty: the penalised greedy token is still the most likely", async () => {
    const penalised = await generate(model, undefined, prompt, { maxNewTokens: 16, ignoreEos: true, repetitionPenalty: 2, logprobs: 1 });
    expect(penalised.new_tokens).not.toEqual(ref.generation.new_tokens.slice(0, 16)); // the penalty changes the choice
    const off = await generate(model, undefined, prompt, { maxNewTokens: 16, ignoreEos: true, repetitionPenalty: 2 });
    expect(penalised.new_tokens).toEqual(off.new_tokens); // asking for logprobs changes nothing
    for (const t of penalised.logprobs!) expect(t.top_logprobs).toEqual([{ id: t.id, logprob: t.logprob }]);
  });

  it("logSoftmax and topIds: −Infinity kept, ties to the lower id, k past the length", () => {
    const x = Float32Array.from([1, 3, -Infinity, 3, 0, 2, 5]);
    const lp = logSoftmax(x);
    expect(lp[2]).toBe(-Infinity);
    expect(Array.from(lp).reduce((a, v) => a + Math.exp(v), 0)).toBeCloseTo(1, 6);
    expect(topIds(x, 3)).toEqual([6, 1, 3]);
    expect(topIds(x, 1)).toEqual([6]);
    expect(topIds(x, 0)).toEqual([]);
    expect(topIds(x, 10)).toEqual([6, 1, 3, 5, 0, 4, 2]);
    const big = Float32Array.from({ length: 1037 }, (_, i) => (Math.sin(i * 12.9898) * 43758.5453) % 1);
    const sorted = Array.from(big.keys()).sort((a, b) => big[b] - big[a] || a - b);
    expect(topIds(big, 17)).toEqual(sorted.slice(0, 17));
  });

  it("stops on a token id, on EOS, on a stop string", async () => {
    const first = ref.generation.new_tokens;
    const r = await generate(model, undefined, prompt, { maxNewTokens: 32, stopTokenIds: [first[3]] });
    expect(r.new_tokens).toEqual(first.slice(0, first.indexOf(first[3]) + 1));
    expect(r.finish_reason).toBe("eos");
    const full = tokenizer.decode(first);
    const stop = full.slice(10, 14);
    const s = await generate(model, codec, prompt, { maxNewTokens: 32, ignoreEos: true, stopStrings: [stop] });
    expect(s.finish_reason).toBe("stop_string");
    expect(s.text).toBe(full.slice(0, full.indexOf(stop)));
    let streamed = "";
    for await (const t of streamGenerate(model, codec, prompt, { maxNewTokens: 32, ignoreEos: true, stopStrings: [stop] }))
      streamed += t.text;
    expect(streamed).toBe(s.text);
  });

  it("bad options and prompts are clear errors", async () => {
    await expect(generate(model, undefined, prompt, { temperature: -1 })).rejects.toThrow(/temperature = -1/);
    await expect(generate(model, undefined, prompt, { topP: 1.5 })).rejects.toThrow(/topP = 1.5/);
    await expect(generate(model, undefined, prompt, { topK: 2.5 })).rejects.toThrow(/topK/);
    await expect(generate(model, undefined, [], {})).rejects.toThrow(/empty prompt/);
    await expect(generate(model, undefined, [2, 9999])).rejects.toThrow(/token id 9999/);
    await expect(generate(model, undefined, [2, -1])).rejects.toThrow(/token id -1/);
    await expect(generate(model, undefined, [2, 1.5])).rejects.toThrow(/token id 1.5/);
    const long = new Array(config.max_position_embeddings + 5).fill(5);
    await expect(generate(model, undefined, long)).rejects.toThrow(/exceeds max_position_embeddings=64/);
    const t = await generate(model, undefined, long, { truncate: true, maxNewTokens: 4 });
    expect(t.input_ids.length).toBe(config.max_position_embeddings - 4);
    expect(t.new_tokens.length).toBe(4);
    // The model is still fine afterwards.
    expect((await generate(model, undefined, prompt, { maxNewTokens: 4, ignoreEos: true })).new_tokens).toEqual(
      ref.generation.new_tokens.slice(0, 4),
    );
  });

  it("an AbortSignal stops generation, and the model is usable afterwards", async () => {
    const used = model.arena.used;
    const ac = new AbortController();
    const seen: number[] = [];
    const run = (async () => {
      for await (const t of streamGenerate(model, undefined, prompt, { maxNewTokens: 50, ignoreEos: true, signal: ac.signal })) {
        seen.push(t.id);
        if (seen.length === 3) ac.abort();
      }
    })();
    await expect(run).rejects.toThrow(/abort/i);
    expect(seen.length).toBe(3);
    expect(model.arena.used).toBe(used);
    expect((await generate(model, undefined, prompt, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(
      ref.generation.new_tokens.slice(0, 8),
    );
  });

  it("concurrent calls on one model are queued, each gets its own answer", async () => {
    const runs = await Promise.all([
      generate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true }),
      generate(model, undefined, ref.padded_batch.input_ids[1].slice(5), { maxNewTokens: 20, ignoreEos: true }),
      generate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true }),
    ]);
    expect(runs[0].new_tokens).toEqual(ref.generation.new_tokens.slice(0, 20));
    expect(runs[2].new_tokens).toEqual(ref.generation.new_tokens.slice(0, 20));
    expect(runs[1].new_tokens).toEqual(ref.padded_batch.generation.new_tokens[1].slice(0, 20));
  });
});

describe("an iterator left unread (leaseMs)", () => {
  const gen = (leaseMs: number, maxNewTokens = 20) => streamGenerate(model, undefined, prompt, { maxNewTokens, ignoreEos: true, leaseMs });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const first = (n: number) => ref.generation.new_tokens.slice(0, n);

  it("gives the model up to a waiting call after leaseMs: its cache is released and its next read throws", async () => {
    const used = model.arena.used;
    const it = gen(150);
    expect([(await it.next()).value, (await it.next()).value].map((t) => (t as { id: number }).id)).toEqual(first(2));
    expect(model.arena.used).toBeGreaterThan(used); // the KV cache
    const t0 = performance.now();
    const other = await generate(model, undefined, prompt, { maxNewTokens: 8, ignoreEos: true });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140); // it waited for the lease, not for ever
    expect(other.new_tokens).toEqual(first(8));
    await expect(it.next()).rejects.toThrow(/was not read for 150 ms while another call waited for the model .*leaseMs/);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(model.arena.used).toBe(used);
  });

  it("a call that arrives after the lease ran out gets the model at once", async () => {
    const used = model.arena.used;
    const it = gen(20);
    await it.next();
    await sleep(80); // the lease runs out with nobody waiting: nothing happens…
    expect((await generate(model, undefined, prompt, { maxNewTokens: 4, ignoreEos: true })).new_tokens).toEqual(first(4)); // …until now
    await expect(it.next()).rejects.toThrow(/not read for 20 ms/);
    expect(model.arena.used).toBe(used);
  });

  it("unread with nobody waiting, it keeps the model and resumes where it was", async () => {
    const used = model.arena.used;
    const it = gen(20, 12);
    const ids = [((await it.next()).value as { id: number }).id];
    await sleep(80);
    for (;;) {
      const r = await it.next();
      if (r.done) {
        expect(r.value.new_tokens).toEqual(first(12));
        break;
      }
      ids.push(r.value.id);
    }
    expect(ids).toEqual(first(12));
    expect(model.arena.used).toBe(used);
  });

  it("one dropped unclosed gives the model up when it is garbage-collected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const used = model.arena.used;
    await (async () => {
      const it = gen(Infinity);
      await it.next(); // holds the model, and would for ever
    })();
    for (let i = 0; i < 50 && model.arena.used !== used; i++) {
      gc();
      await sleep(10);
    }
    expect(model.arena.used).toBe(used);
    expect((await generate(model, undefined, prompt, { maxNewTokens: 4, ignoreEos: true })).new_tokens).toEqual(first(4));
  });

  it("leaseMs must be a positive number", async () => {
    for (const bad of [0, -1, Number.NaN, "5" as unknown as number]) {
      await expect(generate(model, undefined, prompt, { leaseMs: bad })).rejects.toThrow(
        /leaseMs = .* must be a number of milliseconds > 0/,
      );
    }
  });
});

describe("layers streamed one at a time", () => {
  it("gives the same logits as resident layers with one layer's memory", async () => {
    const streamed = await DecoderModel.load(config, source(), { build: "simd", residentLayers: false });
    const a = streamed.forward([prompt]).logits;
    expect(maxAbsDiff(a, model.forward([prompt]).logits).max).toBe(0);
    expect(streamed.weights.layers.length).toBe(0);
    expect(streamed.arena.used).toBeLessThan(model.arena.used);
    const g = await generate(streamed, undefined, prompt, { maxNewTokens: 32, ignoreEos: true });
    expect(g.new_tokens).toEqual(ref.generation.new_tokens);
  });
});
