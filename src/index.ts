// wasm-lm's public API, platform-neutral (no Node-only imports: see ./node.js for loading by path
// or hub id). Layers, from the bottom:
//   loadWasm / Arena        the kernels and the one owner of WebAssembly memory
//   formats                 safetensors, PyTorch .bin, shards → TensorSource
//   OptModel                OPT layer by layer: begin → embed → layer(i) → logits, or forward()
//   Tokenizer               OPT's GPT-2 byte-level BPE
//   generate                greedy and sampled generation, streaming, stop conditions
//   web                     a model from a URL, a hub id or picked files, with fetch and the Cache API
export { loadWasm, detectFeatures, chooseBuild, wasmUrl, type Build, type BuildChoice, type Wasm, type KernelExports, type LoadWasmOptions } from "./wasm.js";
export { Arena, OutOfMemoryError, numel, type Tensor, type DType as TensorDType } from "./arena.js";
export * from "./formats/index.js";
export { parseOptConfig, optDims, OPT_125M, type OptConfig, type OptDims } from "./models/opt/config.js";
export { OptModel, KVCache, type Step, type ForwardOptions, type ForwardResult, type BeginOptions, type LoadOptions } from "./models/opt/model.js";
export { WeightLoader, CheckpointNames, type OptWeights, type OptLayerWeights, type Mat, type WeightDType, type WeightFormat } from "./models/opt/weights.js";
export { SyntheticSource, syntheticConfig, SYNTHETIC_PRESETS } from "./models/opt/synthetic.js";
export * from "./tokenizer/index.js";
export { generate, streamGenerate, greedyBatch, Sampler, argmax, type GenerateOptions, type GenerateResult, type TokenEvent, type TextCodec, type SamplingOptions } from "./generate/index.js";
export { inspectPrompt, formatInspection, type Inspection, type InspectOptions, type LayerView, type Candidate, type HeadFocus } from "./inspect.js";
export {
  loadModelFromUrl, urlFiles, pickedFiles, openModelFiles, openTokenizer, resolveModelUrl, MODEL_CACHE,
  type FetchModelOptions, type LoadFromUrlOptions, type FetchProgress, type ModelFiles, type ModelCache, type LoadedFromUrl,
} from "./web.js";
export { HubError } from "./formats/hubids.js";
