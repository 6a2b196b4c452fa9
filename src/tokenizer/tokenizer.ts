// The Tokenizer the rest of wasm-lm uses, over one of two implementations:
//   tokenizer.json present        → @huggingface/tokenizers (tokenizer-json.ts): every current
//                                    hub repository (GPT-2, SmolLM2, Qwen2, Llama 2/3, TinyLlama)
//   vocab.json + merges.txt only  → the hand-written slow GPT-2 tokenizer (gpt2-slow.ts), exact
//                                    to transformers' GPT2Tokenizer, for OPT's repositories
// plus what both share: tokenizer_config.json's special tokens and chat template.
//
// Platform-neutral on purpose: everything takes file *contents*; src/tokenizer/node.ts reads them.

import type { DecodeStream, TokenizerBackend } from "./backend.js";
import { type ChatMessage, type ChatTemplateOptions, ChatTemplates } from "./chat.js";
import { type ChatTemplateSource, mergeOptions, parseTokenizerConfig, type TokenizerOptions } from "./config.js";
import { Gpt2SlowTokenizer } from "./gpt2-slow.js";
import { TokenizerJsonBackend } from "./tokenizer-json.js";

export type { DecodeStream } from "./backend.js";

export interface EncodeOptions {
  /**
   * Add the special tokens the tokenizer adds around a text (its BOS, "</s>" = 2 for OPT, "<s>"
   * for Llama 2; GPT-2 and Qwen2 add none). Default true.
   */
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
  /** chat_template.jinja (transformers ≥ 4.47 saves the template there); wins over tokenizer_config.json's. */
  chatTemplateJinja?: string;
}

export class Tokenizer {
  /** Number of ids, i.e. one past the largest id (50265 for OPT; the model pads to 50272). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** Whether encode() starts with the BOS (unless addSpecialTokens is false). */
  readonly addBosToken: boolean;
  readonly addPrefixSpace: boolean;
  readonly cleanUpTokenizationSpaces: boolean;
  /**
   * Ids that end a chat turn: the EOS and the turn-end tokens (<|im_end|>, <|eot_id|>,
   * <end_of_turn>, <|end|>) that the chat template writes. Generation from encodeChat() stops at these.
   */
  readonly chatStopTokenIds: readonly number[];

  private readonly chat: ChatTemplates;

  private constructor(
    private readonly impl: TokenizerBackend,
    chatTemplate: ChatTemplateSource | undefined,
    where: string,
  ) {
    this.vocabSize = impl.vocabSize;
    this.bosTokenId = impl.bosTokenId;
    this.eosTokenId = impl.eosTokenId;
    this.padTokenId = impl.padTokenId;
    this.unkTokenId = impl.unkTokenId;
    this.addBosToken = impl.addBosToken;
    this.addPrefixSpace = impl.addPrefixSpace;
    this.cleanUpTokenizationSpaces = impl.cleanUpTokenizationSpaces;

    // As transformers passes them to templates: the special tokens' strings, when set.
    const specialTokens: Record<string, string | readonly string[]> = { additional_special_tokens: impl.additionalSpecialTokens };
    const named = { bos_token: this.bosTokenId, eos_token: this.eosTokenId, unk_token: this.unkTokenId, pad_token: this.padTokenId };
    for (const [key, id] of Object.entries(named)) {
      const token = id === null ? undefined : impl.idToToken(id);
      if (token !== undefined) specialTokens[key] = token;
    }
    this.chat = new ChatTemplates(chatTemplate, where, specialTokens);

    const stops = new Set<number>();
    if (this.eosTokenId !== null) stops.add(this.eosTokenId);
    for (const t of this.chat.turnEndTokens()) {
      const id = impl.tokenToId(t);
      if (id !== undefined) stops.add(id);
    }
    this.chatStopTokenIds = [...stops];
  }

  /** From vocab.json + merges.txt contents (the slow GPT-2 tokenizer). Options default to OPT's settings. */
  static fromVocabAndMerges(
    vocabJson: string,
    mergesTxt: string,
    options: TokenizerOptions = {},
    where = "(vocab.json + merges.txt)",
  ): Tokenizer {
    return new Tokenizer(new Gpt2SlowTokenizer(vocabJson, mergesTxt, options), options.chatTemplate, where);
  }

  /** From a Hugging Face tokenizer.json, through @huggingface/tokenizers; options from tokenizer_config.json. */
  static fromTokenizerJson(tokenizerJson: string, options: TokenizerOptions = {}, where = "(tokenizer.json)"): Tokenizer {
    return new Tokenizer(new TokenizerJsonBackend(tokenizerJson, options), options.chatTemplate, where);
  }

  /**
   * From the contents of a model directory's files: tokenizer.json if given, else
   * vocab.json + merges.txt; tokenizer_config.json, special_tokens_map.json and
   * chat_template.jinja when given. `where` names the source in errors (e.g. the directory).
   */
  static fromFiles(files: TokenizerFiles, where = "(tokenizer files)"): Tokenizer {
    const options = mergeOptions(
      files.tokenizerConfigJson === undefined ? undefined : parseTokenizerConfig(files.tokenizerConfigJson),
      files.specialTokensMapJson === undefined ? undefined : parseTokenizerConfig(files.specialTokensMapJson, "special_tokens_map.json"),
    );
    if (files.chatTemplateJinja !== undefined) options.chatTemplate = files.chatTemplateJinja;
    if (files.tokenizerJson !== undefined) return Tokenizer.fromTokenizerJson(files.tokenizerJson, options, where);
    if (files.vocabJson !== undefined && files.mergesTxt !== undefined) {
      return Tokenizer.fromVocabAndMerges(files.vocabJson, files.mergesTxt, options, where);
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
    return this.impl.encode(text, options.addSpecialTokens ?? true);
  }

  /** Token strings (e.g. "Ġworld", "▁world"), without special tokens, like transformers' tokenize(). */
  tokenize(text: string): string[] {
    return this.impl.tokenize(text);
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const text = this.impl.decode(ids, options.skipSpecialTokens ?? false);
    return (options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) ? cleanUpTokenization(text) : text;
  }

  /**
   * Turns ids into text one at a time, e.g. while generating. A token can end in the middle of
   * a UTF-8 character (emoji and most non-Latin scripts are split across byte-level or <0x..>
   * byte-fallback tokens); the stream holds such bytes back until the character is complete, so
   * no piece contains a broken character, and the pieces concatenate to decode(allIds).
   */
  createDecodeStream(options: Pick<DecodeOptions, "skipSpecialTokens"> = {}): DecodeStream {
    return this.impl.createDecodeStream(options.skipSpecialTokens ?? false);
  }

  /** The token string for an id, or undefined if the id has none. */
  idToToken(id: number): string | undefined {
    return this.impl.idToToken(id);
  }

  /** The id of a token string (as the vocabulary writes it, or an added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.impl.tokenToId(token);
  }

  isSpecialId(id: number): boolean {
    return this.impl.isSpecialId(id);
  }

  /** The chat template in use (the "default" of named ones), or null when the tokenizer has none. */
  get chatTemplate(): string | null {
    return this.chat.select();
  }

  /**
   * The conversation rendered with the tokenizer's chat template, as transformers'
   * apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does. Throws a
   * one-line Error for malformed messages, a tokenizer without a template, and the template's
   * own raise_exception (e.g. Llama 2's roles that do not alternate).
   */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    return this.chat.apply(messages, options);
  }

  /**
   * The prompt ids of a conversation: the rendered template encoded without adding special
   * tokens (the template writes them), as transformers' apply_chat_template(messages,
   * tokenize=True) does. addGenerationPrompt defaults to true here: the ids are for generating
   * the assistant's turn. Stop generating at chatStopTokenIds.
   */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    const text = this.applyChatTemplate(messages, { ...options, addGenerationPrompt: options.addGenerationPrompt ?? true });
    return this.encode(text, { addSpecialTokens: false });
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
