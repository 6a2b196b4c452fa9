// The only export surface of the wasm module. Every kernel: raw byte pointers into linear memory,
// f32 row-major tensors, i32 sizes, output first, no allocation. Each SIMD kernel has a `<name>Scalar`
// twin with the same signature (the reference its tests compare against).
export { linear, linearScalar } from "./kernels/linear";
export { layerNorm, layerNormScalar, rmsNorm, rmsNormScalar } from "./kernels/norm";
export { softmax, softmaxScalar } from "./kernels/softmax";
export {
  attention, attentionScalar, attentionF16, attentionF16Scalar, kvStore, kvStoreScalar, kvStoreF16, kvStoreF16Scalar,
} from "./kernels/attention";
export { rope, ropeScalar } from "./kernels/rope";
export {
  relu, reluScalar, gelu, geluScalar, geluTanh, geluTanhScalar, silu, siluScalar, swiglu, swigluScalar,
  add, addScalar, addBias, addBiasScalar, embedGather, embedGatherScalar, scale, scaleScalar,
} from "./kernels/elementwise";

/** First byte above the module's static data: the TypeScript arena allocates from here up. */
export function heapBase(): usize {
  return __heap_base;
}
export {
  linearF16, linearF16Scalar, linearI8, linearI8Scalar, quantizeI8, f32ToF16Rows, quantRows,
  quantizeActI16, quantizeActI16Scalar, matvecI8A16, matvecI8A16Scalar,
  embedGatherF16, embedGatherI8,
} from "./kernels/linear_quant";
export {
  quantizeActI8, quantizeActI8Scalar, quantizeQ4, embedGatherQ4, linearQ4, linearQ4Scalar, linearI8Dot, linearI8DotScalar,
} from "./kernels/linear_dot";
export { actTiles, actTilesScalar, gemmQ4Tiles, gemmQ4TilesScalar } from "./kernels/gemm_dot";
