// The tokenizer's platform-neutral entry point (no fs): build a Tokenizer from file contents.
// Node users can call loadTokenizer(dir) from ./node.js instead.

export { Tokenizer, cleanUpTokenization } from "./tokenizer.js";
export type { DecodeOptions, DecodeStream, EncodeOptions, TokenizerFiles } from "./tokenizer.js";
export { TURN_END_TOKENS, validateMessages } from "./chat.js";
export type { ChatMessage, ChatTemplateOptions } from "./chat.js";
export { parseTokenizerConfig } from "./config.js";
export type { ChatTemplateSource, TokenSpec, TokenizerOptions } from "./config.js";
export { parseMergesTxt, parseTokenizerJson, parseVocabJson } from "./files.js";
export type { AddedTokenSpec } from "./files.js";
