// Bad and strange input into the tokenizer and `generate`: any JS string (lone surrogates, NUL,
// every Unicode plane, 1 MB), token ids that are not ids, prompts longer than the context,
// sampling options out of range. Each is either handled or ONE clear error naming the value, and
// the model is left exactly as it was (same arena, same greedy tokens) for the next call.
// test/generate.test.ts covers the first cases of each kind (temperature -1, topP 1.5, ids 9999 /
// -1 / 1.5, [], a long id prompt); this file covers the rest, with the real OPT tokenizer on the
// tiny fixture (vocab 512: most text maps to larger ids, which must be refused by id) and on the
// full-size synthetic OPT-125M (the real vocabulary).
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { SyntheticSource, syntheticConfig } from "../src/models/synthetic.js";
import { generate, type GenerateOptions, type TextCodec } from "../src/generate/index.js";
import { loadTokenizer } from "../src/tokenizer/node.js";
import { OPT_TOKENIZER_DIR } from "../src/node.js";
import { FIXTURE_DIR, reference } from "./helpers.js";

const ref = reference();
const tok = loadTokenizer(OPT_TOKENIZER_DIR);
const tinyConfig = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
let tiny: DecoderModel;
let opt125m: DecoderModel;

beforeAll(async () => {
  tiny = await DecoderModel.load(tinyConfig, openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors")))), {
    build: "simd",
    threads: 1,
  });
  const c = syntheticConfig("opt-125m");
  opt125m = await DecoderModel.load(c, new SyntheticSource(c, 0), { build: "simd", threads: 1 });
});

/** Expects a one-line Error (not a TypeError/RangeError) matching every pattern. */
async function rejectsClearly(p: Promise<unknown>, ...patterns: (string | RegExp)[]): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, "expected an error").toBeInstanceOf(Error);
  expect(err).not.toBeInstanceOf(TypeError);
  expect(err).not.toBeInstanceOf(RangeError);
  const msg = (err as Error).message;
  expect(msg).not.toMatch(/[\n\r]/);
  for (const pat of patterns) {
    if (typeof pat === "string") expect(msg).toContain(pat);
    else expect(msg).toMatch(pat);
  }
}

/** The tiny model still gives transformers' greedy tokens, with its arena where it was. */
async function stillHealthy(model: DecoderModel, used: number): Promise<void> {
  expect(model.arena.used).toBe(used);
  const r = await generate(model, undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true });
  expect(r.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
  expect(model.arena.used).toBe(used);
}

const STRINGS: [string, string][] = [
  ["empty", ""],
  ["lone high surrogate", "\uD800"],
  ["lone low surrogate mid-word", "ab\uDC00cd"],
  ["reversed pair", "\uDC00\uD800"],
  ["NUL and C0/C1 controls", "a\u0000b\u0001\u001b[31m\u007f\u0085\u009f"],
  ["BOM, zero-width and bidi controls", "\uFEFF\u200B\u200D\u202E\u2066x\u2069"],
  ["noncharacters", "\uFFFE\uFFFF\u{10FFFF}\u{1FFFE}"],
  ["combining marks", "e\u0301\u0308\u0327".repeat(50)],
  ["emoji ZWJ family and flags", "👩‍👩‍👧‍👦🏳️‍🌈🇫🇷"],
  ["special-token text", "</s><pad><s><unk><mask></s>"],
  ["whitespace only", " \t\n\r\u00a0\u3000"],
  ["CRLF lines", "line one\r\nline two\r\n"],
  ["every Unicode plane", Array.from({ length: 17 }, (_, p) => String.fromCodePoint(p * 0x10000 + 0x100, p * 0x10000 + 0xfffd)).join(" ")],
];

describe("any JS string through the OPT tokenizer and generate (synthetic OPT-125M)", () => {
  for (const [what, s] of STRINGS) {
    it(what, async () => {
      const used = opt125m.arena.used;
      const ids = tok.encode(s);
      expect(ids[0]).toBe(2);
      for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < tok.vocabSize).toBe(true);
      const r = await generate(opt125m, tok, s, { maxNewTokens: 2, ignoreEos: true });
      expect(r.input_ids).toEqual(ids);
      expect(r.new_tokens.length).toBe(2);
      expect(r.new_tokens.every((id) => id < tok.vocabSize)).toBe(true); // padding rows are never sampled
      expect(typeof r.text).toBe("string");
      expect(opt125m.arena.used).toBe(used);
    });
  }

  it("random strings, code units included, sampled or greedy (property)", async () => {
    const used = opt125m.arena.used;
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.string({ unit: codeUnit, maxLength: 24 }), fc.string({ unit: "binary", maxLength: 24 })),
        fc.option(
          fc.record({
            temperature: fc.double({ min: 0.05, max: 5, noNaN: true }),
            topP: fc.double({ min: 0.01, max: 1, noNaN: true }),
            topK: fc.nat(100),
            seed: fc.nat(),
          }),
          { nil: undefined },
        ),
        async (s, sampling) => {
          const r = await generate(opt125m, tok, s, { maxNewTokens: 1, ignoreEos: true, ...sampling });
          expect(r.new_tokens.length).toBe(1);
          expect(r.new_tokens[0]).toBeLessThan(tok.vocabSize);
        },
      ),
      { numRuns: 25 },
    );
    expect(opt125m.arena.used).toBe(used);
  });

  it("1 MB of text: a clear 'too long' error, quickly, and the model is untouched", async () => {
    const used = opt125m.arena.used;
    const mb = "The quick brown fox jumps over the lazy dog. ".repeat(23_302).slice(0, 1 << 20);
    const t0 = performance.now();
    await rejectsClearly(
      generate(opt125m, tok, mb),
      /^wasm-lm: prompt of \d{6} tokens exceeds max_position_embeddings=2048 \(pass truncate/,
    );
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(opt125m.arena.used).toBe(used);
  });
});

describe("text and ids the tiny model (vocab 512) cannot take", () => {
  const codec: TextCodec = { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids), vocabSize: 512 };

  it("a text prompt with ids ≥ 512 is refused naming the first such id and where it is", async () => {
    const used = tiny.arena.used;
    // " the" = 5, "," = 6 and " world" = 232 are in the fixture's vocabulary; " Hello" = 20920 is not.
    await rejectsClearly(generate(tiny, codec, " the, world Hello"), "token id 20920 at [0, 4] is outside the vocabulary [0, 512)");
    await rejectsClearly(generate(tiny, codec, "\uD800"), /token id \d+ at \[0, 1\] is outside the vocabulary/);
    const ok = await generate(tiny, codec, " the, world", { maxNewTokens: 3, ignoreEos: true });
    expect(ok.input_ids).toEqual([2, 5, 6, 232]);
    await stillHealthy(tiny, used);
  });

  it("1 MB of text within the vocabulary: an error, or its last 60 tokens (64 − 4 new) with truncate", async () => {
    const used = tiny.arena.used;
    const mb = " the".repeat(1 << 18); // 1 MB, 262144 tokens of id 5
    await rejectsClearly(generate(tiny, codec, mb), "prompt of 262145 tokens exceeds max_position_embeddings=64");
    const r = await generate(tiny, codec, mb, { truncate: true, maxNewTokens: 4, ignoreEos: true });
    expect(r.input_ids).toEqual(Array(60).fill(5));
    expect(r.new_tokens.length).toBe(4);
    expect(r.finish_reason).toBe("length");
    const fewer = await generate(tiny, codec, Array(60).fill(5), { maxNewTokens: 4, ignoreEos: true });
    expect(r.new_tokens).toEqual(fewer.new_tokens);
    await stillHealthy(tiny, used);
  });

  const badIds: [string, unknown[], string][] = [
    ["NaN", [2, NaN], "token id NaN at [0, 1]"],
    ["Infinity", [2, Infinity], "token id Infinity at [0, 1]"],
    ["-Infinity", [-Infinity], "token id -Infinity at [0, 0]"],
    ["the vocabulary size", [2, 512], "token id 512 at [0, 1] is outside the vocabulary [0, 512)"],
    ["2^31", [2, 2 ** 31], "token id 2147483648"],
    ["2^53 + 2", [2, 2 ** 53 + 2], "token id 9007199254740994"],
    ["-0.5", [2, -0.5], "token id -0.5"],
    ["a string", [2, "5"], "token id 5 at [0, 1]"],
    ["null", [2, null], "token id null at [0, 1]"],
    ["undefined (a hole)", [2, undefined], "token id undefined at [0, 1]"],
    ["a bigint", [2, 5n], "token id 5 at [0, 1]"],
  ];
  for (const [what, ids, msg] of badIds) {
    it(`a token id that is ${what}`, async () => {
      const used = tiny.arena.used;
      await rejectsClearly(generate(tiny, undefined, ids as number[]), msg);
      await rejectsClearly(
        Promise.resolve().then(() => tiny.forward([ids as number[]])),
        msg,
      );
      expect(tiny.arena.used).toBe(used);
    });
  }

  it("typed arrays are fine prompts; things that are not prompts are clear errors", async () => {
    const used = tiny.arena.used;
    const r = await generate(tiny, undefined, Int32Array.from(ref.input_ids) as unknown as number[], { maxNewTokens: 4, ignoreEos: true });
    expect(r.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 4));
    for (const [p, what] of [
      [undefined, "undefined"],
      [null, "null"],
      [42, "number"],
      [{ length: 2 }, "object"],
      [Symbol("x"), "symbol"],
    ] as const) {
      await rejectsClearly(
        generate(tiny, codec, p as unknown as string),
        `the prompt must be a string or an array of token ids, got ${what}`,
      );
    }
    await rejectsClearly(generate(tiny, undefined, "text"), "a text prompt needs a tokenizer");
    const silent: TextCodec = { encode: () => [], decode: () => "" };
    await rejectsClearly(generate(tiny, silent, "anything"), "empty prompt");
    await stillHealthy(tiny, used);
  });
});

describe("generation options out of range", () => {
  const bad: [string, GenerateOptions, string][] = [
    ["temperature NaN", { temperature: NaN }, "temperature = NaN is out of range"],
    ["temperature 0", { temperature: 0 }, "temperature = 0"],
    ["temperature -0", { temperature: -0 }, "temperature = 0"],
    ["temperature Infinity", { temperature: Infinity }, "temperature = Infinity"],
    ["temperature a string", { temperature: "1" as unknown as number }, "temperature = 1 is out of range"],
    ["topP 0", { topP: 0 }, "topP = 0 is out of range (in (0, 1])"],
    ["topP just above 1", { topP: 1 + 2 ** -52 }, "topP = 1.0000000000000002"],
    ["topP NaN", { topP: NaN }, "topP = NaN"],
    ["topP negative", { topP: -0.1 }, "topP = -0.1"],
    ["topK NaN", { topK: NaN }, "topK = NaN"],
    ["topK Infinity", { topK: Infinity }, "topK = Infinity"],
    ["topK -1", { topK: -1 }, "topK = -1"],
    ["repetitionPenalty 0", { repetitionPenalty: 0 }, "repetitionPenalty = 0"],
    ["repetitionPenalty NaN", { repetitionPenalty: NaN }, "repetitionPenalty = NaN"],
    ["repetitionPenalty -1", { repetitionPenalty: -1 }, "repetitionPenalty = -1"],
    ["repetitionPenalty Infinity", { repetitionPenalty: Infinity }, "repetitionPenalty = Infinity"],
    ["seed 1.5", { seed: 1.5 }, "seed = 1.5"],
    ["seed NaN", { seed: NaN }, "seed = NaN"],
    ["maxNewTokens -1", { maxNewTokens: -1 }, "maxNewTokens = -1 must be an integer ≥ 0"],
    ["maxNewTokens NaN", { maxNewTokens: NaN }, "maxNewTokens = NaN"],
    ["maxNewTokens Infinity", { maxNewTokens: Infinity }, "maxNewTokens = Infinity"],
    ["maxNewTokens 2.5", { maxNewTokens: 2.5 }, "maxNewTokens = 2.5"],
    ["stopStrings a string", { stopStrings: "stop" as unknown as string[] }, "stopStrings must be an array of non-empty strings"],
    ["stopStrings with an empty string", { stopStrings: ["x", ""] }, "stopStrings must be an array of non-empty strings"],
    ["stopStrings with a number", { stopStrings: [5 as unknown as string] }, "stopStrings must be an array"],
    ["stopTokenIds a number", { stopTokenIds: 2 as unknown as number[] }, "stopTokenIds must be an array of integer token ids"],
    ["stopTokenIds with NaN", { stopTokenIds: [2, NaN] }, "stopTokenIds must be an array"],
  ];
  for (const [what, o, msg] of bad) {
    it(what, async () => {
      const used = tiny.arena.used;
      await rejectsClearly(generate(tiny, tok, ref.input_ids, o), msg);
      expect(tiny.arena.used).toBe(used);
    });
  }

  it("extreme but valid values work", async () => {
    const used = tiny.arena.used;
    for (const o of [
      { temperature: 1e-300 },
      { temperature: 1e300 },
      { topP: Number.MIN_VALUE },
      { topK: 1e9 },
      { repetitionPenalty: 1e-300 },
      { repetitionPenalty: 1e300 },
      { seed: 2 ** 60 },
      { seed: -(2 ** 31) },
      { maxNewTokens: 0 },
    ]) {
      const r = await generate(tiny, tok, ref.input_ids, { ...o, maxNewTokens: o.maxNewTokens ?? 3, ignoreEos: true, seed: o.seed ?? 1 });
      expect(r.new_tokens.length, JSON.stringify(o)).toBe(o.maxNewTokens ?? 3);
      expect(r.new_tokens.every((id) => Number.isInteger(id) && id >= 0 && id < 512)).toBe(true);
    }
    // A near-zero temperature is greedy.
    const cold = await generate(tiny, tok, ref.input_ids, { temperature: 1e-300, seed: 3, maxNewTokens: 8, ignoreEos: true });
    expect(cold.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
    await stillHealthy(tiny, used);
  });
});
