// Loading a model by name in Node (and Bun/Deno's Node compatibility): a local Hugging Face model
// directory, a hub id (downloaded into a cache), or "synthetic:<preset>" (seeded random weights).
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openCheckpointDir, type CheckpointDirOptions } from "./formats/node.js";
import { resolveModel, type ResolveOptions } from "./formats/hub.js";
export type { ResolveOptions } from "./formats/hub.js";
import type { TensorSource } from "./formats/types.js";
import { familyOf, parseModelConfig, syntheticConfig, type ModelConfig } from "./models/families/index.js";
import { DecoderModel, type LoadOptions } from "./models/decoder.js";
import { SyntheticSource } from "./models/synthetic.js";
import { loadTokenizer } from "./tokenizer/node.js";
import type { Tokenizer } from "./tokenizer/index.js";

export const DEFAULT_MODEL = "synthetic:opt-125m";

/** The OPT tokenizer files shipped with the package (every OPT size uses the same tokenizer). */
export const OPT_TOKENIZER_DIR = fileURLToPath(new URL("../tokenizers/opt/", import.meta.url));

export interface LoadModelOptions extends LoadOptions, ResolveOptions, CheckpointDirOptions {
  /** Seed of a synthetic model's weights (default 0). */
  seed?: number;
  /**
   * A directory to load the tokenizer from instead of the model's (tokenizer.json, or vocab.json +
   * merges.txt, with tokenizer_config.json).
   */
  tokenizer?: string;
}

export interface LoadedModel {
  model: DecoderModel;
  /**
   * The model directory's tokenizer (or opts.tokenizer's); OPT models without one get the OPT
   * tokenizer shipped with the package; null for other families without tokenizer files (token
   * ids still work).
   */
  tokenizer: Tokenizer | null;
  config: ModelConfig;
  /** Where the weights came from: a directory, or the synthetic preset. */
  location: string;
}

const TOKENIZER_FILES = ["tokenizer.json", "vocab.json"];

/** Config, checkpoint and tokenizer of a model spec, without loading weights into WebAssembly. */
export async function openModel(
  spec: string,
  opts: LoadModelOptions = {},
): Promise<{ config: ModelConfig; source: TensorSource; tokenizer: Tokenizer | null; location: string }> {
  if (opts.tokenizer !== undefined && !(existsSync(opts.tokenizer) && statSync(opts.tokenizer).isDirectory())) {
    throw new Error(`wasm-lm: tokenizer directory '${opts.tokenizer}' does not exist`);
  }
  if (spec.startsWith("synthetic:")) {
    // Synthetic models of every family use the OPT tokenizer shipped (GPT-2's byte-level BPE): ids
    // past a model's vocabulary are never generated, and the text is noise anyway.
    const config = syntheticConfig(spec.slice("synthetic:".length));
    return {
      config,
      source: new SyntheticSource(config, opts.seed ?? 0),
      tokenizer: loadTokenizer(opts.tokenizer ?? OPT_TOKENIZER_DIR),
      location: spec,
    };
  }
  let dir = spec;
  if (!(existsSync(spec) && statSync(spec).isDirectory())) {
    if (spec.startsWith(".") || spec.startsWith("/") || spec.split("/").length !== 2) {
      throw new Error(`wasm-lm: model '${spec}' is not a directory, a hub id (owner/name) or synthetic:<preset>`);
    }
    // Refuse a config we cannot run before the weights are downloaded.
    dir = await resolveModel(spec, { ...opts, checkConfig: opts.checkConfig ?? ((text, path) => void parseModelConfig(text, path)) });
  }
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw new Error(`wasm-lm: ${configPath} not found (a model directory needs config.json)`);
  const config = parseModelConfig(readFileSync(configPath, "utf8"), configPath);
  const source = openCheckpointDir(dir, { verifyChecksums: opts.verifyChecksums });
  const hasTokenizer = TOKENIZER_FILES.some((f) => existsSync(join(dir, f)));
  const tokenizerDir = opts.tokenizer ?? (hasTokenizer ? dir : familyOf(config).name === "opt" ? OPT_TOKENIZER_DIR : null);
  const tokenizer = tokenizerDir === null ? null : loadTokenizer(tokenizerDir);
  return { config, source, tokenizer, location: dir };
}

/** Open a model spec and load its weights into WebAssembly memory. */
export async function loadModel(spec: string = DEFAULT_MODEL, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { config, source, tokenizer, location } = await openModel(spec, opts);
  const model = await DecoderModel.load(config, source, { ...opts, label: opts.label ?? location });
  return { model, tokenizer, config, location };
}
