// The batching engine: requests decoded together give exactly what each gets alone, join and
// leave between steps, are cancelled cleanly, and the queue refuses what it cannot hold.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseModelConfig } from "../src/models/families/index.js";
import { DecoderModel, type KVDType, type LoadOptions } from "../src/models/decoder.js";
import { generate } from "../src/generate/index.js";
import { Engine, EngineClosedError, QueueFullError, type EngineRequest, type EngineToken } from "../src/server/engine.js";

const dir = (name: string) => fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));
async function load(name: string, o: LoadOptions = {}) {
  const config = parseModelConfig(readFileSync(join(dir(name), "config.json"), "utf8"));
  return DecoderModel.load(config, openSafetensors(new Uint8Array(readFileSync(join(dir(name), "model.safetensors")))), {
    threads: 1,
    ...o,
  });
}

async function collect(it: AsyncGenerator<EngineToken, string>): Promise<{ ids: number[]; finish: string; tokens: EngineToken[] }> {
  const tokens: EngineToken[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { ids: tokens.map((t) => t.id), finish: r.value, tokens };
    tokens.push(r.value);
  }
}

const PROMPTS = [
  [2, 100, 200, 300],
  [2, 5, 9, 17, 33, 65, 129, 257, 400],
  [1, 7],
  [2, 44, 44, 44, 44, 44],
  [3],
  [2, 510, 3, 77, 91, 4, 18],
];

// The last field: the slots' KV-cache dtype (and generate's, alone).
const CASES: [string, LoadOptions, KVDType][] = [
  ["opt-tiny", {}, "f32"],
  ["llama-tiny", {}, "f32"],
  ["gpt2-tiny", {}, "f32"],
  ["llama-tiny", { dtype: "int8" }, "f32"],
  ["gpt2-tiny", { dtype: "f16" }, "f32"],
  ["opt-tiny", { threads: 2 }, "f32"],
  ["llama-tiny", {}, "f16"],
  ["opt-tiny", { threads: 2 }, "f16"],
];
for (const [name, o, kvDtype] of CASES) {
  describe(`engine on ${name} ${JSON.stringify(o)}${kvDtype === "f16" ? ", f16 KV cache" : ""}`, () => {
    it("concurrent greedy requests (joining at different steps) each get exactly their tokens alone", async () => {
      const model = await load(name, o);
      const alone = [];
      for (const p of PROMPTS)
        alone.push((await generate(model, undefined, p, { maxNewTokens: 12 + p.length, ignoreEos: true, kvDtype })).new_tokens);
      const engine = new Engine(model, { maxBatch: 4, ctx: 48, kvDtype });
      const runs: Promise<{ ids: number[] }>[] = [];
      for (const [i, p] of PROMPTS.entries()) {
        runs.push(collect(engine.generate({ prompt: p, maxTokens: 12 + p.length })));
        if (i % 2) await new Promise((r) => setTimeout(r, 5)); // some join while others decode
      }
      const got = await Promise.all(runs);
      got.forEach((g, i) => expect(g.ids, `prompt ${i}`).toEqual(alone[i]));
      const st = engine.stats;
      console.log(`${name}: ${st.steps} steps, mean batch ${(st.rows / st.steps).toFixed(2)}`);
      expect(st.rows / st.steps).toBeGreaterThan(1.5); // requests really were decoded together
      expect(st.active + st.queued).toBe(0);
    });

    it("seeded sampling with penalties and logprobs is the same batched and alone", async () => {
      const model = await load(name, o);
      const req = (p: number[]): EngineRequest => ({
        prompt: p,
        maxTokens: 10,
        sampling: { temperature: 0.9, topP: 0.95, topK: 40, seed: 3 },
        presencePenalty: 0.5,
        frequencyPenalty: 0.3,
        topLogprobs: 3,
      });
      const alone = [];
      for (const p of PROMPTS.slice(0, 3)) alone.push(await collect(new Engine(model, { maxBatch: 1, ctx: 32, kvDtype }).generate(req(p))));
      const engine = new Engine(model, { maxBatch: 3, ctx: 32, kvDtype });
      const together = await Promise.all(PROMPTS.slice(0, 3).map((p) => collect(engine.generate(req(p)))));
      together.forEach((t, i) => {
        expect(t.ids).toEqual(alone[i].ids);
        for (const tok of t.tokens) {
          expect(tok.logprob).toBeLessThanOrEqual(0);
          expect(tok.top).toHaveLength(3);
          expect(tok.top![0].logprob).toBeGreaterThanOrEqual(tok.top![2].logprob);
        }
      });
    });
  });
}

describe("engine limits and cancellation", () => {
  it("waiting by polling (pollMs, as in workerd) gives the same tokens as being woken", async () => {
    const model = await load("llama-tiny");
    const run = async (pollMs: number) => {
      const engine = new Engine(model, { maxBatch: 3, ctx: 40, pollMs });
      return Promise.all(PROMPTS.map((p) => collect(engine.generate({ prompt: p, maxTokens: 10 }))));
    };
    const woken = await run(0);
    const polled = await run(1);
    expect(polled.map((r) => r.ids)).toEqual(woken.map((r) => r.ids));
  });

  it("stop ids end a request with 'stop'; maxTokens and a full slot with 'length'", async () => {
    const model = await load("opt-tiny");
    const engine = new Engine(model, { maxBatch: 2, ctx: 16 });
    const first = await collect(engine.generate({ prompt: [2, 100, 200], maxTokens: 5 }));
    expect(first.finish).toBe("length");
    expect(first.ids).toHaveLength(5);
    const stopped = await collect(engine.generate({ prompt: [2, 100, 200], maxTokens: 5, stopTokenIds: [first.ids[2]] }));
    expect(stopped.ids).toEqual(first.ids.slice(0, first.ids.indexOf(first.ids[2]) + 1));
    expect(stopped.finish).toBe("stop");
    const full = await collect(engine.generate({ prompt: Array(14).fill(5), maxTokens: 50 }));
    expect(full.ids).toHaveLength(3); // 14 cached, 2 more fit, and the token chosen from the last
    expect(full.finish).toBe("length");
  });

  it("bad requests are refused at once; a full queue throws QueueFullError; cancelled requests free their slots", async () => {
    const model = await load("opt-tiny");
    const engine = new Engine(model, { maxBatch: 2, maxQueue: 1, ctx: 64 });
    const mark = model.arena.mark(); // the engine's slots are reserved once, at construction
    expect(() => engine.generate({ prompt: [], maxTokens: 1 })).toThrow("non-empty array of token ids");
    expect(() => engine.generate({ prompt: [2, 9999], maxTokens: 1 })).toThrow("token id 9999 is outside the vocabulary");
    expect(() => engine.generate({ prompt: Array(65).fill(2), maxTokens: 1 })).toThrow("more than the context of 64");
    expect(() => engine.generate({ prompt: [2], maxTokens: 1, sampling: { temperature: -1 } })).toThrow("temperature");
    const ac = [new AbortController(), new AbortController(), new AbortController()];
    const its = ac.map((a) => engine.generate({ prompt: [2, 3], maxTokens: 40, signal: a.signal }));
    expect(() => engine.generate({ prompt: [2, 3], maxTokens: 40 })).toThrow(QueueFullError);
    const firsts = await Promise.all(its.slice(0, 2).map((it) => it.next()));
    for (const f of firsts) expect(f.done).toBe(false);
    ac[0].abort(new Error("client went away"));
    await expect(collect(its[0])).rejects.toThrow("client went away");
    await its[1].return("length"); // a consumer that stops reading
    const third = await collect(its[2]); // took a freed slot
    expect(third.ids).toHaveLength(40);
    await engine.drain();
    expect(engine.stats.active + engine.stats.queued).toBe(0);
    expect(() => engine.generate({ prompt: [2], maxTokens: 1 })).toThrow(EngineClosedError);
    expect(model.arena.mark()).toBe(mark); // nothing left over per request
  });
});
