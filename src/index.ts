// wasm-lm's public API, platform-neutral (no Node-only imports: see ./node.js for loading by path
// or hub id). Layers, from the bottom:
//   loadWasm / Arena        the kernels and the one owner of WebAssembly memory
//   formats                 safetensors, PyTorch .bin, shards → TensorSource
//   DecoderModel            OPT, GPT-2, LLaMA, Qwen2 layer by layer: begin → embed → layer(i) → logits, or forward()
//   Tokenizer               tokenizer.json, or OPT's GPT-2 byte-level BPE files
//   generate                greedy and sampled generation, streaming, stop conditions
//   web                     a model from a URL, a hub id or picked files, with fetch and the Cache API
export { loadWasm, detectFeatures, chooseBuild, wasmUrl, type Build, type BuildChoice, type Wasm, type KernelExports, type LoadWasmOptions } from "./wasm.js";
export { Arena, OutOfMemoryError, numel, type Tensor, type DType as TensorDType } from "./arena.js";
export * from "./formats/index.js";
export type { Dims, FamilyName, Activation } from "./models/config.js";
export {
  parseModelConfig, modelDims, familyOf, FAMILIES, SYNTHETIC_PRESETS, syntheticConfig, parseOptConfig, optDims,
  OPT_125M, GPT2_124M, SMOLLM2_135M, QWEN25_05B, type ModelConfig, type OptConfig, type Gpt2Config, type LlamaConfig,
} from "./models/families/index.js";
export { DecoderModel, KVCache, type Step, type ForwardOptions, type ForwardResult, type BeginOptions, type LoadOptions } from "./models/decoder.js";
export { WeightLoader, CheckpointNames, type ModelWeights, type LayerWeights, type Mat, type WeightDType, type WeightFormat } from "./models/weights.js";
export { SyntheticSource } from "./models/synthetic.js";
export * from "./tokenizer/index.js";
export { generate, streamGenerate, greedyBatch, Sampler, argmax, type GenerateOptions, type GenerateResult, type TokenEvent, type TextCodec, type SamplingOptions } from "./generate/index.js";
export { streamChat, chatPrompt, type ChatGenerateOptions } from "./generate/chat.js";
export { inspectPrompt, formatInspection, type Inspection, type InspectOptions, type LayerView, type Candidate, type HeadFocus } from "./inspect.js";
export {
  loadModelFromUrl, urlFiles, pickedFiles, openModelFiles, openTokenizer, resolveModelUrl, MODEL_CACHE,
  type FetchModelOptions, type LoadFromUrlOptions, type FetchProgress, type ModelFiles, type ModelCache, type LoadedFromUrl,
} from "./web.js";
export { HubError } from "./formats/hubids.js";
