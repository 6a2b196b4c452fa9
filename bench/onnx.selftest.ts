// Self-test of bench/onnx.ts through onnxruntime-web: the features a whole-model export needs
// (symbolic dims, int64 initializers, negative and list attributes, tensor attributes, integral
// floats, several outputs, a second opset domain), each checked against values computed here.
//   npx tsx bench/onnx.selftest.ts
import { strict as assert } from "node:assert";
import { attr, DataType, OnnxGraph } from "./onnx.js";
import { createSession, initOrt, ort } from "./ort.js";

await initOrt();

// y = Transpose(Reshape(x, [-1, 2, 3]), perm [0, 2, 1]) · 2 + bias(Constant), with gathered ids
const g = new OnnxGraph("selftest").useOpset("com.microsoft", 1);
g.addInput("x", DataType.FLOAT, ["batch", 6]);
g.addInput("ids", DataType.INT64, ["n"]);
g.addInitializer("shape", new BigInt64Array([-1n, 2n, 3n]), [3]);
g.addInitializer(
  "table",
  Float32Array.from({ length: 12 }, (_, i) => i),
  [4, 3],
);
g.addNode("Reshape", ["x", "shape"], ["r"]);
g.addNode("Transpose", ["r"], ["t"], { perm: [0, 2, 1] });
g.addNode("Constant", [], ["two"], { value: attr.tensor(new Float32Array([2]), []) });
g.addNode("Mul", ["t", "two"], ["m"]);
g.addNode("Gemm", ["table", "table"], ["gram"], { transB: 1, alpha: attr.float(1), beta: 0.5 });
g.addNode("Gather", ["table", "ids"], ["rows"], { axis: 0 });
g.addNode("ReduceSum", ["rows"], ["sum"], { keepdims: 0 }); // opset 17: axes as input, none = all
g.addNode("Softmax", ["m"], ["p"], { axis: -1 });
g.addNode("FastGelu", ["x"], ["fg"], {}, { domain: "com.microsoft" });
g.addOutput("m", DataType.FLOAT, ["batch", 3, 2]);
g.addOutput("gram", DataType.FLOAT, [4, 4]);
g.addOutput("sum", DataType.FLOAT, []);
g.addOutput("p", DataType.FLOAT);
g.addOutput("fg", DataType.FLOAT, ["batch", 6]);

const s = await createSession(g.toBytes());
const x = Float32Array.from({ length: 12 }, (_, i) => i - 5);
const out = await s.run({
  x: new ort.Tensor("float32", x, [2, 6]),
  ids: new ort.Tensor("int64", new BigInt64Array([3n, 0n]), [2]),
});

assert.deepEqual(out.m.dims, [2, 3, 2]);
const m = out.m.data as Float32Array;
for (let b = 0; b < 2; b++)
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 2; j++) {
      assert.equal(m[b * 6 + i * 2 + j], 2 * x[b * 6 + j * 3 + i]);
    }
const gram = out.gram.data as Float32Array;
for (let i = 0; i < 4; i++)
  for (let j = 0; j < 4; j++) {
    let d = 0;
    for (let k = 0; k < 3; k++) d += (i * 3 + k) * (j * 3 + k);
    assert.equal(gram[i * 4 + j], d);
  }
assert.equal((out.sum.data as Float32Array)[0], 9 + 10 + 11 + 0 + 1 + 2);
const p = out.p.data as Float32Array;
for (let r = 0; r < 6; r++) assert.ok(Math.abs(p[2 * r] + p[2 * r + 1] - 1) < 1e-6);
const fg = out.fg.data as Float32Array;
const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
x.forEach((v, i) => assert.ok(Math.abs(fg[i] - gelu(v)) < 1e-4, `FastGelu(${v}) = ${fg[i]}`));

// The builder's own checks.
assert.throws(() => new OnnxGraph().addNode("Relu", ["nope"], ["y"]), /no input, initializer or earlier node/);
assert.throws(() => new OnnxGraph().addInitializer("h", new Uint16Array(1), [1]), /Uint16Array/);
assert.throws(() => new OnnxGraph().addInitializer("w", new Float32Array(3), [2, 2]).toBytes(), /12 bytes/);
assert.throws(() => new OnnxGraph().addNode("X", [], ["y"], {}, { domain: "custom" }), /useOpset/);
await s.release();
console.log("onnx.ts selftest: 1 passed, 0 failed");
