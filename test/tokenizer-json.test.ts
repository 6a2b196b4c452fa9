// tokenizer.json through @huggingface/tokenizers (src/tokenizer/tokenizer-json.ts), against
// transformers' reference ids for GPT-2 and against the hand-written slow tokenizer, plus a
// SentencePiece-style (Llama 2) tokenizer.json with byte fallback built by hand.
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { parseTokenizerConfig, Tokenizer } from "../src/tokenizer/index.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const GPT2 = new URL("./fixtures/gpt2-tokenizer/", import.meta.url).pathname;
const LLAMA2 = new URL("./fixtures/llama2-style-tokenizer/", import.meta.url).pathname;
const read = (dir: string, name: string) => readFileSync(join(dir, name), "utf8");

interface Case {
  text: string;
  ids: number[];
  tokens: string[];
  decoded: string;
}
const reference = JSON.parse(read(GPT2, "tokenization.json")) as { checks: Record<string, number[]>; cases: Case[] };

function streamed(t: Tokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const stream = t.createDecodeStream({ skipSpecialTokens });
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  return pieces;
}

const temp: string[] = [];
afterAll(() => temp.forEach((d) => rmSync(d, { recursive: true, force: true })));
/** A directory holding only some of a fixture's files. */
function dirWith(from: string, files: string[]): string {
  const d = mkdtempSync(join(tmpdir(), "wasm-lm-tokjson-"));
  temp.push(d);
  for (const f of files) cpSync(join(from, f), join(d, f));
  return d;
}

// One instance per form: loading parses 1.5 MB of JSON.
const fromJsonAlone = Tokenizer.fromTokenizerJson(read(GPT2, "tokenizer.json"));
const fromJsonDir = loadTokenizer(dirWith(GPT2, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]));
const fromVocabMerges = loadTokenizer(dirWith(GPT2, ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]));

describe("GPT-2: transformers' reference ids (tokenization.json)", () => {
  const forms: [string, Tokenizer][] = [
    ["tokenizer.json alone", fromJsonAlone],
    ["tokenizer.json + configs (loadTokenizer)", fromJsonDir],
    ["vocab.json + merges.txt (slow)", fromVocabMerges],
  ];
  for (const [form, t] of forms) {
    describe(form, () => {
      for (const c of reference.cases) {
        it(JSON.stringify(c.text), () => {
          // GPT-2 adds no BOS/EOS, with or without special tokens.
          expect(t.encode(c.text)).toEqual(c.ids);
          expect(t.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids);
          expect(t.tokenize(c.text)).toEqual(c.tokens);
          expect(c.ids.map((id) => t.idToToken(id))).toEqual(c.tokens);
          expect(t.decode(c.ids)).toBe(c.decoded);
          expect(streamed(t, c.ids).join("")).toBe(c.decoded);
        });
      }
      it("ids, lookups and the special token", () => {
        expect(t.encode("Hello world")).toEqual(reference.checks["Hello world"]);
        expect(t.vocabSize).toBe(50257);
        if (t !== fromJsonAlone) expect(t.eosTokenId).toBe(50256);
        expect(t.addBosToken).toBe(false);
        expect(t.isSpecialId(50256)).toBe(true);
        expect(t.isSpecialId(15496)).toBe(false);
        expect(t.tokenToId("Ġworld")).toBe(995);
        expect(t.idToToken(50257)).toBeUndefined();
        expect(t.decode([50256, 15496, 50256], { skipSpecialTokens: true })).toBe("Hello");
        expect(streamed(t, [50256, 15496, 50256], true).join("")).toBe("Hello");
      });
    });
  }

  it("the tokenizer.json alone knows <|endoftext|> (an added special token) without any config", () => {
    expect(fromJsonAlone.eosTokenId).toBeNull(); // eos is a config setting...
    expect(fromJsonAlone.encode("a<|endoftext|>b")).toEqual([64, 50256, 65]); // ...but the token is matched
    expect(fromJsonAlone.isSpecialId(50256)).toBe(true);
    expect(fromJsonDir.eosTokenId).toBe(50256);
    expect(fromJsonDir.chatStopTokenIds).toEqual([50256]);
  });

  // The library's ByteLevel pre-tokenizer uses JavaScript's \s (U+FEFF yes, U+0085 no) where the
  // Rust library's Oniguruma \s is Unicode White_Space; tokenizer-json.ts rewrites it to a Split
  // the library translates. Before that rewrite 594 of 20,000 such strings differed.
  it("agrees with the slow tokenizer on strings full of Unicode whitespace edge cases", () => {
    const unit = fc.constantFrom(
      " ",
      "  ",
      "\t",
      "\n",
      "\r\n",
      "\u000b",
      "\u000c",
      "\u001c",
      "\u0085",
      "\u00a0",
      "\u1680",
      "\u180e",
      "\u2000",
      "\u2028",
      "\u202f",
      "\u3000",
      "\ufeff",
      "\u200b",
      "a",
      "Z",
      "é",
      "1",
      "٣",
      "!",
      "'s",
      "'ll",
      "😀",
      "中",
      "\u0301",
      "-",
      "_",
      "<|endoftext|>",
    );
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit, maxLength: 20 }), fc.string({ unit: "grapheme", maxLength: 30 })), (s) => {
        expect(fromJsonAlone.encode(s)).toEqual(fromVocabMerges.encode(s));
      }),
      { numRuns: 3000 },
    );
  });

  it("streaming decode equals decode() for any id sequence, and never splits a character", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50256 }), { maxLength: 30 }), (ids) => {
        const pieces = streamed(fromJsonAlone, ids);
        const full = fromJsonAlone.decode(ids);
        expect(pieces.join("")).toBe(full);
        if (!full.includes("\uFFFD")) for (const p of pieces) expect(p).not.toContain("\uFFFD");
      }),
      { numRuns: 300 },
    );
    const emoji = fromJsonAlone.encode("👨‍👩‍👧 ❤️ Привет");
    const pieces = streamed(fromJsonAlone, emoji);
    expect(pieces.join("")).toBe("👨‍👩‍👧 ❤️ Привет");
    expect(pieces).toContain(""); // some tokens end mid-character and are held back
    for (const p of pieces) expect(p).not.toContain("\uFFFD");
  });

  it("decode refuses ids outside the vocabulary with the slow tokenizer's message", () => {
    for (const id of [50257, 1e9, -1, 1.5, Number.NaN]) {
      expect(() => fromJsonAlone.decode([15496, id])).toThrow(`decode: token id ${String(id)} is not in the vocabulary (ids 0..50256)`);
      expect(() => fromJsonAlone.createDecodeStream().push(id)).toThrow(`token id ${String(id)}`);
    }
    expect(fromJsonAlone.decode([])).toBe("");
  });

  it("lone surrogates are encoded as U+FFFD, as the slow tokenizer does", () => {
    for (const s of ["\uD800", "a\uDC00b", "😀\uD83D"]) {
      expect(fromJsonAlone.encode(s)).toEqual(fromVocabMerges.encode(s));
    }
  });
});

// A SentencePiece-converted BPE in exactly the layout of meta-llama/Llama-2-7b-hf's tokenizer.json
// (and TinyLlama's): normalizer Prepend("▁") + Replace(" " → "▁"), no pre-tokenizer, BPE with
// byte_fallback over <0x00>..<0xFF> (ids 3..258), TemplateProcessing "<s> $A", decoder
// Replace("▁" → " ") + ByteFallback + Fuse + Strip(one leading space). Its vocabulary is ours
// (test/fixtures/README.md), so no reference run exists; the expected ids below are what
// transformers' LlamaTokenizerFast (the Rust library) produces by its documented steps:
//   1. special tokens are split out first; every other piece is normalized on its own, so
//      " world" after "</s>" becomes "▁▁world" (transformers' "legacy" behaviour for such files);
//   2. BPE merges by rank: "▁Hello▁world" → ▁H, ll, ell, ▁Hell, ▁Hello, ▁w, or, ▁wor, ld, ▁world;
//   3. a piece not in the vocabulary falls back to its UTF-8 bytes: "i" → <0x69> = 3 + 0x69 = 108,
//      "😀" → F0 9F 98 80 → 243 162 155 131;
//   4. tokenizer_config.json's tokenizer_class LlamaTokenizer rebuilds the post-processor from
//      add_bos_token / add_eos_token (LlamaTokenizerFast.update_post_processor).
describe("Llama 2 style tokenizer.json (SentencePiece BPE with byte fallback)", () => {
  const t = loadTokenizer(LLAMA2);
  const HELLO = 271;
  const WORLD = 276;
  const SPACE = 259; // "▁"

  it("encodes with the BOS, merges, and byte fallback", () => {
    expect(t.encode("Hello world")).toEqual([1, HELLO, WORLD]);
    expect(t.encode("Hello world", { addSpecialTokens: false })).toEqual([HELLO, WORLD]);
    expect(t.tokenize("Hi 😀")).toEqual(["▁H", "<0x69>", "▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]);
    expect(t.encode("Hi 😀")).toEqual([1, 267, 108, SPACE, 243, 162, 155, 131]);
    expect(t.encode("")).toEqual([1]);
    expect(t.encode("Hello</s> world")).toEqual([1, HELLO, 2, SPACE, WORLD]);
    expect(t.encode(" Hello")).toEqual([1, SPACE, HELLO]);
  });

  it("special tokens and ids as transformers reports them", () => {
    expect(t.vocabSize).toBe(277);
    expect([t.unkTokenId, t.bosTokenId, t.eosTokenId, t.padTokenId]).toEqual([0, 1, 2, null]);
    expect(t.addBosToken).toBe(true);
    expect([0, 1, 2].every((id) => t.isSpecialId(id))).toBe(true);
    expect(t.isSpecialId(3)).toBe(false);
    expect(t.idToToken(108)).toBe("<0x69>");
    expect(t.tokenToId("▁world")).toBe(WORLD);
  });

  it("decodes: ▁ to spaces, bytes to characters, the first leading space stripped", () => {
    expect(t.decode([1, HELLO, WORLD])).toBe("<s> Hello world");
    expect(t.decode([1, HELLO, WORLD], { skipSpecialTokens: true })).toBe("Hello world");
    expect(t.decode([267, 108, SPACE, 243, 162, 155, 131])).toBe("Hi 😀");
    expect(t.decode([243, 162])).toBe("\uFFFD"); // an unfinished character, as TextDecoder replaces it
  });

  it("streams byte-fallback characters whole, and the pieces add up to decode()", () => {
    const ids = [267, 108, SPACE, 243, 162, 155, 131, SPACE, HELLO];
    expect(streamed(t, ids)).toEqual(["H", "i", " ", "", "", "", "😀", " ", " Hello", ""]);
    expect(streamed(t, ids).join("")).toBe(t.decode(ids));
    // With the BOS skipped, the first real token loses its leading space, as decode() does.
    expect(streamed(t, [1, HELLO, WORLD], true)).toEqual(["", "Hello", " world", ""]);
    expect(streamed(t, [243, 162])).toEqual(["", "", "\uFFFD"]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: t.vocabSize - 1 }), { maxLength: 25 }), fc.boolean(), (ids, skip) => {
        const pieces = streamed(t, ids, skip);
        const full = t.decode(ids, { skipSpecialTokens: skip });
        expect(pieces.join("")).toBe(full);
        if (!full.includes("\uFFFD")) for (const p of pieces) expect(p).not.toContain("\uFFFD");
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips any text (byte fallback covers every character; the prepended ▁ is stripped again)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (s) => {
        // "▁" (U+2581) is SentencePiece's own space marker: the Metaspace decoder turns it into a
        // space in transformers too, so text holding it does not round-trip (found by fast-check).
        fc.pre(!s.includes("<s>") && !s.includes("</s>") && !s.includes("<unk>") && !s.includes("\u2581"));
        expect(t.decode(t.encode(s), { skipSpecialTokens: true })).toBe(s);
      }),
      { numRuns: 500 },
    );
  });

  it("add_bos_token / add_eos_token in tokenizer_config.json rebuild the post-processor (LlamaTokenizer)", () => {
    const json = read(LLAMA2, "tokenizer.json");
    const config = (extra: Record<string, unknown>) =>
      parseTokenizerConfig(JSON.stringify({ ...JSON.parse(read(LLAMA2, "tokenizer_config.json")), ...extra }));
    const noBos = Tokenizer.fromTokenizerJson(json, config({ add_bos_token: false }));
    expect(noBos.encode("Hello")).toEqual([HELLO]);
    expect(noBos.addBosToken).toBe(false);
    expect(Tokenizer.fromTokenizerJson(json, config({ add_eos_token: true })).encode("Hello")).toEqual([1, HELLO, 2]);
    // Another class keeps the tokenizer.json's template (here "<s> $A") whatever the flags say.
    expect(
      Tokenizer.fromTokenizerJson(json, config({ tokenizer_class: "PreTrainedTokenizerFast", add_bos_token: false })).encode("Hello"),
    ).toEqual([1, HELLO]);
    expect(() => Tokenizer.fromTokenizerJson(json, config({ bos_token: null }))).toThrow(
      "tokenizer_config.json: add_bos_token is true but there is no bos_token",
    );
  });

  it("the legacy-free layout (Metaspace pre-tokenizer, prepend_scheme first) gives the same ids without the double ▁", () => {
    const tj = JSON.parse(read(LLAMA2, "tokenizer.json"));
    tj.normalizer = null;
    tj.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
    tj.decoder = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
    const m = Tokenizer.fromTokenizerJson(JSON.stringify(tj), parseTokenizerConfig(read(LLAMA2, "tokenizer_config.json")));
    expect(m.encode("Hello world")).toEqual([1, HELLO, WORLD]);
    expect(m.encode("Hello</s> world")).toEqual([1, HELLO, 2, WORLD]);
    expect(m.decode([HELLO, WORLD])).toBe("Hello world");
  });

  it("a config special token the vocabulary lacks gets the next id, as transformers adds it", () => {
    const config = parseTokenizerConfig(JSON.stringify({ additional_special_tokens: ["<|user|>"] }));
    const u = Tokenizer.fromTokenizerJson(read(LLAMA2, "tokenizer.json"), config);
    expect(u.tokenToId("<|user|>")).toBe(277);
    expect(u.vocabSize).toBe(278);
    expect(u.encode("Hello<|user|>", { addSpecialTokens: false })).toEqual([HELLO, 277]);
    expect(u.decode([HELLO, 277], { skipSpecialTokens: true })).toBe("Hello");
  });
});

describe("tokenizer.json errors are one line naming the file", () => {
  const bad: [unknown, string][] = [
    [{ model: { type: "BPE", vocab: { a: -1 }, merges: [] } }, 'tokenizer.json: value for "a" is not a non-negative integer'],
    [
      { model: { type: "BPE", vocab: { a: 0 }, merges: [] }, pre_tokenizer: { type: "Nope" } },
      "tokenizer.json: cannot be built: Unknown PreTokenizer type: Nope",
    ],
    [
      { model: { type: "BPE", vocab: { a: 0 }, merges: [] }, decoder: { type: "Nope" } },
      "tokenizer.json: cannot be built: Unknown Decoder type: Nope",
    ],
    [
      { model: { type: "BPE", vocab: { a: 0 }, merges: [] }, added_tokens: [{ id: 1 }] },
      "tokenizer.json: added_tokens[0].content must be a non-empty string",
    ],
  ];
  for (const [json, message] of bad) {
    it(message, () => {
      let error: unknown;
      try {
        Tokenizer.fromTokenizerJson(JSON.stringify(json));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain(message);
      expect((error as Error).message).not.toContain("\n");
    });
  }

  it("a symbol the vocabulary lacks, with no unk token, is dropped (as the Rust library does); with one it is unk", () => {
    const t = Tokenizer.fromTokenizerJson(JSON.stringify({ model: { type: "BPE", vocab: { a: 0 }, merges: [] } }));
    expect(t.encode("aba")).toEqual([0, 0]);
    const u = Tokenizer.fromTokenizerJson(
      JSON.stringify({ model: { type: "BPE", vocab: { a: 0, "<unk>": 1 }, merges: [], unk_token: "<unk>" } }),
    );
    expect(u.encode("aba")).toEqual([0, 1, 0]);
  });
});
