// The package's entry points as users meet them: "wasm-lm" exports what a user needs and nothing of
// the engine's insides, which live in "wasm-lm/internals"; "wasm-lm/kernels" is the kernels on
// Float32Arrays; package.json maps each subpath to its built file. A name moving between entries is
// a breaking change (CHANGELOG.md): this test makes it a deliberate one.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as root from "../src/index.js";
import * as internals from "../src/internals.js";
import * as kernels from "../src/kernels.js";

const ROOT = [
  // loading the .wasm, errors
  "chooseBuild",
  "detectFeatures",
  "wasmUrl",
  "OutOfMemoryError",
  // checkpoints
  "CHECKPOINT_FILES",
  "CheckpointError",
  "HubError",
  "RangeReadError",
  "blobRangeReader",
  "bytesRangeReader",
  "httpRangeReader",
  "isAsyncSource",
  "openCheckpoint",
  "openPytorchBin",
  "openRangedCheckpoint",
  "openRangedSafetensors",
  "openRangedSafetensorsCheckpoint",
  "openSafetensors",
  "openTensorFile",
  "writeSafetensors",
  // models and configs
  "DecoderModel",
  "KVCache",
  "SyntheticSource",
  "configJson",
  "modelDims",
  "parseModelConfig",
  "syntheticConfig",
  "SYNTHETIC_PRESETS",
  "OPT_125M",
  "GPT2_124M",
  "SMOLLM2_135M",
  "QWEN25_05B",
  // tokenizers and chat
  "Tokenizer",
  "TURN_END_TOKENS",
  "validateMessages",
  // generation, inspection
  "Sampler",
  "argmax",
  "chatPrompt",
  "generate",
  "greedyBatch",
  "streamChat",
  "streamGenerate",
  "formatInspection",
  "inspectPrompt",
  // loading over fetch
  "MODEL_CACHE",
  "loadModelFromUrl",
  "openModelFiles",
  "openTokenizer",
  "pickedFiles",
  "resolveModelUrl",
  "urlFiles",
];

/** Names that left the root in this release (CHANGELOG.md, "Changed (breaking)"). */
const MOVED_TO_INTERNALS = [
  "Arena",
  "loadWasm",
  "numel",
  "WeightLoader",
  "CheckpointNames",
  "familyOf",
  "FAMILIES",
  "parseOptConfig",
  "optDims",
  "SafetensorsSource",
  "PytorchSource",
  "RangedSafetensors",
  "MultiSource",
  "parseShardIndex",
  "shardFiles",
  "isPlainFileName",
  "safetensorsHeaderLength",
  "parseSafetensorsHeader",
  "DTYPE_SIZE",
  "isAnyDType",
  "isSupportedDType",
  "f16ToF32",
  "f32ToF16",
  "bf16ToF32",
  "f32ToBf16",
  "convertToF32",
  "f32ArrayToF16Bytes",
  "f32ArrayToBf16Bytes",
  "f32ArrayToBytes",
  "cleanUpTokenization",
  "parseTokenizerConfig",
  "parseMergesTxt",
  "parseTokenizerJson",
  "parseVocabJson",
];

const sorted = (a: string[]) => [...a].sort();

describe("entry points", () => {
  it("wasm-lm exports exactly the user's API", () => {
    expect(sorted(Object.keys(root))).toEqual(sorted(ROOT));
  });

  it("wasm-lm/internals has every moved name, and shares no name with wasm-lm", () => {
    const inner = Object.keys(internals);
    for (const name of MOVED_TO_INTERNALS) expect(inner, name).toContain(name);
    expect(inner.filter((n) => n in root)).toEqual([]);
    expect(inner).toEqual(expect.arrayContaining(["ThreadPool", "PAGE", "MAX_PAGES", "align"]));
  });

  it("wasm-lm/kernels: loadKernels, Kernels, ropeTable", () => {
    expect(sorted(Object.keys(kernels))).toEqual(["Kernels", "loadKernels", "ropeTable"]);
    const methods = Object.getOwnPropertyNames(kernels.Kernels.prototype).filter((n) => n !== "constructor");
    expect(sorted(methods)).toEqual(
      sorted([
        "build",
        "memoryBytes",
        "linear",
        "layerNorm",
        "rmsNorm",
        "softmax",
        "attention",
        "rope",
        "swiglu",
        "gelu",
        "geluTanh",
        "silu",
        "relu",
      ]),
    );
  });

  it("package.json maps each subpath to the file built from its source", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    const want: Record<string, string> = {
      ".": "index",
      "./node": "node",
      "./server": "server/handler",
      "./kernels": "kernels",
      "./internals": "internals",
    };
    for (const [subpath, file] of Object.entries(want)) {
      const entry = pkg.exports[subpath];
      expect(entry, subpath).toBeDefined();
      expect(entry.types, subpath).toBe(`./dist/${file}.d.ts`);
      expect(entry.default, subpath).toBe(`./dist/${file}.js`);
    }
  });
});
