// What the Tokenizer facade (tokenizer.ts) needs from an implementation. Two exist:
//   Gpt2SlowTokenizer (gpt2-slow.ts)      vocab.json + merges.txt, hand-written, exact to
//                                         transformers' slow GPT2Tokenizer (OPT's repositories)
//   TokenizerJsonBackend (tokenizer-json.ts)  tokenizer.json through @huggingface/tokenizers

/** Incremental decoding: see Tokenizer.createDecodeStream. */
export interface DecodeStream {
  /** Text completed by this id (possibly ""). Throws for an id outside the vocabulary. */
  push(id: number): string;
  /** End of stream: what is still held back (an unfinished character comes out as U+FFFD). */
  flush(): string;
}

export interface TokenizerBackend {
  /** One past the largest id. */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** Whether encode() with special tokens starts with the BOS. */
  readonly addBosToken: boolean;
  readonly addPrefixSpace: boolean;
  /** The config's clean_up_tokenization_spaces (decode's default), false when it has none. */
  readonly cleanUpTokenizationSpaces: boolean;
  /** Contents of the additional special tokens (tokenizer_config.json), for chat templates. */
  readonly additionalSpecialTokens: readonly string[];

  encode(text: string, addSpecialTokens: boolean): number[];
  tokenize(text: string): string[];
  /** Without transformers' clean-up of spaces (the Tokenizer applies it). */
  decode(ids: ArrayLike<number>, skipSpecialTokens: boolean): string;
  createDecodeStream(skipSpecialTokens: boolean): DecodeStream;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  isSpecialId(id: number): boolean;
}

/** The one error for an id a tokenizer cannot decode (both backends, decode and streams). */
export function unknownIdError(id: number, vocabSize: number): Error {
  return new Error(`decode: token id ${String(id)} is not in the vocabulary (ids 0..${vocabSize - 1})`);
}
