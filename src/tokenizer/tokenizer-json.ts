// tokenizer.json (the format every current hub repository ships) through @huggingface/tokenizers,
// the pure-JS port of Hugging Face's tokenizers that transformers.js uses: byte-level BPE (GPT-2,
// SmolLM2, Qwen2, Llama 3), SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama),
// Unigram and WordPiece, normalizers, pre-tokenizers, post-processors and decoders as data.
//
// What is ours: checking the file first (one-line errors naming it), two data rewrites that make
// the library behave as transformers does (below), the special tokens of tokenizer_config.json,
// and streaming decode. The library is pinned to an exact version: the memory release after
// construction relies on which fields its constructors read.

import { Tokenizer as LibraryTokenizerClass } from "@huggingface/tokenizers";
import { type DecodeStream, type TokenizerBackend, unknownIdError } from "./backend.js";
import type { TokenSpec, TokenizerOptions } from "./config.js";
import { fail, parseTokenizerJson, type TokenizerJson, type TokenizerJsonAddedToken } from "./files.js";
import { replaceLoneSurrogates } from "./pretokenize.js";

/**
 * The part of the library's Tokenizer used here. (Its published .d.ts files import each other
 * without extensions, which TypeScript's NodeNext resolution cannot follow, so most of its types
 * come out as any; this keeps our side typed.)
 */
interface LibraryTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: (number | undefined)[]; tokens: string[] };
  tokenize(text: string): string[];
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

/**
 * GPT-2's pre-tokenizer pattern as the Rust library writes it. Its ByteLevel pre-tokenizer runs
 * it with Oniguruma, whose \s is Unicode White_Space; the JS library's ByteLevel hard-codes it as
 * a JavaScript regex, whose \s adds U+FEFF and lacks U+0085 (1 string in 30 with those characters
 * got other ids than transformers in a random test). Its Split pre-tokenizer translates \s the
 * Oniguruma way, so ByteLevel(use_regex) is rewritten as Split(pattern) + ByteLevel(no regex):
 * the form Llama 3's and Qwen2's tokenizer.json already use.
 */
const GPT2_SPLIT = {
  type: "Split",
  pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" },
  behavior: "Isolated",
  invert: false,
};

function withOnigurumaWhitespace(pre: Record<string, unknown> | null): Record<string, unknown> | null {
  if (pre === null) return null;
  // add_prefix_space must see the whole text, before the split: such files keep the library's regex.
  if (pre.type === "ByteLevel" && pre.use_regex !== false && pre.add_prefix_space !== true) {
    return { type: "Sequence", pretokenizers: [GPT2_SPLIT, { ...pre, use_regex: false }] };
  }
  if (pre.type === "Sequence" && Array.isArray(pre.pretokenizers)) {
    return { ...pre, pretokenizers: pre.pretokenizers.map((p) => (typeof p === "object" && p !== null ? withOnigurumaWhitespace(p) : p)) };
  }
  return pre;
}

/**
 * transformers' LlamaTokenizerFast (and Gemma's, CodeLlama's) rebuild the post-processor from
 * tokenizer_config.json's add_bos_token (default true) and add_eos_token (default false) when they
 * load, so those flags, not tokenizer.json's template, decide. Other classes keep the template.
 */
const REBUILDS_POST_PROCESSOR = /^(Llama|CodeLlama|Gemma)Tokenizer(Fast)?$/;

function templateProcessing(bos: TokenizerJsonAddedToken | null, eos: TokenizerJsonAddedToken | null): Record<string, unknown> {
  const special = (t: TokenizerJsonAddedToken, typeId: number) => ({ SpecialToken: { id: t.content, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const single = [...(bos ? [special(bos, 0)] : []), seq("A", 0), ...(eos ? [special(eos, 0)] : [])];
  const pair = [...single, ...(bos ? [special(bos, 1)] : []), seq("B", 1), ...(eos ? [special(eos, 1)] : [])];
  const specialTokens: Record<string, unknown> = {};
  for (const t of [bos, eos]) if (t) specialTokens[t.content] = { id: t.content, ids: [t.id], tokens: [t.content] };
  return { type: "TemplateProcessing", single, pair, special_tokens: specialTokens };
}

function buildLibraryTokenizer(json: TokenizerJson, config: Record<string, unknown>, file: string): LibraryTokenizer {
  try {
    return new LibraryTokenizerClass(json, config) as unknown as LibraryTokenizer;
  } catch (e) {
    // e.g. "Unknown PreTokenizer type: X": a component this version of the library lacks.
    return fail(file, `cannot be built: ${e instanceof Error ? e.message : String(e)}`);
  }
}

const contentOf = (spec: TokenSpec): string => (typeof spec === "string" ? spec : spec.content);

export class TokenizerJsonBackend implements TokenizerBackend {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly addBosToken: boolean;
  readonly addPrefixSpace: boolean;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly additionalSpecialTokens: readonly string[];

  private readonly lib: LibraryTokenizer;
  private readonly specialIds = new Set<number>();

  /** `options`: tokenizer_config.json + special_tokens_map.json (parseTokenizerConfig, mergeOptions). */
  constructor(tokenizerJson: string, options: TokenizerOptions = {}, file = "tokenizer.json") {
    const json = parseTokenizerJson(tokenizerJson, file);
    const byContent = new Map(json.added_tokens.map((t) => [t.content, t]));
    const addToken = (t: TokenizerJsonAddedToken) => {
      json.added_tokens.push(t);
      byContent.set(t.content, t);
      json.vocabSize = Math.max(json.vocabSize, t.id + 1);
    };
    // tokenizer_config.json's added_tokens_decoder normally repeats added_tokens; add what it adds.
    for (const t of options.addedTokens ?? []) {
      if (!byContent.has(t.content)) {
        addToken({
          id: t.id,
          content: t.content,
          special: t.special,
          lstrip: t.lstrip,
          rstrip: t.rstrip,
          single_word: t.singleWord,
          normalized: !t.special,
        });
      }
    }
    // The config's special tokens, registered as transformers does: an added special token with
    // the vocabulary's id, or a new id when the vocabulary lacks it.
    const vocab = json.model.vocab;
    const vocabId = (content: string): number | undefined => {
      if (json.model.type === "Unigram") {
        const i = (vocab as [string, number][]).findIndex((e) => e[0] === content);
        return i < 0 ? undefined : i;
      }
      const v = (vocab as Record<string, unknown>)[content];
      return Object.hasOwn(vocab as object, content) && typeof v === "number" ? v : undefined;
    };
    const special = (spec: TokenSpec | null | undefined): TokenizerJsonAddedToken | null => {
      if (spec === undefined || spec === null) return null;
      const content = contentOf(spec);
      let token = byContent.get(content);
      if (!token) {
        const flags: Exclude<TokenSpec, string> = typeof spec === "string" ? { content } : spec;
        token = {
          id: vocabId(content) ?? json.vocabSize,
          content,
          special: true,
          lstrip: flags.lstrip ?? false,
          rstrip: flags.rstrip ?? false,
          single_word: flags.singleWord ?? false,
          normalized: false,
        };
        addToken(token);
      }
      this.specialIds.add(token.id);
      return token;
    };
    const bos = special(options.bosToken);
    const eos = special(options.eosToken);
    const unk = special(options.unkToken);
    const pad = special(options.padToken);
    special(options.maskToken);
    this.additionalSpecialTokens = (options.additionalSpecialTokens ?? []).map((t) => special(t)!.content);
    for (const t of json.added_tokens) if (t.special) this.specialIds.add(t.id);

    if (REBUILDS_POST_PROCESSOR.test(options.tokenizerClass ?? "")) {
      const addBos = options.addBosToken ?? true;
      const addEos = options.addEosToken ?? false;
      if (addBos && !bos) fail("tokenizer_config.json", "add_bos_token is true but there is no bos_token");
      if (addEos && !eos) fail("tokenizer_config.json", "add_eos_token is true but there is no eos_token");
      json.post_processor = templateProcessing(addBos ? bos : null, addEos ? eos : null);
    }
    json.pre_tokenizer = withOnigurumaWhitespace(json.pre_tokenizer);

    this.lib = buildLibraryTokenizer(
      json,
      {
        additional_special_tokens: this.additionalSpecialTokens,
        eos_token: eos?.content ?? null, // a Unigram model's end-of-word piece
      },
      file,
    );
    // The library copies the vocabulary and (string-form) merges into its own tables; the JSON
    // copies would stay reachable through the config it keeps. About 7 MB for GPT-2.
    if (json.model.type === "BPE" && typeof (json.model.merges as unknown[])[0] === "string") json.model.merges = [];
    if (json.model.type !== "Unigram") json.model.vocab = {};

    this.vocabSize = json.vocabSize;
    this.bosTokenId = bos?.id ?? null;
    this.eosTokenId = eos?.id ?? null;
    this.unkTokenId = unk?.id ?? null;
    this.padTokenId = pad?.id ?? null;
    const probe = this.encode("", true);
    this.addBosToken = this.bosTokenId !== null && probe[0] === this.bosTokenId;
    this.addPrefixSpace = json.pre_tokenizer?.add_prefix_space === true;
    this.cleanUpTokenizationSpaces = options.cleanUpTokenizationSpaces ?? false;
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    let ids: (number | undefined)[];
    let tokens: string[];
    try {
      // Lone surrogates become U+FFFD, as in the slow tokenizer (UTF-8 cannot hold them).
      ({ ids, tokens } = this.lib.encode(replaceLoneSurrogates(text), { add_special_tokens: addSpecialTokens }));
    } catch (e) {
      throw new Error(`encode: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const bad = ids.findIndex((id) => id === undefined);
    if (bad >= 0) throw new Error(`encode: token ${JSON.stringify(tokens[bad])} is not in the vocabulary and there is no unk token`);
    return ids as number[];
  }

  tokenize(text: string): string[] {
    return this.lib.tokenize(replaceLoneSurrogates(text));
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens: boolean): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.idToToken(id) === undefined) throw unknownIdError(id, this.vocabSize);
      if (!(skipSpecialTokens && this.specialIds.has(id))) kept.push(id);
    }
    if (kept.length === 0) return ""; // the library refuses an empty list
    return this.lib.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  createDecodeStream(skipSpecialTokens: boolean): DecodeStream {
    return new PrefixDecodeStream(
      (ids) => this.decode(ids, false),
      (id) => {
        if (this.idToToken(id) === undefined) throw unknownIdError(id, this.vocabSize);
        return skipSpecialTokens && this.specialIds.has(id);
      },
    );
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.lib.id_to_token(id) : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/**
 * Streaming decode for any decoder pipeline, as the Rust library's DecodeStream does it: decode
 * a window of ids that starts at the previously emitted token, and emit what it adds to that
 * window's text once the text no longer ends in U+FFFD (an unfinished UTF-8 character, from
 * byte-level or <0x..> byte-fallback tokens). Starting the window at an emitted token keeps
 * decoders that treat the first token specially (Metaspace, Strip of the leading space) from
 * changing the new text. Cost per token: decoding the window, a few tokens long.
 */
export class PrefixDecodeStream implements DecodeStream {
  private ids: number[] = [];
  /** Text of ids[0 .. prefixEnd), already emitted. */
  private prefix = "";
  private prefixEnd = 0;

  constructor(
    private readonly decodeIds: (ids: number[]) => string,
    /** Checks the id (throws for an unknown one); true when the stream should drop it. */
    private readonly skip: (id: number) => boolean,
  ) {}

  push(id: number): string {
    if (this.skip(id)) return "";
    this.ids.push(id);
    const text = this.decodeIds(this.ids);
    if (text.length <= this.prefix.length || text.endsWith("\uFFFD")) return "";
    // The window's text normally extends its prefix; if a decoder ever rewrote the prefix, the
    // new text is still what follows the prefix's length (the Rust library errors instead).
    const piece = text.slice(this.prefix.length);
    this.ids = this.ids.slice(this.prefixEnd);
    this.prefixEnd = this.ids.length;
    this.prefix = this.decodeIds(this.ids);
    return piece;
  }

  flush(): string {
    const text = this.ids.length > 0 ? this.decodeIds(this.ids) : "";
    const piece = text.length > this.prefix.length ? text.slice(this.prefix.length) : "";
    this.ids = [];
    this.prefix = "";
    this.prefixEnd = 0;
    return piece;
  }
}
