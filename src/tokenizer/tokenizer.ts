// OPT's tokenizer: GPT-2 byte-level BPE with fairseq ids, behaving like transformers' slow
// GPT2Tokenizer with OPT's tokenizer_config.json (the reference for test/fixtures).
//
// Why no library: @huggingface/transformers drags in onnxruntime and sharp; its standalone
// spin-off @huggingface/tokenizers (0.x) needs a tokenizer.json, which OPT repositories don't
// ship, and follows the fast tokenizer, not the slow one OPT's reference ids come from;
// gpt-tokenizer / js-tiktoken / gpt3-encoder hard-wire OpenAI vocabularies and ids.
//
// Platform-neutral on purpose: everything takes file *contents*; src/tokenizer/node.ts reads them.

import { BytePairEncoder, type Merge } from "./bpe.js";
import { tokenToBytes, utf8Decode, utf8Encode } from "./bytes.js";
import { mergeOptions, OPT_DEFAULTS, parseTokenizerConfig, type TokenSpec, type TokenizerOptions } from "./config.js";
import { type AddedTokenSpec, parseMergesTxt, parseTokenizerJson, parseVocabJson } from "./files.js";
import { AddedTokenSplitter, type MatchableToken, preTokenize, replaceLoneSurrogates } from "./pretokenize.js";

export interface EncodeOptions {
  /** Prepend the BOS token ("</s>" = 2 for OPT) when the config says so. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (</s>, <pad>, ... and added tokens marked special). Default false. */
  skipSpecialTokens?: boolean;
  /**
   * transformers' clean_up_tokenization_spaces (" ." -> "." etc.). Default: the config's
   * clean_up_tokenization_spaces, else false so that decode(encode(s)) === s.
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** Contents of the files of a model directory; pass what exists. */
export interface TokenizerFiles {
  tokenizerJson?: string;
  vocabJson?: string;
  mergesTxt?: string;
  tokenizerConfigJson?: string;
  specialTokensMapJson?: string;
}

interface AddedToken extends MatchableToken, AddedTokenSpec {}

interface Model {
  vocab: Map<string, number>;
  merges: Merge[];
  addedTokens?: (AddedTokenSpec & { id: number })[];
  addPrefixSpace?: boolean;
  /** What tokenizer.json's post_processor says about the BOS, if anything. */
  addBosToken?: boolean;
  bosToken?: string;
}

export class Tokenizer {
  /** Number of ids, i.e. one past the largest id (50265 for OPT; the model pads to 50272). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly addBosToken: boolean;
  readonly addPrefixSpace: boolean;
  readonly cleanUpTokenizationSpaces: boolean;

  private readonly bpe: BytePairEncoder;
  private readonly vocab: Map<string, number>;
  private readonly idToString: (string | undefined)[];
  private readonly added = new Map<string, AddedToken>();
  private readonly addedById = new Map<number, AddedToken>();
  private readonly specialIds = new Set<number>();
  private readonly splitter: AddedTokenSplitter;
  /** BPE symbol id -> vocab id, or -1 when the symbol is not in the vocab. */
  private readonly symbolToId: Int32Array;
  private readonly bytesCache: (Uint8Array | undefined)[];

  private constructor(model: Model, options: TokenizerOptions) {
    this.vocab = model.vocab;
    this.bpe = new BytePairEncoder(model.merges);
    let nextId = 0;
    for (const id of model.vocab.values()) nextId = Math.max(nextId, id + 1);

    for (const t of model.addedTokens ?? []) this.addToken(t, t.id);
    for (const t of options.addedTokens ?? []) this.addToken(t, t.id);
    for (const t of this.added.values()) nextId = Math.max(nextId, t.id + 1);

    // Special tokens are added like transformers does: reuse the vocab id, else a new id.
    const special = (spec: TokenSpec | null | undefined, fallback: string | undefined): number | null => {
      if (spec === null) return null;
      if (spec === undefined) {
        // An OPT default that this vocabulary doesn't have is simply absent.
        if (fallback === undefined || this.lookup(fallback) === undefined) return null;
        spec = fallback;
      }
      const flags = typeof spec === "string" ? { content: spec } : spec;
      const existing = this.lookup(flags.content);
      const id = existing ?? nextId++;
      if (!this.added.has(flags.content)) {
        this.addToken(
          {
            content: flags.content,
            special: true,
            lstrip: flags.lstrip ?? false,
            rstrip: flags.rstrip ?? false,
            singleWord: flags.singleWord ?? false,
          },
          id,
        );
      }
      this.specialIds.add(id);
      return id;
    };
    this.bosTokenId = special(options.bosToken, model.bosToken ?? OPT_DEFAULTS.bosToken);
    this.eosTokenId = special(options.eosToken, OPT_DEFAULTS.eosToken);
    this.unkTokenId = special(options.unkToken, OPT_DEFAULTS.unkToken);
    this.padTokenId = special(options.padToken, OPT_DEFAULTS.padToken);
    special(options.maskToken, undefined);
    for (const t of options.additionalSpecialTokens ?? []) special(t, undefined);
    for (const t of this.added.values()) if (t.special) this.specialIds.add(t.id);

    this.addBosToken = (options.addBosToken ?? model.addBosToken ?? OPT_DEFAULTS.addBosToken) && this.bosTokenId !== null;
    this.addPrefixSpace = options.addPrefixSpace ?? model.addPrefixSpace ?? false;
    this.cleanUpTokenizationSpaces = options.cleanUpTokenizationSpaces ?? false;

    this.vocabSize = nextId;
    this.idToString = new Array(nextId);
    for (const [token, id] of model.vocab) this.idToString[id] = token;
    for (const t of this.added.values()) this.idToString[t.id] = t.content;
    this.bytesCache = new Array(nextId);

    this.symbolToId = new Int32Array(this.bpe.symbolCount);
    for (let s = 0; s < this.symbolToId.length; s++) this.symbolToId[s] = model.vocab.get(this.bpe.symbol(s)) ?? -1;
    this.splitter = new AddedTokenSplitter(this.added.values());
  }

  /** From OPT's vocab.json + merges.txt contents. Options default to OPT's settings. */
  static fromVocabAndMerges(vocabJson: string, mergesTxt: string, options: TokenizerOptions = {}): Tokenizer {
    return new Tokenizer({ vocab: parseVocabJson(vocabJson), merges: parseMergesTxt(mergesTxt) }, options);
  }

  /** From a Hugging Face tokenizer.json with a byte-level "BPE" model. */
  static fromTokenizerJson(tokenizerJson: string, options: TokenizerOptions = {}): Tokenizer {
    return new Tokenizer(parseTokenizerJson(tokenizerJson), options);
  }

  /**
   * From the contents of a model directory's files: tokenizer.json if given, else
   * vocab.json + merges.txt; tokenizer_config.json and special_tokens_map.json when given.
   */
  static fromFiles(files: TokenizerFiles): Tokenizer {
    const options = mergeOptions(
      files.tokenizerConfigJson === undefined ? undefined : parseTokenizerConfig(files.tokenizerConfigJson),
      files.specialTokensMapJson === undefined
        ? undefined
        : parseTokenizerConfig(files.specialTokensMapJson, "special_tokens_map.json"),
    );
    if (files.tokenizerJson !== undefined) return Tokenizer.fromTokenizerJson(files.tokenizerJson, options);
    if (files.vocabJson !== undefined && files.mergesTxt !== undefined) {
      return Tokenizer.fromVocabAndMerges(files.vocabJson, files.mergesTxt, options);
    }
    if (files.vocabJson !== undefined) throw new Error("tokenizer files: vocab.json given without merges.txt");
    if (files.mergesTxt !== undefined) throw new Error("tokenizer files: merges.txt given without vocab.json");
    throw new Error("tokenizer files: need tokenizer.json, or vocab.json and merges.txt");
  }

  /**
   * Token ids for text. Never throws for a string: lone surrogates (which UTF-8 cannot hold,
   * and on which the Python reference fails) are tokenized as U+FFFD.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if ((options.addSpecialTokens ?? true) && this.addBosToken) ids.push(this.bosTokenId!);
    this.run(text, (sym) => ids.push(this.symbolVocabId(sym)), (tok) => ids.push(tok.id));
    return ids;
  }

  /** Token strings (byte-level alphabet, e.g. "Ġworld"), without BOS, like transformers' tokenize(). */
  tokenize(text: string): string[] {
    const tokens: string[] = [];
    this.run(text, (sym) => tokens.push(this.bpe.symbol(sym)), (tok) => tokens.push(tok.content));
    return tokens;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const parts: Uint8Array[] = [];
    let length = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (skip && this.specialIds.has(id)) continue;
      const bytes = this.idBytes(id);
      parts.push(bytes);
      length += bytes.length;
    }
    const all = new Uint8Array(length);
    let offset = 0;
    for (const p of parts) {
      all.set(p, offset);
      offset += p.length;
    }
    const text = utf8Decode(all);
    return options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces ? cleanUpTokenization(text) : text;
  }

  /** Incremental decoding for generation: see DecodeStream. */
  createDecodeStream(options: Pick<DecodeOptions, "skipSpecialTokens"> = {}): DecodeStream {
    return new DecodeStream(this, options.skipSpecialTokens ?? false);
  }

  /** The token string for an id (byte-level alphabet), or undefined if the id has none. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.idToString[id] : undefined;
  }

  /** The id of a token string (byte-level alphabet or an added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.lookup(token);
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** UTF-8 bytes that an id decodes to; throws for ids outside the vocabulary. */
  idBytes(id: number): Uint8Array {
    let bytes = Number.isInteger(id) && id >= 0 ? this.bytesCache[id] : undefined;
    if (bytes) return bytes;
    const token = this.idToToken(id);
    if (token === undefined) {
      throw new Error(`decode: token id ${String(id)} is not in the vocabulary (ids 0..${this.vocabSize - 1})`);
    }
    // Added tokens are literal text; vocab tokens are in the byte-level alphabet.
    const added = this.addedById.get(id);
    bytes = added ? utf8Encode(added.content) : tokenToBytes(token);
    this.bytesCache[id] = bytes;
    return bytes;
  }

  private lookup(token: string): number | undefined {
    return this.added.get(token)?.id ?? this.vocab.get(token);
  }

  private addToken(spec: AddedTokenSpec, id: number): void {
    if (this.added.has(spec.content)) return;
    const token: AddedToken = { ...spec, id };
    this.added.set(spec.content, token);
    if (!this.addedById.has(id)) this.addedById.set(id, token);
  }

  private symbolVocabId(sym: number): number {
    const id = this.symbolToId[sym];
    if (id >= 0) return id;
    // transformers maps out-of-vocab BPE symbols to unk; only a partial vocab can get here.
    if (this.unkTokenId !== null) return this.unkTokenId;
    throw new Error(`encode: BPE symbol ${JSON.stringify(this.bpe.symbol(sym))} is not in the vocabulary and there is no unk token`);
  }

  private run(text: string, onSymbol: (sym: number) => void, onAdded: (tok: AddedToken) => void): void {
    let clean = replaceLoneSurrogates(text);
    if (this.addPrefixSpace) clean = " " + clean;
    for (const chunk of this.splitter.split(clean)) {
      if (chunk.token) {
        onAdded(chunk.token as AddedToken);
        continue;
      }
      for (const piece of preTokenize(chunk.text)) {
        for (const sym of this.bpe.encodeWord(piece, utf8Encode(piece))) onSymbol(sym);
      }
    }
  }
}

/**
 * Turns ids into text one at a time, e.g. while generating. A token can end in the middle of
 * a UTF-8 character (emoji and most non-Latin scripts are split across tokens); those bytes are
 * held back until the character is complete, so no piece contains a broken character and the
 * pieces concatenate to exactly decode(allIds).
 */
export class DecodeStream {
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly skipSpecialTokens: boolean,
  ) {}

  /** Text completed by this id (possibly ""). Throws for an id outside the vocabulary. */
  push(id: number): string {
    if (this.skipSpecialTokens && this.tokenizer.isSpecialId(id)) return "";
    return this.decoder.decode(this.tokenizer.idBytes(id), { stream: true });
  }

  /** End of stream: bytes of an unfinished character come out as U+FFFD, as decode() would. */
  flush(): string {
    return this.decoder.decode();
  }
}

/** transformers' clean_up_tokenization(): undo the spaces a word-level detokenizer would add. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}
