// Does onnxruntime-web's WASM build run the quantized ops transformers.js' q8 and q4 files use, and
// compute what they specify? Tiny graphs through ORT against float64 references of the same
// quantized math (bench/onnx-quant.ts), awkward sizes (N = 17; K = 96: three blocks of 32, an odd
// count for the packed zero points, and K = 80: a last block padded with zeros, as the quantizer
// pads it; T = 1 and 3), each printed with its max |Δ|:
//   DynamicQuantizeLinear             its q, scale and zero point, exactly
//   MatMulInteger                     uint8 × int8 with zero points, exact int32
//   the q8 pattern                    DQL → MatMulInteger → Cast → Mul(x_scale · W_scale) → Add, per tensor and per column
//   MatMulNBits                       4 bits, block 32: symmetric (no zero_points), asymmetric (packed
//                                     zero_points), accuracy_level unset and 4 (int8 activations;
//                                     printed: how far level 4 is from unset — 0 when the build has
//                                     no int8 kernel for it and computes in f32 either way)
//   npx tsx bench/ort-quant.selftest.ts
import { randomF32 } from "./data.js";
import { DataType, OnnxGraph } from "./onnx.js";
import {
  dynamicQuantize,
  dynamicQuantizeLinearRef,
  type GraphSink,
  nbitsLinearRef,
  nbitsMatMul,
  q8LinearRef,
  q8MatMul,
  quantizeNBits4,
  quantizeWeightI8,
} from "./onnx-quant.js";
import { createSession, describeOrt, initOrt, ort } from "./ort.js";

const N = 17;

/** An OnnxGraph as a sink: fresh names for node outputs. */
function sinkOf(g: OnnxGraph): GraphSink {
  let n = 0;
  return {
    node(op, inputs, attrs = {}, nOut = 1, domain = "") {
      const outs = Array.from({ length: nOut }, () => `${op}_${n++}`);
      g.addNode(op, inputs, outs, attrs as never, domain ? { domain } : {});
      return outs;
    },
    init(name, data, dims, dataType) {
      g.addInitializer(name, data, dims, dataType);
      return name;
    },
  };
}

function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return NaN;
  let m = 0;
  for (let i = 0; i < got.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]));
  return m;
}
const maxAbsOf = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

let failed = 0;
let passed = 0;
/** One line per check: ok when max |Δ| ≤ tol (scaled by the reference's max |y| when relative). */
function report(what: string, diff: number, tol: number, scale = 1): void {
  const ok = diff <= tol * scale;
  console.log(
    `${ok ? "ok  " : "FAIL"} ${what}: max|Δ| ${diff.toExponential(2)}` +
      (scale !== 1 ? ` (max|y| ${scale.toFixed(2)})` : "") +
      `, tolerance ${(tol * scale).toExponential(1)}`,
  );
  if (ok) passed++;
  else failed++;
}

async function run(g: OnnxGraph, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
  const s = await createSession(g.toBytes());
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}
const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);

await initOrt();
console.log(describeOrt());
for (const K of [96, 80]) {
  const w = randomF32(N * K, 11, 1 / Math.sqrt(K)); // (N, K), the checkpoint's layout
  const wT = new Float32Array(K * N); // (K, N), MatMul's B
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wT[k * N + n] = w[n * K + k];
  const bias = randomF32(N, 12, 0.1);

  for (const T of [1, 3]) {
    // Activations with a non-zero mean and an outlier, as a residual stream has.
    const x = randomF32(T * K, 13 + T, 2, 0.3);
    x[5] = 9;

    // DynamicQuantizeLinear alone: must agree exactly.
    {
      const g = new OnnxGraph("dql");
      g.addInput("x", DataType.FLOAT, [1, T, K]);
      g.addNode("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]);
      for (const [o, t] of [
        ["q", DataType.UINT8],
        ["s", DataType.FLOAT],
        ["zp", DataType.UINT8],
      ] as const)
        g.addOutput(o, t);
      const out = await run(g, { x: f32(x, [1, T, K]) });
      const ref = dynamicQuantizeLinearRef(x);
      const q = out.q.data as Uint8Array;
      const diff = Math.max(
        maxAbs(q, ref.q),
        Math.abs((out.s.data as Float32Array)[0] - ref.scale) / ref.scale,
        Math.abs((out.zp.data as Uint8Array)[0] - ref.zeroPoint),
      );
      report(`DynamicQuantizeLinear T=${T} K=${K} (q, zp exact; scale relative)`, diff, 0);
    }

    // MatMulInteger alone (uint8 activations with zero point × int8 weights with zero point 0): exact int32.
    {
      const wq = quantizeWeightI8(wT, K, N);
      const xq = dynamicQuantizeLinearRef(x);
      const g = new OnnxGraph("mmi");
      g.addInput("xq", DataType.UINT8, [1, T, K]);
      g.addInput("xzp", DataType.UINT8, []);
      g.addInitializer("wq", wq.q, [K, N]);
      g.addInitializer("wzp", wq.zeroPoint, []);
      g.addNode("MatMulInteger", ["xq", "wq", "xzp", "wzp"], ["y"]);
      g.addOutput("y", DataType.INT32, [1, T, N]);
      const out = await run(g, {
        xq: new ort.Tensor("uint8", xq.q, [1, T, K]),
        xzp: new ort.Tensor("uint8", Uint8Array.of(xq.zeroPoint), []),
      });
      const ref = new Float64Array(T * N);
      for (let t = 0; t < T; t++)
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) ref[t * N + n] += (xq.q[t * K + k] - xq.zeroPoint) * wq.q[k * N + n];
      report(`MatMulInteger T=${T} ${K}→${N} (exact)`, maxAbs(out.y.data as Int32Array, ref), 0);
    }

    // The q8 pattern as the exporter writes it.
    for (const perChannel of [false, true]) {
      const wq = quantizeWeightI8(wT, K, N, perChannel);
      const g = new OnnxGraph("q8");
      const sink = sinkOf(g);
      g.addInput("x", DataType.FLOAT, [1, T, K]);
      const y = q8MatMul(sink, dynamicQuantize(sink, "x"), "w", wq);
      g.addInitializer("b", bias, [N]);
      g.addNode("Add", [y, "b"], ["out"]);
      g.addOutput("out", DataType.FLOAT, [1, T, N]);
      const got = (await run(g, { x: f32(x, [1, T, K]) })).out.data as Float32Array;
      const ref = q8LinearRef(x, T, wq, bias);
      report(`q8 pattern T=${T} ${K}→${N} per ${perChannel ? "column" : "tensor"}`, maxAbs(got, ref), 1e-6, maxAbsOf(ref));
    }

    // MatMulNBits.
    for (const symmetric of [true, false]) {
      const m = quantizeNBits4(w, N, K, symmetric);
      const ref = nbitsLinearRef(x, T, m, null);
      let unset: Float32Array | null = null;
      for (const level of [undefined, 4]) {
        const g = new OnnxGraph("nbits").useOpset("com.microsoft", 1);
        g.addInput("x", DataType.FLOAT, [1, T, K]);
        const y = nbitsMatMul(sinkOf(g), "x", "w", m, level);
        g.addNode("Identity", [y], ["out"]);
        g.addOutput("out", DataType.FLOAT, [1, T, N]);
        const got = (await run(g, { x: f32(x, [1, T, K]) })).out.data as Float32Array;
        // accuracy_level 4 rounds the activations to int8 per block of 32: ~|x|max/254 per input.
        const tol = level === 4 ? 2e-2 : 1e-6;
        report(
          `MatMulNBits T=${T} ${K}→${N} ${symmetric ? "symmetric" : "zero_points"} accuracy_level ${level ?? "unset"}`,
          maxAbs(got, ref),
          tol,
          maxAbsOf(ref),
        );
        if (level === undefined) unset = got;
        else
          console.log(
            `     accuracy_level 4 vs unset: max|Δ| ${maxAbs(got, unset!).toExponential(2)} (0: this build computes level 4 in f32 too)`,
          );
      }
    }
  }
}

console.log(`ort-quant selftest: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
