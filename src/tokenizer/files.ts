// Parsers for tokenizer files, which may come from anywhere (a downloaded model directory, a
// user upload): every malformation becomes one Error whose one-line message names the file
// and the problem, instead of a TypeError or a silently wrong tokenizer later on.

import type { Merge } from "./bpe.js";
import { escapeControls } from "../formats/types.js";

/** Token ids above this are refused: tables are sized by the largest id. */
export const MAX_TOKEN_ID = 2 ** 24 - 1;

/** A token that is matched literally in the text before BPE (special or user-added). */
export interface AddedTokenSpec {
  content: string;
  /** Whether decode({ skipSpecialTokens: true }) drops it. */
  special: boolean;
  /** Eat whitespace on the left / right of the token in the input text. */
  lstrip: boolean;
  rstrip: boolean;
  /** Only match as a whole word (transformers' slow-tokenizer semantics). */
  singleWord: boolean;
}

export function fail(file: string, problem: string): never {
  throw new Error(`${file}: ${problem}`);
}

/** A short, escaped, single-line rendering of untrusted text for error messages. */
export function quote(s: string, max = 40): string {
  // JSON.stringify escapes C0 controls but not C1 (CSI) or the Unicode line separators.
  return escapeControls(JSON.stringify(s.length > max ? s.slice(0, max) + "…" : s));
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `the string ${quote(v)}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

export function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8 quotes the text around the error, raw: no CR or ESC from the file may reach a terminal.
    const why = escapeControls((e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").slice(0, 120));
    return fail(file, `not valid JSON (${why})`);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function checkTokenId(v: unknown, file: string, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    fail(file, `${what} is not a non-negative integer (got ${describe(v)})`);
  }
  if (v > MAX_TOKEN_ID) fail(file, `${what} is ${v}, above the supported maximum id ${MAX_TOKEN_ID}`);
  return v;
}

/**
 * Validates a token -> id object (vocab.json, or tokenizer.json's model.vocab) and returns its
 * keys and largest id. Lean on purpose: building a 50,000-token vocabulary is most of what a
 * tokenizer costs in memory (a third of an edge isolate's). No map, no entry pairs, no message
 * built per token, and duplicate ids found by sorting a typed array.
 */
function checkVocab(obj: unknown, file: string, where: string): { tokens: string[]; maxId: number } {
  if (!isObject(obj)) fail(file, `${where} must be an object of token string -> id, got ${describe(obj)}`);
  const tokens = Object.keys(obj);
  const ids = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const v = obj[tokens[i]];
    ids[i] =
      typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_TOKEN_ID
        ? v
        : checkTokenId(v, file, `value for ${quote(tokens[i])}`);
  }
  if (tokens.length === 0) fail(file, `${where} is empty`);
  ids.sort();
  for (let i = 1; i < ids.length; i++) {
    if (ids[i] === ids[i - 1]) {
      const [a, b] = tokens.filter((t) => obj[t] === ids[i]);
      fail(file, `id ${ids[i]} is used by both ${quote(a)} and ${quote(b)}`);
    }
  }
  return { tokens, maxId: ids[ids.length - 1] };
}

function vocabFromObject(obj: unknown, file: string, where: string): Map<string, number> {
  const { tokens } = checkVocab(obj, file, where);
  const values = obj as Record<string, number>;
  const vocab = new Map<string, number>();
  for (const t of tokens) vocab.set(t, values[t]);
  return vocab;
}

export function parseVocabJson(text: string, file = "vocab.json"): Map<string, number> {
  return vocabFromObject(parseJson(text, file), file, "the top level");
}

/**
 * merges.txt: an optional "#version: ..." first line, then one "left right" pair per line in
 * rank order. Blank lines are allowed only at the end (the trailing newline). transformers'
 * slow tokenizer drops line 1 unconditionally; we drop it only when it is the header, like the
 * Rust tokenizers library, so a header-less file loses no merge.
 */
export function parseMergesTxt(text: string, file = "merges.txt"): Merge[] {
  // Line by line with indexOf rather than split(): no array of 50,000 lines, none per line.
  let end = text.length;
  while (end > 0 && (text[end - 1] === "\n" || text[end - 1] === "\r")) end--;
  const merges: Merge[] = [];
  for (let at = 0, line = 1; at < end; line++) {
    let nl = text.indexOf("\n", at);
    if (nl < 0 || nl > end) nl = end;
    const stop = nl > at && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl; // without a trailing CR
    const start = at;
    at = nl + 1;
    if (line === 1 && text.startsWith("#version", start)) continue;
    const sp = text.indexOf(" ", start);
    if (sp <= start || sp >= stop - 1 || text.lastIndexOf(" ", stop - 1) !== sp) {
      fail(file, `line ${line} is not two space-separated symbols: ${quote(text.slice(start, stop))}`);
    }
    merges.push([text.slice(start, sp), text.slice(sp + 1, stop)]);
  }
  return merges;
}

function optionalBool(obj: Record<string, unknown>, key: string, file: string, where: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") fail(file, `${where}.${key} must be true or false (got ${describe(v)})`);
  return v;
}

export function parseAddedToken(v: unknown, file: string, where: string, special: boolean): AddedTokenSpec {
  if (typeof v === "string") {
    if (v === "") fail(file, `${where} is an empty string`);
    return { content: v, special, lstrip: false, rstrip: false, singleWord: false };
  }
  if (!isObject(v)) fail(file, `${where} must be a string or an object with "content" (got ${describe(v)})`);
  const content = v.content;
  if (typeof content !== "string" || content === "") fail(file, `${where}.content must be a non-empty string`);
  return {
    content,
    special: v.special === undefined ? special : optionalBool(v, "special", file, where),
    lstrip: optionalBool(v, "lstrip", file, where),
    rstrip: optionalBool(v, "rstrip", file, where),
    singleWord: optionalBool(v, "single_word", file, where),
  };
}

/** A merge in tokenizer.json: "left right" (older files) or ["left", "right"]. Checked without allocating. */
function checkMerge(m: unknown, file: string, index: number): void {
  if (typeof m === "string") {
    const sp = m.indexOf(" ");
    if (sp > 0 && sp < m.length - 1 && m.indexOf(" ", sp + 1) < 0) return;
  } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string" && m[0] !== "" && m[1] !== "") {
    return;
  }
  fail(file, `model.merges[${index}] is not "left right" or ["left", "right"] (got ${describe(m)})`);
}

/** An added token as tokenizer.json stores it (the fields @huggingface/tokenizers reads). */
export interface TokenizerJsonAddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
  normalized: boolean;
}

/** A checked tokenizer.json: what @huggingface/tokenizers' Tokenizer constructor takes. */
export interface TokenizerJson {
  model: Record<string, unknown> & { type: string };
  added_tokens: TokenizerJsonAddedToken[];
  normalizer: Record<string, unknown> | null;
  pre_tokenizer: Record<string, unknown> | null;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown> | null;
  /** One past the largest id of the model's vocabulary and the added tokens. */
  vocabSize: number;
}

const MODEL_TYPES = ["BPE", "Unigram", "WordPiece"];

/**
 * A Hugging Face tokenizer.json, checked as far as a bad file would otherwise fail later with a
 * TypeError inside the library: the model's vocabulary and merges, the added tokens, and that
 * each pipeline component is null or an object with a "type" (whether the library knows the type
 * is checked when it is built).
 */
export function parseTokenizerJson(text: string, file = "tokenizer.json"): TokenizerJson {
  const root = parseJson(text, file);
  if (!isObject(root)) fail(file, `expected a JSON object at the top level, got ${describe(root)}`);
  const model = root.model;
  if (!isObject(model)) fail(file, `missing "model" object`);
  if (model.type === undefined) fail(file, `missing model.type (expected one of ${MODEL_TYPES.map((t) => `"${t}"`).join(", ")})`);
  if (typeof model.type !== "string" || !MODEL_TYPES.includes(model.type)) {
    fail(file, `model.type is ${describe(model.type)}, supported: ${MODEL_TYPES.map((t) => `"${t}"`).join(", ")}`);
  }
  if (model.vocab === undefined) fail(file, `missing model.vocab`);
  let vocabSize: number;
  if (model.type === "Unigram") {
    // [[piece, score], ...]: the id is the index.
    const v = model.vocab;
    if (!Array.isArray(v) || v.length === 0) fail(file, `model.vocab of a Unigram model must be a non-empty array of [piece, score]`);
    v.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number")
        fail(file, `model.vocab[${i}] is not [piece, score] (got ${describe(e)})`);
    });
    vocabSize = v.length;
  } else {
    vocabSize = checkVocab(model.vocab, file, "model.vocab").maxId + 1;
  }
  if (model.type === "BPE") {
    if (model.merges === undefined) fail(file, `missing model.merges`);
    if (!Array.isArray(model.merges)) fail(file, `model.merges must be an array (got ${describe(model.merges)})`);
    model.merges.forEach((m, i) => checkMerge(m, file, i));
  }

  const added_tokens: TokenizerJsonAddedToken[] = [];
  if (root.added_tokens !== undefined && root.added_tokens !== null) {
    if (!Array.isArray(root.added_tokens)) fail(file, `added_tokens must be an array`);
    root.added_tokens.forEach((t, i) => {
      const where = `added_tokens[${i}]`;
      if (!isObject(t)) fail(file, `${where} must be an object (got ${describe(t)})`);
      const id = checkTokenId(t.id, file, `${where}.id`);
      const spec = parseAddedToken(t, file, where, false);
      added_tokens.push({
        id,
        content: spec.content,
        special: spec.special,
        lstrip: spec.lstrip,
        rstrip: spec.rstrip,
        single_word: spec.singleWord,
        normalized: t.normalized === undefined ? !spec.special : optionalBool(t, "normalized", file, where),
      });
      vocabSize = Math.max(vocabSize, id + 1);
    });
  }

  const component = (key: string): Record<string, unknown> | null => {
    const v = root[key];
    if (v === undefined || v === null) return null;
    if (!isObject(v) || typeof v.type !== "string") fail(file, `${key} must be null or an object with a "type" (got ${describe(v)})`);
    return v;
  };
  return {
    model: model as TokenizerJson["model"],
    added_tokens,
    normalizer: component("normalizer"),
    pre_tokenizer: component("pre_tokenizer"),
    post_processor: component("post_processor"),
    decoder: component("decoder"),
    vocabSize,
  };
}
