// wasm-lm's public API, platform-neutral (no Node-only imports: see ./node.js for loading by path
// or hub id). What a user needs, from the bottom:
//   formats                 the checkpoint readers: safetensors, PyTorch .bin, shards, reads by ranges → TensorSource
//   DecoderModel            OPT, GPT-2, LLaMA, Qwen2 layer by layer: begin → embed → layer(i) → logits, or forward()
//   Tokenizer               tokenizer.json, or OPT's GPT-2 byte-level BPE files; chat templates
//   generate                greedy and sampled generation, streaming, stop conditions, chat
//   web                     a model from a URL, a hub id or picked files, with fetch and the Cache API
// Elsewhere: wasm-lm/node (loading by path or hub id), wasm-lm/server (the OpenAI-compatible
// handler), wasm-lm/kernels (each kernel on Float32Arrays) and wasm-lm/internals (the engine's
// parts — arena, raw kernel exports, weight tables, step buffers — with no stability promise).

// The .wasm builds: which one runs here, and where it is served from.
export { detectFeatures, chooseBuild, wasmUrl, type Build, type BuildChoice, type LoadWasmOptions, type WasmFeatures } from "./wasm.js";
export { OutOfMemoryError } from "./arena.js";

// Checkpoints.
export {
  openCheckpoint,
  openTensorFile,
  openSafetensors,
  openPytorchBin,
  writeSafetensors,
  CHECKPOINT_FILES,
  openRangedSafetensors,
  openRangedCheckpoint,
  openRangedSafetensorsCheckpoint,
  httpRangeReader,
  blobRangeReader,
  bytesRangeReader,
  isAsyncSource,
  CheckpointError,
  RangeReadError,
  type TensorSource,
  type AsyncTensorSource,
  type TensorInfo,
  type DType,
  type AnyDType,
  type FileProvider,
  type TensorToWrite,
  type RangeReader,
  type RangeOpener,
  type HttpRangeOptions,
} from "./formats/index.js";
export { HubError } from "./formats/hubids.js";
export type { DownloadProgress, RetryOptions } from "./http.js";

// Models.
export type { Dims, FamilyName, Activation } from "./models/config.js";
export {
  parseModelConfig,
  modelDims,
  configJson,
  SYNTHETIC_PRESETS,
  syntheticConfig,
  OPT_125M,
  GPT2_124M,
  SMOLLM2_135M,
  QWEN25_05B,
  type ModelConfig,
  type OptConfig,
  type Gpt2Config,
  type LlamaConfig,
} from "./models/families/index.js";
export {
  DecoderModel,
  KVCache,
  type ForwardOptions,
  type ForwardResult,
  type BeginOptions,
  type LoadOptions,
  type CacheOptions,
  type KVDType,
} from "./models/decoder.js";
export type { WeightDType } from "./models/weights.js";
export { SyntheticSource } from "./models/synthetic.js";

// Tokenizers and chat.
export { Tokenizer, TURN_END_TOKENS, validateMessages } from "./tokenizer/index.js";
export type {
  DecodeOptions,
  DecodeStream,
  EncodeOptions,
  TokenizerFiles,
  TokenizerOptions,
  TokenSpec,
  ChatTemplateSource,
  ChatMessage,
  ChatTemplateOptions,
} from "./tokenizer/index.js";

// Generation.
export {
  generate,
  streamGenerate,
  greedyBatch,
  Sampler,
  argmax,
  type GenerateOptions,
  type GenerateResult,
  type TokenEvent,
  type TokenLogprob,
  type TokenLogprobs,
  type Timings,
  type FinishReason,
  type TextCodec,
  type SamplingOptions,
} from "./generate/index.js";
export { streamChat, chatPrompt, type ChatGenerateOptions } from "./generate/chat.js";
export {
  inspectPrompt,
  formatInspection,
  type Inspection,
  type InspectOptions,
  type LayerView,
  type Candidate,
  type HeadFocus,
} from "./inspect.js";

// Loading over fetch (browsers, Workers, Deno, Bun, Node).
export {
  loadModelFromUrl,
  urlFiles,
  pickedFiles,
  openModelFiles,
  openTokenizer,
  resolveModelUrl,
  MODEL_CACHE,
  type FetchModelOptions,
  type LoadFromUrlOptions,
  type FetchProgress,
  type ModelFiles,
  type ModelCache,
  type LoadedFromUrl,
} from "./web.js";
