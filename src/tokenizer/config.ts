// Special-token settings and the chat template, from transformers' tokenizer_config.json /
// special_tokens_map.json. For vocab.json + merges.txt (OPT's repositories) missing settings
// default to OPT's: add_bos_token=true, bos = eos = unk = "</s>", pad = "<pad>"; a tokenizer.json
// has its own (its post-processor, its added tokens). An explicit null removes a token.

import { type AddedTokenSpec, checkTokenId, fail, isObject, parseAddedToken, parseJson } from "./files.js";

/** A token given by its text, or with transformers' AddedToken flags. */
export type TokenSpec = string | { content: string; lstrip?: boolean; rstrip?: boolean; singleWord?: boolean };

/** tokenizer_config.json's chat_template: one template, or named ones ({ default, tool_use, ... }). */
export type ChatTemplateSource = string | Readonly<Record<string, string>>;

export interface TokenizerOptions {
  /** Prepend the BOS token in encode() (OPT: true, and BOS is "</s>" = id 2). */
  addBosToken?: boolean;
  /** Append the EOS token in encode() (read for Llama-style tokenizer.json, as transformers does). */
  addEosToken?: boolean;
  /** tokenizer_class, e.g. "LlamaTokenizer": decides whether add_bos/eos_token rebuild the post-processor. */
  tokenizerClass?: string;
  chatTemplate?: ChatTemplateSource;
  /** Tokenize as if the text started with a space (GPT2Tokenizer's add_prefix_space). */
  addPrefixSpace?: boolean;
  bosToken?: TokenSpec | null;
  eosToken?: TokenSpec | null;
  unkToken?: TokenSpec | null;
  padToken?: TokenSpec | null;
  maskToken?: TokenSpec | null;
  additionalSpecialTokens?: TokenSpec[];
  /** Extra tokens with fixed ids (tokenizer_config.json's added_tokens_decoder). */
  addedTokens?: (AddedTokenSpec & { id: number })[];
  /**
   * Default for decode()'s cleanUpTokenizationSpaces. false unless a config says otherwise:
   * transformers 4.36 defaults to true for OPT, which makes decode lossy (" ." -> ".").
   */
  cleanUpTokenizationSpaces?: boolean;
}

export const OPT_DEFAULTS = {
  addBosToken: true,
  bosToken: "</s>",
  eosToken: "</s>",
  unkToken: "</s>",
  padToken: "<pad>",
} as const;

const TOKEN_KEYS = {
  bos_token: "bosToken",
  eos_token: "eosToken",
  unk_token: "unkToken",
  pad_token: "padToken",
  mask_token: "maskToken",
} as const;

function tokenSpec(v: unknown, file: string, key: string): TokenSpec | null {
  if (v === null) return null;
  const t = parseAddedToken(v, file, key, true);
  return typeof v === "string" ? v : { content: t.content, lstrip: t.lstrip, rstrip: t.rstrip, singleWord: t.singleWord };
}

function bool(obj: Record<string, unknown>, key: string, file: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") fail(file, `${key} must be true or false`);
  return v;
}

/**
 * Reads tokenizer_config.json or special_tokens_map.json (same keys). Only the settings that
 * change tokenization are read; unknown keys are ignored.
 */
export function parseTokenizerConfig(text: string, file = "tokenizer_config.json"): TokenizerOptions {
  const root = parseJson(text, file);
  if (!isObject(root)) fail(file, "expected a JSON object at the top level");
  const options: TokenizerOptions = {};

  const addBos = bool(root, "add_bos_token", file);
  if (addBos !== undefined) options.addBosToken = addBos;
  const addEos = bool(root, "add_eos_token", file);
  if (addEos !== undefined) options.addEosToken = addEos;
  if (typeof root.tokenizer_class === "string") options.tokenizerClass = root.tokenizer_class;
  const chat = chatTemplateSource(root.chat_template, file);
  if (chat !== undefined) options.chatTemplate = chat;
  const prefix = bool(root, "add_prefix_space", file);
  if (prefix !== undefined) options.addPrefixSpace = prefix;
  const cleanUp = bool(root, "clean_up_tokenization_spaces", file);
  if (cleanUp !== undefined) options.cleanUpTokenizationSpaces = cleanUp;

  for (const [key, option] of Object.entries(TOKEN_KEYS)) {
    if (key in root) options[option] = tokenSpec(root[key], file, key);
  }

  const extra = root.additional_special_tokens;
  if (extra !== undefined && extra !== null) {
    if (!Array.isArray(extra)) fail(file, "additional_special_tokens must be an array");
    options.additionalSpecialTokens = extra.map(
      (t, i) => tokenSpec(t, file, `additional_special_tokens[${i}]`) ?? fail(file, `additional_special_tokens[${i}] is null`),
    );
  }

  const decoder = root.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (!isObject(decoder)) fail(file, "added_tokens_decoder must be an object of id -> token");
    options.addedTokens = Object.entries(decoder).map(([key, t]) => {
      const id = checkTokenId(/^\d+$/.test(key) ? Number(key) : key, file, `added_tokens_decoder key ${JSON.stringify(key)}`);
      return { ...parseAddedToken(t, file, `added_tokens_decoder["${id}"]`, false), id };
    });
  }
  return options;
}

/**
 * chat_template is a string, or (transformers ≥ 4.43) a list of { name, template } saved from a
 * dict of named templates.
 */
function chatTemplateSource(v: unknown, file: string): ChatTemplateSource | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  const bad = () => fail(file, 'chat_template must be a string or a list of {"name": ..., "template": ...}');
  if (!Array.isArray(v)) return bad();
  // No prototype: a template named "__proto__" or "toString" is just a name.
  const named: Record<string, string> = Object.create(null);
  for (const t of v) {
    if (!isObject(t) || typeof t.name !== "string" || typeof t.template !== "string") return bad();
    named[t.name] = t.template;
  }
  return named;
}

/** special_tokens_map.json overrides tokenizer_config.json key by key, as in transformers. */
export function mergeOptions(...layers: (TokenizerOptions | undefined)[]): TokenizerOptions {
  const out: TokenizerOptions = {};
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) {
      if (v !== undefined) (out as Record<string, unknown>)[k] = v;
    }
  }
  return out;
}
