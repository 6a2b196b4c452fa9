import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tokenizer, parseMergesTxt, parseTokenizerConfig, parseTokenizerJson, parseVocabJson } from "../src/tokenizer/index.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const FIXTURES = new URL("./fixtures/opt-tokenizer/", import.meta.url).pathname;
const SHIPPED = new URL("../tokenizers/opt/", import.meta.url).pathname;
const read = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

interface Case {
  text: string;
  ids: number[];
  ids_no_special: number[];
  tokens: string[];
  decoded: string;
}
const reference = JSON.parse(read("tokenization.json")) as {
  notes: string[];
  checks: Record<string, unknown>;
  cases: Case[];
};
const caseOf = (prefix: string) => reference.cases.find((c) => c.text.startsWith(prefix))!;

// One instance for the whole file: loading parses 1.3 MB of JSON and merges.
const tok = loadTokenizer(FIXTURES);
const vocabJson = read("vocab.json");
const mergesTxt = read("merges.txt");

function decodeStreamed(t: Tokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const stream = t.createDecodeStream({ skipSpecialTokens });
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  return pieces;
}

describe("reference tokenizations (transformers' slow GPT2Tokenizer, OPT settings)", () => {
  for (const c of reference.cases) {
    it(JSON.stringify(c.text), () => {
      expect(tok.encode(c.text)).toEqual(c.ids);
      expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids_no_special);
      expect(tok.tokenize(c.text)).toEqual(c.tokens);
      expect(c.ids_no_special.map((id) => tok.idToToken(id))).toEqual(c.tokens);
      expect(tok.decode(c.ids_no_special)).toBe(c.decoded);
      const withoutSpecials = c.decoded.replaceAll("</s>", "").replaceAll("<pad>", "");
      expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(withoutSpecials);
      expect(tok.decode(c.ids)).toBe("</s>" + c.decoded);
      expect(decodeStreamed(tok, c.ids_no_special).join("")).toBe(c.decoded);
    });
  }

  it("matches the `checks` ids asserted in transformers' own tests", () => {
    const checks = reference.checks;
    expect(tok.encode("A photo of a cat")).toEqual(checks["A photo of a cat"]);
    expect(tok.tokenToId("bos")).toBe(checks["vocab[bos]"]);
    const hello = tok.encode("Hello world! cécé herlolip 418", { addSpecialTokens: false });
    expect(hello.slice(0, 9)).toEqual(checks["Hello world! cécé herlolip 418 (no special, first 9)"]);
  });

  it("splits out only OPT's configured special tokens, keeping the whitespace around them", () => {
    // tokenization.json's notes say <s> and <unk> are matched too, but its own case shows the
    // slow tokenizer only splits the configured tokens (</s> as bos/eos/unk, <pad>): "<s>" and
    // "<unk>" go through BPE. The data wins. The space after </s> stays a separate "Ġ".
    const c = caseOf("<s>literal");
    expect(c.tokens).toEqual(["<", "s", ">", "lit", "eral", "Ġspecial", "Ġtokens", "</s>", "Ġ", "<pad>", "Ġ<", "unk", ">"]);
    expect(tok.tokenize(c.text)).toEqual(c.tokens);
    expect(tok.encode("</s></s><pad>", { addSpecialTokens: false })).toEqual([2, 2, 1]);
    expect(tok.encode("x</s>", { addSpecialTokens: false })).toEqual([1178, 2]);
  });

  it("the package's shipped tokenizers/opt gives the same ids", () => {
    const shipped = loadTokenizer(SHIPPED);
    for (const c of reference.cases) expect(shipped.encode(c.text)).toEqual(c.ids);
  });
});

describe("special tokens and lookups", () => {
  it("exposes OPT's ids", () => {
    expect(tok.vocabSize).toBe(50265);
    expect(tok.bosTokenId).toBe(2);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.padTokenId).toBe(1);
    expect(tok.unkTokenId).toBe(2);
    expect(tok.idToToken(2)).toBe("</s>");
    expect(tok.idToToken(0)).toBe("<s>");
    expect(tok.idToToken(50264)).toBe("<mask>");
    expect(tok.idToToken(50265)).toBeUndefined();
    expect(tok.idToToken(-1)).toBeUndefined();
    expect(tok.tokenToId("<pad>")).toBe(1);
    expect(tok.tokenToId("Ġworld")).toBe(232);
    expect(tok.tokenToId("no such token")).toBeUndefined();
  });

  it("skipSpecialTokens drops </s> and <pad> but, like the reference, not <s> (not special for OPT)", () => {
    expect(tok.decode([2, 31414, 1, 2])).toBe("</s>Hello<pad></s>");
    expect(tok.decode([2, 31414, 1, 2], { skipSpecialTokens: true })).toBe("Hello");
    expect(tok.decode([0, 31414], { skipSpecialTokens: true })).toBe("<s>Hello");
    expect(decodeStreamed(tok, [2, 31414, 1, 2], true).join("")).toBe("Hello");
  });

  it("decode accepts typed arrays", () => {
    expect(tok.decode(Int32Array.from([31414, 232]))).toBe("Hello world");
  });

  it("cleanUpTokenizationSpaces is off by default and available on request", () => {
    const ids = tok.encode("Yes . No ! I 'm", { addSpecialTokens: false });
    expect(tok.decode(ids)).toBe("Yes . No ! I 'm");
    expect(tok.decode(ids, { cleanUpTokenizationSpaces: true })).toBe("Yes. No! I'm");
  });

  it("decode throws a clear error naming an id outside the vocabulary", () => {
    for (const id of [50265, 1e9, -1, 1.5, Number.NaN]) {
      expect(() => tok.decode([31414, id])).toThrow(`token id ${String(id)} is not in the vocabulary`);
      expect(() => tok.createDecodeStream().push(id)).toThrow(`token id ${String(id)}`);
    }
  });
});

describe("streaming decode", () => {
  for (const prefix of ["emoji", "Привет"]) {
    it(`never emits a broken character: ${prefix}`, () => {
      const c = caseOf(prefix);
      const pieces = decodeStreamed(tok, c.ids);
      expect(pieces.join("")).toBe(tok.decode(c.ids));
      for (const p of pieces) expect(p).not.toContain("\uFFFD");
      // Some tokens end mid-character, so some pushes must have held their bytes back.
      expect(pieces.slice(1, -1)).toContain("");
    });
  }

  it("flushes an unfinished character as U+FFFD, as decode does", () => {
    const ids = tok.encode("😀", { addSpecialTokens: false }).slice(0, -1); // drop the last byte(s)
    const pieces = decodeStreamed(tok, ids);
    expect(pieces.slice(0, -1).join("")).toBe("");
    expect(pieces.join("")).toBe(tok.decode(ids));
    expect(tok.decode(ids)).toBe("\uFFFD");
  });

  it("equals decode() for any id sequence, including invalid UTF-8", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: tok.vocabSize - 1 }), { maxLength: 30 }), (ids) => {
        const pieces = decodeStreamed(tok, ids);
        const full = tok.decode(ids);
        expect(pieces.join("")).toBe(full);
        if (!full.includes("\uFFFD")) for (const p of pieces) expect(p).not.toContain("\uFFFD");
      }),
      { numRuns: 500 },
    );
  });
});

describe("input robustness", () => {
  it("encodes lone surrogates as U+FFFD (documented choice; Python's reference fails on them)", () => {
    for (const s of ["\uD800", "a\uDC00b", "\uDBFF\uD800x", "😀\uD83D"]) {
      const expected = s.replace(/[\uD800-\uDFFF]/gu, "\uFFFD");
      expect(tok.encode(s)).toEqual(tok.encode(expected));
      expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(expected);
    }
  });

  it("handles NUL and control characters", () => {
    const s = "a\0b\u0001\u001f\u007f\u0085\ufeff";
    expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
  });

  it("round-trips code points from every Unicode plane", () => {
    const cps: number[] = [];
    for (let plane = 0; plane <= 16; plane++) {
      for (const low of [0x0000, 0x0041, 0x1234, 0xd7ff, 0xe000, 0xfffd, 0xffff]) {
        const cp = plane * 0x10000 + low;
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        cps.push(cp);
      }
    }
    const s = String.fromCodePoint(...cps);
    const ids = tok.encode(s, { addSpecialTokens: false });
    expect(tok.decode(ids)).toBe(s);
    expect(decodeStreamed(tok, ids).join("")).toBe(s);
  });

  describe("1 MB inputs finish fast (BPE is O(n log n) on one huge word)", () => {
    const MB = 1 << 20;
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const inputs: [string, () => string][] = [
      ["English prose", () => "The quick brown fox jumps over the lazy dog. ".repeat(MB / 45 + 1).slice(0, MB)],
      ["one letter, no spaces", () => "a".repeat(MB)],
      ["random letters, no spaces", () => Array.from({ length: MB }, () => String.fromCharCode(97 + rand(26))).join("")],
      ["random CJK, no spaces (3 bytes each)", () => Array.from({ length: MB }, () => String.fromCharCode(0x4e00 + rand(20000))).join("")],
      ["random digits", () => Array.from({ length: MB }, () => String.fromCharCode(48 + rand(10))).join("")],
      ["spaces only", () => " ".repeat(MB)],
    ];
    for (const [name, make] of inputs) {
      it(name, { timeout: 30_000 }, () => {
        const text = make();
        const t0 = performance.now();
        const ids = tok.encode(text, { addSpecialTokens: false });
        const encodeMs = performance.now() - t0;
        const t1 = performance.now();
        const back = tok.decode(ids);
        const decodeMs = performance.now() - t1;
        console.log(
          `1 MB ${name}: ${text.length} chars -> ${ids.length} tokens, encode ${encodeMs.toFixed(0)} ms, decode ${decodeMs.toFixed(0)} ms`,
        );
        expect(back).toBe(text);
        expect(encodeMs).toBeLessThan(5000);
      });
    }
  });
});

describe("property-based", () => {
  const specialFree = (s: string) => !s.includes("</s>") && !s.includes("<pad>");
  const wellFormed = (s: string) => !/[\uD800-\uDFFF]/u.test(s);
  // Pieces that exercise the pre-tokenizer's edges: contractions, whitespace runs, specials.
  const tricky = fc.constantFrom(
    " ",
    "  ",
    "\n",
    "\t",
    "\u0085",
    "\u00a0",
    "\ufeff",
    "'s",
    "'ll",
    "'",
    "a",
    "é",
    "😀",
    "1",
    "!",
    "<",
    "/s>",
    "</s>",
    "<pad>",
  );
  const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
  const anyString = fc.oneof(
    fc.string({ unit: "binary", maxLength: 60 }),
    fc.string({ unit: "grapheme", maxLength: 60 }),
    fc.string({ unit: codeUnit, maxLength: 60 }), // includes lone surrogates
    fc.string({ unit: tricky, maxLength: 30 }),
  );

  it("decode(encode(s)) === s for well-formed strings without special-token text", () => {
    fc.assert(
      fc.property(
        anyString.filter((s) => wellFormed(s) && specialFree(s)),
        (s) => {
          expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
          expect(tok.decode(tok.encode(s), { skipSpecialTokens: true })).toBe(s);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("encode never throws, and every id decodes", () => {
    fc.assert(
      fc.property(anyString, (s) => {
        const ids = tok.encode(s);
        expect(ids[0]).toBe(2);
        for (const id of ids) expect(id >= 0 && id < tok.vocabSize).toBe(true);
        tok.decode(ids);
      }),
      { numRuns: 2000 },
    );
  });

  it("special-token text round-trips too (it maps to the same characters)", () => {
    fc.assert(
      fc.property(fc.string({ unit: tricky, maxLength: 30 }), (s) => {
        expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
      }),
    );
  });
});

// OPT's vocabulary as a tokenizer.json, through @huggingface/tokenizers (the GPT-2 fixture's real
// tokenizer.json is tested in tokenizer-json.test.ts). OPT's repositories ship no tokenizer.json;
// transformers' conversion would register the config's special tokens, as these tests pass it.
describe("tokenizer.json", () => {
  const vocab = JSON.parse(vocabJson) as Record<string, number>;
  const optConfig = parseTokenizerConfig(read("tokenizer_config.json"));
  const merges = parseMergesTxt(mergesTxt);
  const optTemplate = {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "</s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    special_tokens: { "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] } },
  };
  const tokenizerJson = (model: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      version: "1.0",
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: optTemplate,
      decoder: { type: "ByteLevel" },
      model: { type: "BPE", dropout: null, vocab, merges: merges.map(([a, b]) => `${a} ${b}`), ...model },
      ...extra,
    });

  it("reproduces every reference case, with merges as strings or as pairs", () => {
    for (const form of ["strings", "arrays"]) {
      const m = form === "strings" ? {} : { merges: merges.map(([a, b]) => [a, b]) };
      const t = Tokenizer.fromTokenizerJson(tokenizerJson(m), optConfig);
      for (const c of reference.cases) {
        expect(t.encode(c.text)).toEqual(c.ids);
        expect(t.decode(c.ids_no_special)).toBe(c.decoded);
      }
      expect(t.vocabSize).toBe(50265);
    }
  });

  it("reads add-BOS from the post_processor: ByteLevel means none", () => {
    const t = Tokenizer.fromTokenizerJson(tokenizerJson({}, { post_processor: { type: "ByteLevel" } }));
    expect(t.encode("Hello")).toEqual([31414]);
  });

  it("added_tokens are matched literally, get their ids, and honour rstrip / lstrip", () => {
    const added = [
      { id: 50265, content: "<|user|>", special: true, lstrip: false, rstrip: false, single_word: false, normalized: false },
      { id: 50266, content: "[EAT]", special: false, lstrip: true, rstrip: true, single_word: false, normalized: false },
    ];
    const t = Tokenizer.fromTokenizerJson(tokenizerJson({}, { added_tokens: added }), optConfig);
    expect(t.vocabSize).toBe(50267);
    expect(t.encode("<|user|>Hello")).toEqual([2, 50265, 31414]);
    expect(t.encode("Hello  [EAT]  world", { addSpecialTokens: false })).toEqual([31414, 50266, 8331]);
    expect(t.idToToken(50265)).toBe("<|user|>");
    expect(t.tokenToId("[EAT]")).toBe(50266);
    expect(t.decode([50265, 31414])).toBe("<|user|>Hello");
    expect(t.decode([50265, 31414, 50266], { skipSpecialTokens: true })).toBe("Hello[EAT]");
  });
});

describe("configuration files", () => {
  it("tokenizer_config.json: add_bos_token and AddedToken objects", () => {
    const config = parseTokenizerConfig(
      JSON.stringify({
        add_bos_token: false,
        bos_token: { __type: "AddedToken", content: "</s>", lstrip: false, rstrip: false, single_word: false, normalized: true },
        pad_token: "<pad>",
        mask_token: "<mask>",
      }),
    );
    const t = Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt, config);
    expect(t.encode("Hello")).toEqual([31414]);
    expect(t.encode("a<mask>", { addSpecialTokens: false })).toEqual([102, 50264]);
    expect(t.decode([31414, 50264], { skipSpecialTokens: true })).toBe("Hello");
  });

  it("a special token missing from the vocabulary gets the next id, as in transformers", () => {
    const t = Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt, { additionalSpecialTokens: ["<|sep|>"] });
    expect(t.tokenToId("<|sep|>")).toBe(50265);
    expect(t.vocabSize).toBe(50266);
    expect(t.encode("a<|sep|>b", { addSpecialTokens: false })).toEqual([102, 50265, 428]);
  });

  it("null removes a default special token", () => {
    const t = Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt, { padToken: null });
    expect(t.padTokenId).toBeNull();
    expect(t.encode("<pad>", { addSpecialTokens: false })).not.toEqual([1]);
  });

  it("add_prefix_space tokenizes as if the text started with a space", () => {
    const t = Tokenizer.fromVocabAndMerges(vocabJson, mergesTxt, { addPrefixSpace: true });
    expect(t.tokenize("Hello")).toEqual(["ĠHello"]);
  });
});

describe("loadTokenizer(dir)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "wasm-lm-tok-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = () => {
    const d = mkdtempSync(join(dir, "d-"));
    return d;
  };

  it("reads vocab.json + merges.txt and the config files", () => {
    const d = fresh();
    writeFileSync(join(d, "vocab.json"), vocabJson);
    writeFileSync(join(d, "merges.txt"), mergesTxt);
    writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify({ add_bos_token: false }));
    expect(loadTokenizer(d).encode("Hello")).toEqual([31414]);
    // special_tokens_map.json overrides tokenizer_config.json key by key
    writeFileSync(join(d, "special_tokens_map.json"), JSON.stringify({ pad_token: null }));
    expect(loadTokenizer(d).padTokenId).toBeNull();
  });

  it("prefers tokenizer.json, whose own post-processor (here none) decides about a BOS", () => {
    const d = fresh();
    writeFileSync(join(d, "vocab.json"), "this would fail");
    writeFileSync(
      join(d, "tokenizer.json"),
      JSON.stringify({ model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2, "</s>": 3 }, merges: ["a b"] } }),
    );
    const t = loadTokenizer(d);
    expect(t.encode("abab")).toEqual([2, 2]);
    expect(t.encode("ba", { addSpecialTokens: false })).toEqual([1, 0]);
  });

  it("fails clearly on a directory without tokenizer files", () => {
    expect(() => loadTokenizer(fresh())).toThrow(/no tokenizer in ".*" \(expected tokenizer.json, or vocab.json and merges.txt\)/);
  });

  it("names the directory and file of a malformed file", () => {
    const d = fresh();
    writeFileSync(join(d, "vocab.json"), vocabJson);
    expect(() => loadTokenizer(d)).toThrow("vocab.json given without merges.txt");
    writeFileSync(join(d, "merges.txt"), "#version: 0.2\nĠ t\nbad\n");
    expect(() => loadTokenizer(d)).toThrow(
      `loadTokenizer(${JSON.stringify(d)}): merges.txt: line 3 is not two space-separated symbols: "bad"`,
    );
  });
});

describe("malformed files give one-line errors naming the file", () => {
  const expectError = (fn: () => unknown, message: string | RegExp) => {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    const text = (error as Error).message;
    expect(text).not.toContain("\n");
    if (typeof message === "string") expect(text).toBe(message);
    else expect(text).toMatch(message);
  };

  it("vocab.json", () => {
    expectError(() => parseVocabJson("{not json"), /^vocab\.json: not valid JSON \(.+\)$/);
    expectError(() => parseVocabJson("[1,2]"), "vocab.json: the top level must be an object of token string -> id, got an array");
    expectError(() => parseVocabJson("null"), /^vocab\.json: the top level must be an object/);
    expectError(() => parseVocabJson('{"abc": -1}'), 'vocab.json: value for "abc" is not a non-negative integer (got number -1)');
    expectError(() => parseVocabJson('{"abc": "1"}'), 'vocab.json: value for "abc" is not a non-negative integer (got the string "1")');
    expectError(() => parseVocabJson('{"abc": 1.5}'), /value for "abc" is not a non-negative integer/);
    expectError(() => parseVocabJson('{"a": 0, "b": 0}'), 'vocab.json: id 0 is used by both "a" and "b"');
    expectError(() => parseVocabJson('{"a": 1e12}'), /^vocab\.json: value for "a" is 1000000000000, above the supported maximum id/);
    expectError(() => parseVocabJson("{}"), "vocab.json: the top level is empty");
    expectError(() => Tokenizer.fromVocabAndMerges('{"a\\nb": -1}', ""), /^vocab\.json: value for "a\\nb"/);
  });

  it("merges.txt", () => {
    expect(parseMergesTxt("#version: 0.2\na b\r\nab c\n\n")).toEqual([
      ["a", "b"],
      ["ab", "c"],
    ]);
    expect(parseMergesTxt("a b")).toEqual([["a", "b"]]);
    expect(parseMergesTxt("")).toEqual([]);
    expectError(() => parseMergesTxt("#version: 0.2\na b c\n"), 'merges.txt: line 2 is not two space-separated symbols: "a b c"');
    expectError(() => parseMergesTxt("ab\n"), 'merges.txt: line 1 is not two space-separated symbols: "ab"');
    expectError(() => parseMergesTxt("a  b\n"), /^merges\.txt: line 1 is not two/);
    expectError(() => parseMergesTxt("a b\n\nc d\n"), 'merges.txt: line 2 is not two space-separated symbols: ""');
    expectError(() => parseMergesTxt("a b\n\tc\n"), 'merges.txt: line 2 is not two space-separated symbols: "\\tc"');
    // The line scanner's edges: a space at either end, a bare CR line, a header-less first line, CRLF at the end.
    expectError(() => parseMergesTxt("a b\nc \n"), 'merges.txt: line 2 is not two space-separated symbols: "c "');
    expectError(() => parseMergesTxt(" b\n"), 'merges.txt: line 1 is not two space-separated symbols: " b"');
    expectError(() => parseMergesTxt("a b\r\n\r\nc d"), 'merges.txt: line 2 is not two space-separated symbols: ""');
    expect(parseMergesTxt("#version x\r\na b\r\n\r\n")).toEqual([["a", "b"]]);
    expect(parseMergesTxt("#ver b\nc d")).toEqual([
      ["#ver", "b"],
      ["c", "d"],
    ]);
  });

  it("tokenizer.json", () => {
    const model = { type: "BPE", vocab: { a: 0 }, merges: [] };
    const json = (root: unknown) => JSON.stringify(root);
    expectError(() => parseTokenizerJson("nope"), /^tokenizer\.json: not valid JSON/);
    expectError(() => parseTokenizerJson("[]"), "tokenizer.json: expected a JSON object at the top level, got an array");
    expectError(() => parseTokenizerJson(json({})), 'tokenizer.json: missing "model" object');
    expectError(
      () => parseTokenizerJson(json({ model: { ...model, type: "WordLevel" } })),
      'tokenizer.json: model.type is the string "WordLevel", supported: "BPE", "Unigram", "WordPiece"',
    );
    expectError(
      () => parseTokenizerJson(json({ model: { ...model, type: "Unigram" } })),
      "tokenizer.json: model.vocab of a Unigram model must be a non-empty array of [piece, score]",
    );
    expectError(
      () => parseTokenizerJson(json({ model: { vocab: {}, merges: [] } })),
      'tokenizer.json: missing model.type (expected one of "BPE", "Unigram", "WordPiece")',
    );
    expectError(() => parseTokenizerJson(json({ model: { type: "BPE", merges: [] } })), "tokenizer.json: missing model.vocab");
    expectError(() => parseTokenizerJson(json({ model: { type: "BPE", vocab: { a: 0 } } })), "tokenizer.json: missing model.merges");
    expectError(
      () => parseTokenizerJson(json({ model: { ...model, vocab: { a: "x" } } })),
      /^tokenizer\.json: value for "a" is not a non-negative integer/,
    );
    expectError(() => parseTokenizerJson(json({ model: { ...model, merges: "a b" } })), /^tokenizer\.json: model\.merges must be an array/);
    expectError(
      () => parseTokenizerJson(json({ model: { ...model, merges: ["a b", ["a"]] } })),
      /^tokenizer\.json: model\.merges\[1\] is not "left right" or \["left", "right"\]/,
    );
    expectError(() => parseTokenizerJson(json({ model: { ...model, merges: ["abc"] } })), /^tokenizer\.json: model\.merges\[0\]/);
    expectError(
      () => parseTokenizerJson(json({ model, added_tokens: [{ id: -3, content: "x" }] })),
      /^tokenizer\.json: added_tokens\[0\]\.id is not a non-negative integer/,
    );
    expectError(
      () => parseTokenizerJson(json({ model, added_tokens: [{ id: 5 }] })),
      "tokenizer.json: added_tokens[0].content must be a non-empty string",
    );
    expectError(
      () => parseTokenizerJson(json({ model, pre_tokenizer: "Metaspace" })),
      'tokenizer.json: pre_tokenizer must be null or an object with a "type" (got the string "Metaspace")',
    );
    expectError(
      () => Tokenizer.fromTokenizerJson(json({ model, normalizer: { type: "NoSuchNormalizer" } })),
      "tokenizer.json: cannot be built: Unknown Normalizer type: NoSuchNormalizer",
    );
  });

  it("tokenizer_config.json / special_tokens_map.json", () => {
    expectError(() => parseTokenizerConfig("{"), /^tokenizer_config\.json: not valid JSON/);
    expectError(() => parseTokenizerConfig('{"add_bos_token": "yes"}'), "tokenizer_config.json: add_bos_token must be true or false");
    expectError(
      () => parseTokenizerConfig('{"pad_token": 5}', "special_tokens_map.json"),
      /^special_tokens_map\.json: pad_token must be a string or an object with "content"/,
    );
    expectError(
      () => parseTokenizerConfig('{"bos_token": {"content": ""}}'),
      "tokenizer_config.json: bos_token.content must be a non-empty string",
    );
  });
});
