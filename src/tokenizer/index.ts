// The tokenizer's platform-neutral entry point (no fs): build a Tokenizer from file contents.
// Node users can call loadTokenizer(dir) from ./node.js instead.

export { Tokenizer, DecodeStream, cleanUpTokenization } from "./tokenizer.js";
export type { DecodeOptions, EncodeOptions, TokenizerFiles } from "./tokenizer.js";
export { parseTokenizerConfig } from "./config.js";
export type { TokenSpec, TokenizerOptions } from "./config.js";
export { parseMergesTxt, parseTokenizerJson, parseVocabJson } from "./files.js";
export type { AddedTokenSpec } from "./files.js";
