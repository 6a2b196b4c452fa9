// Property tests for the readers of small untrusted JSON/text files: config.json (parseOptConfig),
// the tokenizer files and shard indexes. Any input either parses or throws a plain Error whose one-line
// message starts with the file's name and says which field is wrong — never a TypeError or
// RangeError from inside the reader. Valid configs round-trip. (The checkpoint readers' properties
// are in formats.property.test.ts, the tokenizer's encode/decode ones in tokenizer.test.ts; the
// prototype-named values are covered by hostile.test.ts.)
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseOptConfig, optDims, type OptConfig } from "../src/models/families/index.js";
import { parseShardIndex } from "../src/formats/multi.js";
import { CheckpointError } from "../src/formats/types.js";
import { parseMergesTxt, parseTokenizerJson, parseVocabJson } from "../src/tokenizer/files.js";
import { parseTokenizerConfig } from "../src/tokenizer/config.js";
import { Tokenizer } from "../src/tokenizer/tokenizer.js";

const FIELDS = [
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "ffn_dim",
  "max_position_embeddings",
  "word_embed_proj_dim",
  "do_layer_norm_before",
  "_remove_final_layer_norm",
  "activation_function",
  "enable_bias",
  "layer_norm_elementwise_affine",
  "tie_word_embeddings",
  "pad_token_id",
  "bos_token_id",
  "eos_token_id",
] as const;

/** Runs `f`; returns true if it parsed, false if it threw a clear one-line Error starting with `label: `. */
function parsesOrRefuses(f: () => unknown, label: string, mustName?: RegExp): boolean {
  try {
    f();
    return true;
  } catch (e) {
    // A TypeError/RangeError/SyntaxError here is a bug in the reader: fast-check shrinks and reports it.
    if (!(e instanceof Error) || (e.constructor !== Error && !(e instanceof CheckpointError))) throw e;
    expect(e.message.startsWith(`${label}: `), e.message).toBe(true);
    expect(e.message, e.message).not.toMatch(/[\n\r\u2028\u2029]/);
    if (mustName) expect(e.message, e.message).toMatch(mustName);
    return false;
  }
}

// Keys like "toString" or "__proto__" are kept out here: hostile.test.ts covers them.
const key = fc.string({ maxLength: 12 }).filter((k) => !(k in Object.prototype) && k !== "__proto__");
const json = fc.jsonValue({ maxDepth: 3 }).filter((v) => !JSON.stringify(v)?.match(/"(toString|valueOf|__proto__|constructor)"/));

const validConfig: fc.Arbitrary<OptConfig> = fc
  .record({
    heads: fc.integer({ min: 1, max: 64 }),
    headDim: fc.integer({ min: 1, max: 256 }),
    vocab: fc.integer({ min: 3, max: 1 << 20 }),
  })
  .chain(({ heads, headDim, vocab }) =>
    fc.record({
      vocab_size: fc.constant(vocab),
      hidden_size: fc.constant(heads * headDim),
      num_hidden_layers: fc.integer({ min: 1, max: 128 }),
      num_attention_heads: fc.constant(heads),
      ffn_dim: fc.integer({ min: 1, max: 1 << 16 }),
      max_position_embeddings: fc.integer({ min: 1, max: 1 << 16 }),
      word_embed_proj_dim: fc.integer({ min: 1, max: 1 << 14 }),
      do_layer_norm_before: fc.boolean(),
      _remove_final_layer_norm: fc.boolean(),
      activation_function: fc.constantFrom("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish"),
      enable_bias: fc.boolean(),
      layer_norm_elementwise_affine: fc.boolean(),
      tie_word_embeddings: fc.boolean(),
      pad_token_id: fc.integer({ min: 0, max: vocab - 1 }),
      bos_token_id: fc.integer({ min: 0, max: vocab - 1 }),
      eos_token_id: fc.integer({ min: 0, max: vocab - 1 }),
    }),
  );

describe("parseOptConfig properties", () => {
  it("valid configs round-trip through JSON, with extra keys ignored and derived sizes consistent", () => {
    fc.assert(
      fc.property(
        validConfig,
        fc.dictionary(
          key.filter((k) => !(FIELDS as readonly string[]).includes(k) && k !== "model_type"),
          json,
          { maxKeys: 4 },
        ),
        (c, extra) => {
          const parsed = parseOptConfig(JSON.stringify({ ...extra, model_type: "opt", ...c }));
          expect(parsed).toEqual(c);
          expect(parseOptConfig(parsed)).toEqual(parsed);
          const d = optDims(parsed);
          expect(d.H * d.D).toBe(d.C);
          expect(d.P).toBe(c.max_position_embeddings + 2);
          expect(d.project).toBe(c.word_embed_proj_dim !== c.hidden_size);
          expect(d.finalNorm).toBe(c.do_layer_norm_before && !c._remove_final_layer_norm);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("omitted optional fields take transformers' defaults", () => {
    fc.assert(
      fc.property(validConfig, fc.subarray([...FIELDS.slice(6)]), (c, drop) => {
        const raw: Record<string, unknown> = { ...c };
        for (const k of drop) delete raw[k];
        const p = parseOptConfig(raw);
        const defaults: Partial<OptConfig> = {
          word_embed_proj_dim: c.hidden_size,
          do_layer_norm_before: true,
          _remove_final_layer_norm: false,
          activation_function: "relu",
          enable_bias: true,
          layer_norm_elementwise_affine: true,
          tie_word_embeddings: true,
          pad_token_id: 1,
          bos_token_id: 2,
          eos_token_id: 2,
        };
        for (const k of FIELDS) {
          const want = drop.includes(k) ? defaults[k] : c[k];
          expect(p[k]).toBe(want);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("one or more fields replaced by any JSON value: parses, or an Error naming a field", () => {
    const fieldName = new RegExp(`\\b(${FIELDS.join("|")}|model_type)\\b`);
    fc.assert(
      fc.property(validConfig, fc.dictionary(fc.constantFrom(...FIELDS, "model_type"), json, { minKeys: 1, maxKeys: 4 }), (c, bad) => {
        parsesOrRefuses(() => parseOptConfig(JSON.stringify({ ...c, ...bad }), "cfg.json"), "cfg.json", fieldName);
        parsesOrRefuses(() => parseOptConfig({ ...c, ...bad }, "cfg.json"), "cfg.json", fieldName);
      }),
      { numRuns: 2000 },
    );
  });

  it("any JSON value or any text: parses, or a one-line Error naming the file", () => {
    fc.assert(
      fc.property(fc.oneof(json, fc.dictionary(key, json)), (v) => {
        parsesOrRefuses(() => parseOptConfig(JSON.stringify(v) ?? "null", "cfg.json"), "cfg.json");
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        parsesOrRefuses(() => parseOptConfig(text, "cfg.json"), "cfg.json");
      }),
      { numRuns: 500 },
    );
  });
});

describe("tokenizer and shard-index files: parse or a one-line Error naming the file", () => {
  const ids = fc.oneof(fc.integer({ min: -2, max: 600 }), json);
  const vocab = fc.dictionary(
    fc.string({ minLength: 1, maxLength: 4 }).filter((k) => k !== "__proto__"),
    ids,
    { maxKeys: 12 },
  );
  const merges = fc.array(fc.oneof(fc.string({ maxLength: 6 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }), json), {
    maxLength: 8,
  });
  const token = fc.oneof(
    fc.string({ maxLength: 6 }),
    fc.record(
      {
        content: fc.oneof(fc.string({ maxLength: 6 }), json),
        lstrip: fc.oneof(fc.boolean(), json),
        rstrip: fc.boolean(),
        single_word: fc.boolean(),
        special: fc.oneof(fc.boolean(), json),
      },
      { requiredKeys: [] },
    ),
    json,
  );

  it("vocab.json and merges.txt", () => {
    fc.assert(
      fc.property(fc.oneof(vocab, json), (v) => {
        parsesOrRefuses(() => parseVocabJson(JSON.stringify(v) ?? "", "vocab.json"), "vocab.json");
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", "b", " ", "\n", "\r", "#", "version", "\t", "é"), maxLength: 40 }), (t) => {
        parsesOrRefuses(() => parseMergesTxt(t, "merges.txt"), "merges.txt");
      }),
      { numRuns: 1000 },
    );
  });

  it("tokenizer.json", () => {
    // Mostly well-formed, so that the later checks and the tokenizer itself are reached too.
    const sym = fc.constantFrom("a", "b", "ab", "ba", "Ġ", "Ġa", "!", "é");
    const goodVocab = fc.uniqueArray(sym, { minLength: 1 }).map((ks) => Object.fromEntries(ks.map((k, i) => [k, i])));
    const goodMerges = fc.array(
      fc.tuple(sym, sym).map(([a, b]) => `${a} ${b}`),
      { maxLength: 6 },
    );
    const tj = fc.record(
      {
        model: fc.oneof(
          { weight: 1, arbitrary: json },
          {
            weight: 1,
            arbitrary: fc.record(
              {
                type: fc.oneof(fc.constant("BPE"), json),
                vocab: fc.oneof(vocab, json),
                merges: fc.oneof(merges, json),
                continuing_subword_prefix: fc.oneof(fc.constant(null), json),
              },
              { requiredKeys: [] },
            ),
          },
          {
            weight: 4,
            arbitrary: fc.record({
              type: fc.constant("BPE"),
              vocab: fc.oneof({ weight: 4, arbitrary: goodVocab }, { weight: 1, arbitrary: vocab }),
              merges: fc.oneof({ weight: 4, arbitrary: goodMerges }, { weight: 1, arbitrary: merges }),
            }),
          },
        ),
        added_tokens: fc.oneof(
          {
            weight: 4,
            arbitrary: fc.array(
              fc.record({
                id: fc.integer({ min: 0, max: 40 }),
                content: fc.oneof(sym, fc.string({ maxLength: 5 })),
                special: fc.boolean(),
              }),
              { maxLength: 4 },
            ),
          },
          {
            weight: 1,
            arbitrary: fc.oneof(
              fc.array(
                fc.record({ id: ids, content: fc.oneof(fc.string({ maxLength: 5 }), json), special: fc.boolean() }, { requiredKeys: [] }),
                { maxLength: 4 },
              ),
              json,
            ),
          },
        ),
        pre_tokenizer: fc.oneof(
          {
            weight: 4,
            arbitrary: fc.record({ type: fc.constant("ByteLevel"), add_prefix_space: fc.boolean(), use_regex: fc.constant(true) }),
          },
          {
            weight: 1,
            arbitrary: fc.oneof(
              fc.constant(null),
              fc.record({
                type: fc.constantFrom("ByteLevel", "Metaspace"),
                add_prefix_space: fc.oneof(fc.boolean(), json),
                use_regex: fc.boolean(),
              }),
              json,
            ),
          },
        ),
        post_processor: fc.oneof(
          fc.constant(null),
          json,
          fc.record({
            type: fc.constant("TemplateProcessing"),
            single: fc.oneof(
              json,
              fc.array(fc.oneof(json, fc.record({ SpecialToken: fc.record({ id: fc.oneof(sym, json) }) })), { maxLength: 2 }),
            ),
          }),
        ),
        normalizer: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: json }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(tj, (t) => {
        if (parsesOrRefuses(() => parseTokenizerJson(JSON.stringify(t), "tokenizer.json"), "tokenizer.json")) {
          // What parses must build a tokenizer that encodes and decodes, or refuse with an Error.
          try {
            const k = Tokenizer.fromTokenizerJson(JSON.stringify(t));
            k.decode(k.encode("ab ba!"));
          } catch (e) {
            expect(e).toBeInstanceOf(Error);
            expect((e as Error).constructor).toBe(Error);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("tokenizer_config.json / special_tokens_map.json, and a whole tokenizer built from them", () => {
    const cfg = fc.record(
      {
        add_bos_token: fc.oneof(fc.boolean(), json),
        add_prefix_space: fc.oneof(fc.boolean(), json),
        bos_token: fc.oneof(fc.constant(null), token),
        eos_token: token,
        unk_token: token,
        pad_token: token,
        mask_token: token,
        additional_special_tokens: fc.oneof(fc.array(token, { maxLength: 3 }), json),
        added_tokens_decoder: fc.oneof(
          fc.dictionary(fc.oneof(fc.integer({ min: 0, max: 70 }).map(String), fc.string({ maxLength: 3 })), token, { maxKeys: 3 }),
          json,
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(cfg, fc.boolean(), (c, asMap) => {
        const file = asMap ? "special_tokens_map.json" : "tokenizer_config.json";
        if (!parsesOrRefuses(() => parseTokenizerConfig(JSON.stringify(c), file), file)) return;
        const k = Tokenizer.fromFiles({
          vocabJson: JSON.stringify({ a: 0, b: 1, ab: 2, "</s>": 3, "<pad>": 4 }),
          mergesTxt: "a b\n",
          [asMap ? "specialTokensMapJson" : "tokenizerConfigJson"]: JSON.stringify(c),
        });
        const text = "ab </s> ba<pad>" + String(typeof c.eos_token === "string" ? c.eos_token : "");
        try {
          k.decode(k.encode(text));
        } catch (e) {
          // A vocabulary without the bytes of the text and no unk token: a clear encode error.
          expect((e as Error).message).toMatch(/^(encode|decode): /);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("shard indexes (*.index.json)", () => {
    const idx = fc.oneof(
      json,
      fc.record(
        {
          metadata: json,
          weight_map: fc.oneof(
            json,
            fc.dictionary(
              fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__"),
              fc.oneof(fc.constantFrom("model-00001-of-00002.safetensors", "../x", "/etc/passwd", ".hidden", "a b", "ok.bin"), json),
              { maxKeys: 4 },
            ),
          ),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(idx, (v) => {
        if (parsesOrRefuses(() => parseShardIndex(JSON.stringify(v) ?? "", "i.json"), "i.json")) {
          for (const f of parseShardIndex(JSON.stringify(v), "i.json").values()) expect(f).toMatch(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
