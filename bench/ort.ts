// The peer: ONNX Runtime Web's WASM backend running in Node, on one-node graphs written by ./onnx.ts.
//
// Configuration (printed by the bench, see describeOrt):
//   env.wasm.numThreads = 1   one thread, no worker (our kernels run on one thread too); the model
//                             bench (model.ts) also runs 2: initOrt(2), one setting per process
//   env.wasm.simd = true      SIMD128 (the package ships one build, ort-wasm-simd-threaded.wasm,
//                             which has no relaxed-SIMD instructions: it validates without the flag)
//   env.wasm.proxy = false    run on this thread, no proxy worker
//   env.wasm.wasmBinary       read from the installed package: no fetch, no CDN, runs offline
//   session: executionProviders ["wasm"], graphOptimizationLevel "all" (so MatMul+Add may fuse,
//            and constant weights are pre-packed by MLAS), sequential execution.
// Outputs are not pre-allocated: in 1.30 a pre-allocated 'cpu' output tensor comes back all zeros
// (microsoft/onnxruntime#25786), so every run also copies its output out of the wasm heap.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as ort from "onnxruntime-web";
import { DataType, OnnxGraph } from "./onnx.js";

export { ort };

export const ORT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  executionProviders: ["wasm"],
  graphOptimizationLevel: "all",
  executionMode: "sequential",
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  logSeverityLevel: 3,
};

const require = createRequire(import.meta.url);
let ready: Promise<void> | undefined;
let readyThreads = 1;

/**
 * Configure ORT once; any attempt to fetch a non-file URL while it loads is an error.
 * numThreads > 1 (bench/model.ts) makes ORT start numThreads - 1 pthread workers (Node worker_threads
 * running ort-wasm-simd-threaded.mjs) for its global intra-op thread pool; it is fixed per process.
 */
export function initOrt(numThreads = 1): Promise<void> {
  if (ready && numThreads !== readyThreads) {
    throw new Error(`bench: ORT is already initialised with ${readyThreads} thread(s); numThreads is per process`);
  }
  readyThreads = numThreads;
  ready ??= (async () => {
    const wasmPath = require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm");
    ort.env.wasm.numThreads = numThreads;
    ort.env.wasm.simd = true;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmBinary = readFileSync(wasmPath);
    ort.env.logLevel = "error";
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const url = String(input instanceof Request ? input.url : input);
      if (!url.startsWith("file:")) throw new Error(`bench: ORT tried to fetch ${url} (the bench must run offline)`);
      return realFetch(input, init);
    }) as typeof fetch;
    try {
      // A tiny session forces the backend to initialise now, under the fetch guard.
      await (await createSession(tinyAddGraph())).release();
    } finally {
      globalThis.fetch = realFetch;
    }
  })();
  return ready;
}

export function describeOrt(): string {
  const v = ort.env.versions as Record<string, string>;
  return (
    `onnxruntime-web ${v.web ?? "?"} (wasm EP, numThreads=${ort.env.wasm.numThreads}, ` +
    `simd=${String(ort.env.wasm.simd)}, proxy=${String(ort.env.wasm.proxy)}, graphOptimizationLevel=all, ` +
    `wasm binary from node_modules)`
  );
}

export function createSession(model: Uint8Array, extra: ort.InferenceSession.SessionOptions = {}): Promise<ort.InferenceSession> {
  // ORT Web runs every session on its global thread pool (env.wasm.numThreads); intraOpNumThreads
  // is passed along for the record.
  return ort.InferenceSession.create(model, { ...ORT_SESSION_OPTIONS, intraOpNumThreads: readyThreads, ...extra });
}

export const f32Tensor = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);

/** Run and return one output's data (the first by default). */
export async function runOne(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, output = s.outputNames[0]): Promise<Float32Array> {
  const out = await s.run(feeds);
  return out[output].data as Float32Array;
}

// ---------------------------------------------------------------------------------------------
// One-node graphs. Symbolic "T"/"rows" so one session serves every sequence length.

export type LinearVariant = "Gemm" | "MatMul+Add";

/**
 * y = x·Wᵀ + b with W (N, K) as PyTorch stores it.
 *   Gemm:       Gemm(x, W, b, transB=1), W stored (N, K) as is
 *   MatMul+Add: MatMul(x, Wᵀ) then Add(b), Wᵀ stored (K, N) (without a bias: MatMul alone)
 */
export function linearGraph(variant: LinearVariant, w: Float32Array, b: Float32Array | null, K: number, N: number): Uint8Array {
  const g = new OnnxGraph(`linear_${K}x${N}_${variant}`);
  g.addInput("x", DataType.FLOAT, ["T", K]);
  if (variant === "Gemm") {
    g.addInitializer("w", w, [N, K]);
    if (b) g.addInitializer("b", b, [N]);
    g.addNode("Gemm", b ? ["x", "w", "b"] : ["x", "w"], ["y"], { transB: 1 });
  } else {
    g.addInitializer("wT", transpose(w, N, K), [K, N]);
    if (b) {
      g.addInitializer("b", b, [N]);
      g.addNode("MatMul", ["x", "wT"], ["xw"]);
      g.addNode("Add", ["xw", "b"], ["y"]);
    } else {
      g.addNode("MatMul", ["x", "wT"], ["y"]);
    }
  }
  g.addOutput("y", DataType.FLOAT, ["T", N]);
  return g.toBytes();
}

export function layerNormGraph(w: Float32Array, b: Float32Array, C: number, eps: number, L = 1): Uint8Array {
  let first = true;
  return chainGraph(L, ["T", C], (g, x, y) => {
    if (first) {
      g.addInitializer("w", w, [C]);
      g.addInitializer("b", b, [C]);
      first = false;
    }
    g.addNode("LayerNormalization", [x, "w", "b"], [y], { axis: -1, epsilon: eps });
  });
}

export function softmaxGraph(cols: number, L = 1): Uint8Array {
  return chainGraph(L, ["rows", cols], (g, x, y) => g.addNode("Softmax", [x], [y], { axis: -1 }));
}

/**
 * R Gemm nodes side by side in one graph, node i reading x with its own W_i: one run streams every
 * matrix once, so session.run's fixed cost is shared by R matvecs (the in-graph cost of one).
 */
export function linearParallelGraph(ws: readonly Float32Array[], b: Float32Array | null, K: number, N: number): Uint8Array {
  const g = new OnnxGraph(`linear_${K}x${N}_x${ws.length}`);
  g.addInput("x", DataType.FLOAT, ["T", K]);
  if (b) g.addInitializer("b", b, [N]);
  ws.forEach((w, i) => {
    g.addInitializer(`w${i}`, w, [N, K]);
    g.addNode("Gemm", b ? ["x", `w${i}`, "b"] : ["x", `w${i}`], [`y${i}`], { transB: 1 });
    g.addOutput(`y${i}`, DataType.FLOAT, ["T", N]);
  });
  return g.toBytes();
}

/** L copies of a shape-preserving op in a chain, x → op → op → … → y: the in-graph cost of one. */
export function chainGraph(
  L: number,
  shape: readonly (number | string)[],
  addOp: (g: OnnxGraph, input: string, output: string) => void,
): Uint8Array {
  const g = new OnnxGraph(`chain_x${L}`);
  g.addInput("x", DataType.FLOAT, shape);
  for (let i = 0; i < L; i++) addOp(g, i === 0 ? "x" : `h${i}`, i === L - 1 ? "y" : `h${i + 1}`);
  g.addOutput("y", DataType.FLOAT, shape);
  return g.toBytes();
}

/** y = x + 1 on one element: what one session.run costs beyond the kernel (copies in/out, promise). */
export function tinyAddGraph(): Uint8Array {
  const g = new OnnxGraph("overhead");
  g.addInput("x", DataType.FLOAT, [1]);
  g.addInitializer("one", new Float32Array([1]), [1]);
  g.addNode("Add", ["x", "one"], ["y"]);
  g.addOutput("y", DataType.FLOAT, [1]);
  return g.toBytes();
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}
