// OPT's tokenizer: GPT-2 byte-level BPE with fairseq ids, behaving like transformers' slow
// GPT2Tokenizer with OPT's tokenizer_config.json (the reference for test/fixtures), for
// repositories that ship vocab.json + merges.txt and no tokenizer.json (every facebook/opt-*).
//
// Why hand-written: @huggingface/tokenizers (which reads tokenizer.json, see tokenizer-json.ts)
// cannot load vocab.json + merges.txt, and follows the fast tokenizer, not the slow one OPT's
// reference ids come from; @huggingface/transformers drags in onnxruntime and sharp;
// gpt-tokenizer / js-tiktoken / gpt3-encoder hard-wire OpenAI vocabularies and ids.
//
// Platform-neutral on purpose: everything takes file *contents*; src/tokenizer/node.ts reads them.

import { BytePairEncoder } from "./bpe.js";
import { tokenToBytes, utf8Decode, utf8Encode } from "./bytes.js";
import { type DecodeStream, type TokenizerBackend, unknownIdError } from "./backend.js";
import { OPT_DEFAULTS, type TokenSpec, type TokenizerOptions } from "./config.js";
import { type AddedTokenSpec, parseMergesTxt, parseVocabJson } from "./files.js";
import { AddedTokenSplitter, type MatchableToken, preTokenize, replaceLoneSurrogates } from "./pretokenize.js";

interface AddedToken extends MatchableToken, AddedTokenSpec {}

export class Gpt2SlowTokenizer implements TokenizerBackend {
  /** Number of ids, i.e. one past the largest id (50265 for OPT; the model pads to 50272). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly addBosToken: boolean;
  readonly addPrefixSpace: boolean;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly additionalSpecialTokens: readonly string[];

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

  /** From vocab.json + merges.txt contents. Options default to OPT's settings. */
  constructor(vocabJson: string, mergesTxt: string, options: TokenizerOptions = {}) {
    this.vocab = parseVocabJson(vocabJson);
    this.bpe = new BytePairEncoder(parseMergesTxt(mergesTxt));
    let nextId = 0;
    for (const id of this.vocab.values()) nextId = Math.max(nextId, id + 1);

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
    this.bosTokenId = special(options.bosToken, OPT_DEFAULTS.bosToken);
    this.eosTokenId = special(options.eosToken, OPT_DEFAULTS.eosToken);
    this.unkTokenId = special(options.unkToken, OPT_DEFAULTS.unkToken);
    this.padTokenId = special(options.padToken, OPT_DEFAULTS.padToken);
    special(options.maskToken, undefined);
    for (const t of options.additionalSpecialTokens ?? []) special(t, undefined);
    this.additionalSpecialTokens = (options.additionalSpecialTokens ?? []).map((t) => (typeof t === "string" ? t : t.content));
    for (const t of this.added.values()) if (t.special) this.specialIds.add(t.id);

    // transformers' GPT2Tokenizer defaults add_bos_token to false (GPT-2's config leaves it out;
    // OPT's sets it); only a directory without a tokenizer_config.json gets OPT's default.
    const addBosDefault = options.tokenizerClass === undefined ? OPT_DEFAULTS.addBosToken : false;
    this.addBosToken = (options.addBosToken ?? addBosDefault) && this.bosTokenId !== null;
    this.addPrefixSpace = options.addPrefixSpace ?? false;
    this.cleanUpTokenizationSpaces = options.cleanUpTokenizationSpaces ?? false;

    this.vocabSize = nextId;
    this.idToString = new Array(nextId);
    for (const [token, id] of this.vocab) this.idToString[id] = token;
    for (const t of this.added.values()) this.idToString[t.id] = t.content;
    this.bytesCache = new Array(nextId);

    this.symbolToId = new Int32Array(this.bpe.symbolCount);
    for (let s = 0; s < this.symbolToId.length; s++) this.symbolToId[s] = this.vocab.get(this.bpe.symbol(s)) ?? -1;
    this.splitter = new AddedTokenSplitter(this.added.values());
  }

  /**
   * Token ids for text. Never throws for a string: lone surrogates (which UTF-8 cannot hold,
   * and on which the Python reference fails) are tokenized as U+FFFD.
   */
  encode(text: string, addSpecialTokens: boolean): number[] {
    const ids: number[] = [];
    if (addSpecialTokens && this.addBosToken) ids.push(this.bosTokenId!);
    this.run(
      text,
      (sym) => ids.push(this.symbolVocabId(sym)),
      (tok) => ids.push(tok.id),
    );
    return ids;
  }

  /** Token strings (byte-level alphabet, e.g. "Ġworld"), without BOS, like transformers' tokenize(). */
  tokenize(text: string): string[] {
    const tokens: string[] = [];
    this.run(
      text,
      (sym) => tokens.push(this.bpe.symbol(sym)),
      (tok) => tokens.push(tok.content),
    );
    return tokens;
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens: boolean): string {
    const skip = skipSpecialTokens;
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
    return utf8Decode(all);
  }

  createDecodeStream(skipSpecialTokens: boolean): DecodeStream {
    return new ByteDecodeStream(this, skipSpecialTokens);
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
    if (token === undefined) throw unknownIdError(id, this.vocabSize);
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
 * Decoding one id at a time from each id's bytes: a token can end in the middle of a UTF-8
 * character (emoji and most non-Latin scripts are split across tokens); a streaming TextDecoder
 * holds those bytes back until the character is complete, so no piece contains a broken
 * character and the pieces concatenate to exactly decode(allIds). O(1) per token.
 */
class ByteDecodeStream implements DecodeStream {
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(
    private readonly tokenizer: Gpt2SlowTokenizer,
    private readonly skipSpecialTokens: boolean,
  ) {}

  push(id: number): string {
    if (this.skipSpecialTokens && this.tokenizer.isSpecialId(id)) return "";
    return this.decoder.decode(this.tokenizer.idBytes(id), { stream: true });
  }

  flush(): string {
    return this.decoder.decode();
  }
}
