// Node-only helper: reads a model directory's tokenizer files and hands their contents to the
// platform-neutral core. Synchronous because the files are small (about 1.3 MB for OPT) and
// read once at start-up, which keeps call sites simple.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer, type TokenizerFiles } from "./tokenizer.js";

const FILES = {
  tokenizerJson: "tokenizer.json",
  vocabJson: "vocab.json",
  mergesTxt: "merges.txt",
  tokenizerConfigJson: "tokenizer_config.json",
  specialTokensMapJson: "special_tokens_map.json",
  chatTemplateJinja: "chat_template.jinja",
} as const satisfies Record<keyof TokenizerFiles, string>;

/**
 * Loads the tokenizer in `dir`: tokenizer.json if present (through @huggingface/tokenizers), else
 * vocab.json + merges.txt (the slow GPT-2 tokenizer), with tokenizer_config.json /
 * special_tokens_map.json for special tokens and add_bos_token, and the chat template from
 * chat_template.jinja or tokenizer_config.json.
 * Errors name the directory and the file at fault.
 */
export function loadTokenizer(dir: string): Tokenizer {
  const files: TokenizerFiles = {};
  for (const [key, name] of Object.entries(FILES) as [keyof TokenizerFiles, string][]) {
    const path = join(dir, name);
    if (existsSync(path)) files[key] = readFileSync(path, "utf8");
  }
  const hasModel = files.tokenizerJson !== undefined || files.vocabJson !== undefined || files.mergesTxt !== undefined;
  if (!hasModel) {
    throw new Error(`loadTokenizer: no tokenizer in ${JSON.stringify(dir)} (expected tokenizer.json, or vocab.json and merges.txt)`);
  }
  try {
    return Tokenizer.fromFiles(files, `in ${JSON.stringify(dir)}`);
  } catch (e) {
    throw new Error(`loadTokenizer(${JSON.stringify(dir)}): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}
