// The families wasm-lm runs, found by config.json's model_type.
import { oneLine } from "../../formats/types.js";
import { jsonObject, show, type Dims } from "../config.js";
import type { Family } from "../family.js";
import { GPT2, type Gpt2Config } from "./gpt2.js";
import { LLAMA, QWEN2, type LlamaConfig } from "./llama.js";
import { OPT, type OptConfig } from "./opt.js";

export type ModelConfig = OptConfig | Gpt2Config | LlamaConfig;

export const FAMILIES: Family<ModelConfig>[] = [OPT, GPT2, LLAMA, QWEN2] as Family<ModelConfig>[];

const MODEL_TYPES = FAMILIES.flatMap((f) => f.modelTypes);

const unsupported = (type: unknown) =>
  `model_type ${typeof type === "string" ? `'${oneLine(type, 80)}'` : show(type)} is not supported (supported: ${MODEL_TYPES.join(", ")})`;

/** The family of a parsed config (an OPT config may have no model_type: OPT was the first family). */
export function familyOf(config: { model_type?: string }): Family<ModelConfig> {
  const type = config.model_type ?? "opt";
  const f = FAMILIES.find((x) => x.modelTypes.includes(type));
  if (!f) throw new Error(`wasm-lm: ${unsupported(type)}`);
  return f;
}

/**
 * Parse and validate a config.json (text or object) of any supported family. `label` names the
 * file in errors. A config without model_type is read as OPT's.
 */
export function parseModelConfig(input: string | unknown, label = "config.json"): ModelConfig {
  const cfg = jsonObject(input, label);
  const type = cfg.model_type ?? "opt";
  const f = FAMILIES.find((x) => x.modelTypes.includes(type as string));
  if (!f) throw new Error(`${label}: ${unsupported(type)}`);
  return f.parse(cfg, label);
}

export function modelDims(config: ModelConfig): Dims {
  return familyOf(config).dims(config);
}

/** `synthetic:<preset>` shapes: the real models' configs with seeded random weights. */
export const SYNTHETIC_PRESETS: Record<string, ModelConfig> = Object.assign({}, ...FAMILIES.map((f) => f.presets));

export function syntheticConfig(preset: string): ModelConfig {
  const c = Object.hasOwn(SYNTHETIC_PRESETS, preset) ? SYNTHETIC_PRESETS[preset] : undefined;
  if (!c) throw new Error(`wasm-lm: unknown synthetic preset '${preset}' (known: ${Object.keys(SYNTHETIC_PRESETS).join(", ")})`);
  return structuredClone(c);
}

/** The config.json wasm-lm writes for a model (synth, quantize): Hugging Face's fields. */
export function configJson(config: ModelConfig, extra: Record<string, unknown> = {}): string {
  const f = familyOf(config);
  return JSON.stringify({ architectures: [f.architecture], model_type: f.modelTypes[0], ...extra, ...config }, null, 2) + "\n";
}

export { OPT, GPT2, LLAMA, QWEN2 };
export { parseOptConfig, optDims, OPT_125M, type OptConfig } from "./opt.js";
export { GPT2_124M, type Gpt2Config } from "./gpt2.js";
export { SMOLLM2_135M, QWEN25_05B, type LlamaConfig } from "./llama.js";
