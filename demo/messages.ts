// The messages between the page (main.ts) and the model's worker (worker.ts).
import type { WeightDType } from "../src/index.js";

export type ModelSpec =
  /** A synthetic preset (syntheticConfig: opt-125m, gpt2, smollm2-135m) with seeded random weights. */
  | { kind: "synthetic"; preset: string; seed: number }
  /** A model directory in the Hugging Face hub layout: <base>/config.json, model.safetensors, … */
  | { kind: "url"; base: string }
  /** Files picked or dropped by the user, by path in the directory (matched by base name: pickedFiles). */
  | { kind: "files"; files: Record<string, File> };

export type ToWorker =
  | { type: "load"; spec: ModelSpec; dtype: WeightDType; threads?: number }
  /** With inspect, the prompt is inspected (an "inspection" message) before generation starts. */
  | { type: "generate"; prompt: string | number[]; maxNewTokens: number; ignoreEos: boolean; inspect: boolean }
  | { type: "stop" }
  | { type: "inspect"; ids: number[] };

export interface ModelInfo {
  label: string;
  /** The family's title (OPT, GPT-2, LLaMA, Qwen2). */
  family: string;
  /** heads: query heads; kvHeads: key/value heads (fewer with grouped-query attention: query head h reads kv head h / (heads / kvHeads)). */
  layers: number;
  heads: number;
  kvHeads: number;
  hidden: number;
  vocab: number;
  maxPositions: number;
  /** Where the tokenizer came from: the model's files, or OPT's shipped with the demo. */
  tokenizer: string;
  dtype: string;
  build: string;
  threads: number;
  memoryBytes: number;
  loadMs: number;
}

/** The logit lens at one position: the top candidates after each layer. */
export interface LensCell {
  ids: number[];
  tokens: string[];
  probs: number[];
}

export interface Inspection {
  ids: number[];
  tokens: string[];
  /** norms[l][t]: |hidden state| of token t after layer l - 1 (l = 0 are the embeddings). */
  norms: number[][];
  /** lens[l][t]: the logit lens at the same points as norms; null before the last positions it is read at. */
  lens: (LensCell | null)[][];
  /** attentions[layer]: (H, T, T) softmax probabilities, row = query, column = key. */
  attentions: Float32Array[];
  ms: number;
}

export type FromWorker =
  | { type: "progress"; phase: "download" | "load"; file: string; done: number; total: number; cached?: boolean }
  | { type: "file"; file: string; bytes: number; cached: boolean }
  | { type: "loaded"; info: ModelInfo }
  | { type: "prompt"; ids: number[]; tokens: string[] }
  | { type: "token"; id: number; text: string; n: number; tokensPerSecond: number }
  | { type: "done"; newTokens: number[]; finishReason: string; tokensPerSecond: number; prefillMs: number }
  | { type: "inspection"; inspection: Inspection }
  | { type: "error"; message: string };
