// The fast version of scripts/leak-check.ts: 200 generate calls on one tiny model — greedy,
// sampled, streamed and broken off, aborted, failing — and the arena must come back to where it
// started after every call, with a high-water mark that stops growing after the first full call.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { generate, streamGenerate } from "../src/generate/index.js";
import { FIXTURE_DIR, reference } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));

describe("200 calls on one model", () => {
  it("arena.used returns to its start after each call; highWater does not grow after the first", async () => {
    const model = await DecoderModel.load(config, openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors")))), {
      build: "simd",
      threads: 1,
    });
    const prompt: number[] = ref.input_ids;
    const start = model.arena.used;
    // The largest call of the loop first: its high-water mark is the one every later call must stay under.
    const first = await generate(model, undefined, prompt, { maxNewTokens: 32, ignoreEos: true });
    expect(first.new_tokens).toEqual(ref.generation.new_tokens);
    const high = model.arena.highWater;
    const capacity = model.arena.capacity;
    const counts = { greedy: 0, sampled: 0, streamed: 0, aborted: 0, failed: 0 };

    for (let i = 0; i < 200; i++) {
      switch (i % 5) {
        case 0: {
          const r = await generate(model, undefined, prompt, { maxNewTokens: 16, ignoreEos: true });
          expect(r.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 16));
          counts.greedy++;
          break;
        }
        case 1:
          await generate(model, undefined, prompt.slice(0, 1 + (i % prompt.length)), {
            maxNewTokens: 12,
            temperature: 0.9,
            topP: 0.9,
            seed: i,
          });
          counts.sampled++;
          break;
        case 2: {
          let n = 0;
          for await (const _ of streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true })) if (++n === 5) break;
          counts.streamed++;
          break;
        }
        case 3: {
          const ac = new AbortController();
          let n = 0;
          await expect(
            (async () => {
              for await (const _ of streamGenerate(model, undefined, prompt, { maxNewTokens: 20, ignoreEos: true, signal: ac.signal })) {
                if (++n === 1 + (i % 7)) ac.abort();
              }
            })(),
          ).rejects.toThrow(/abort/i);
          counts.aborted++;
          break;
        }
        case 4:
          await expect(generate(model, undefined, [...prompt, 512 + i])).rejects.toThrow(`token id ${512 + i}`);
          counts.failed++;
          break;
      }
      expect(model.arena.used, `call ${i}`).toBe(start);
    }
    expect(model.arena.highWater).toBe(high);
    expect(model.arena.capacity).toBe(capacity);
    expect(counts).toEqual({ greedy: 40, sampled: 40, streamed: 40, aborted: 40, failed: 40 });
    console.log(`200 calls: arena used ${start} B before and after, high-water ${high} B after the first call and the last`);
  });
});
