// wasm-lm/internals: the engine's parts, for tools, benchmarks and experiments. No stability
// promise: these change with the engine (a minor version may rename a field or a pointer). What a
// user needs is in "wasm-lm" (and wasm-lm/node, wasm-lm/server, wasm-lm/kernels).
//
//   loadWasm / Wasm / KernelExports   the instantiated .wasm and its raw pointer-and-size exports
//   Arena / Tensor                    the one owner of WebAssembly memory (a bump allocator)
//   ThreadPool                        worker threads over a shared memory, splitting kernel calls
//   Family / familyOf / FAMILIES      a family's config reader, checkpoint-name tables and block recipe
//   WeightLoader / CheckpointNames    the checkpoint → weights table, checked at load
//   Mat / LayerWeights / ModelWeights the weights in wasm memory (pointers, dtype, int8 scales)
//   Step / StepBuffers / StepRow      one call's scratch pointers and cache rows (model.begin's result)
//   formats' low-level pieces         the readers' classes, header parsers, shard indexes, dtype conversions
//   tokenizer files' parsers          vocab.json, merges.txt, tokenizer.json, tokenizer_config.json

export { loadWasm, PAGE, MAX_PAGES, type Wasm, type KernelExports } from "./wasm.js";
export { Arena, align, numel, MAX_BYTES, DTYPE_BYTES, type Tensor, type DType as TensorDType } from "./arena.js";
export { ThreadPool, defaultThreads, splitJob, SPLITS, SPLITTABLE, type SplitKernel, type SplitJob, type SplitArgs } from "./threads.js";

export { familyOf, FAMILIES, OPT, GPT2, LLAMA, QWEN2, parseOptConfig, optDims } from "./models/families/index.js";
export type { Family, FamilyConfig, TensorRef, LayerField, GlobalField } from "./models/family.js";
export type { Json } from "./models/config.js";
export {
  WeightLoader,
  CheckpointNames,
  WEIGHT_DTYPES,
  DEFAULT_INT8_GROUP,
  matBytes,
  layerBytes,
  weightBytes,
  type Mat,
  type LayerWeights,
  type ModelWeights,
  type WeightFormat,
  type RowBytes,
} from "./models/weights.js";
export type { Step, StepBuffers, StepRow } from "./models/decoder.js";

export {
  SafetensorsSource,
  PytorchSource,
  RangedSafetensors,
  MultiSource,
  parseShardIndex,
  shardFiles,
  isPlainFileName,
  type Shard,
  safetensorsHeaderLength,
  parseSafetensorsHeader,
  type SafetensorsEntry,
  DTYPE_SIZE,
  isAnyDType,
  isSupportedDType,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  convertToF32,
  f32ArrayToF16Bytes,
  f32ArrayToBf16Bytes,
  f32ArrayToBytes,
} from "./formats/index.js";
export type { MergedRead } from "./formats/ranged.js";
export type { ResolveOptions } from "./formats/hub.js";

export {
  cleanUpTokenization,
  parseTokenizerConfig,
  parseMergesTxt,
  parseTokenizerJson,
  parseVocabJson,
  type AddedTokenSpec,
} from "./tokenizer/index.js";
export type { Merge } from "./tokenizer/bpe.js";
export type { TokenizerJson, TokenizerJsonAddedToken } from "./tokenizer/files.js";
