// A minimal ONNX writer: a graph builder plus the protobuf wire encoding of the few messages an
// ONNX model needs (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto,
// TypeProto, TensorShapeProto, OperatorSetIdProto). Write-only; field numbers follow onnx/onnx.proto.
//
// Why hand-written rather than `onnx-proto` (protobufjs): the encoder is ~150 lines, needs no dependency,
// and keeps big initializers zero-copy until the one final concatenation (protobufjs would hold every
// weight in its own Writer buffers and copy it again). The same builder will export whole OPT graphs
// (prefill/decode with past keys/values), hence symbolic dims, int64 tensors and opset imports.
//
//   const g = new OnnxGraph("linear");
//   g.addInput("x", DataType.FLOAT, ["T", 768]);
//   g.addInitializer("w", w, [3072, 768]);
//   g.addNode("Gemm", ["x", "w", "b"], ["y"], { transB: 1 });
//   g.addOutput("y", DataType.FLOAT, ["T", 3072]);
//   const bytes = g.toBytes();          // a ModelProto, opset 17 (ai.onnx) unless told otherwise
//
// Attribute values: an integer number → INT, any other number → FLOAT, a string → STRING,
// number[] → INTS (all integers) or FLOATS, string[] → STRINGS, Float32Array → FLOATS.
// A float that happens to be integral (alpha = 1.0) must be wrapped: `attr.float(1)`; likewise
// `attr.floats([1, 2])`, `attr.ints([])`, `attr.tensor(...)`.

/** TensorProto.DataType */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const DTYPE_BYTES: Partial<Record<DataType, number>> = {
  1: 4,
  2: 1,
  3: 1,
  4: 2,
  5: 2,
  6: 4,
  7: 8,
  9: 1,
  10: 2,
  11: 8,
  12: 4,
  13: 8,
  16: 2,
};

/** AttributeProto.AttributeType */
const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

/** IR version 8 is the one that goes with opset 17 (ONNX 1.12). */
export const IR_VERSION = 8;
export const DEFAULT_OPSET = 17;

/** A dimension: a fixed size, or a symbolic name ("batch", "past_len") shared by inputs. */
export type Dim = number | string;

export type TensorData =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Int8Array
  | Uint8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | BigUint64Array;

export interface TensorSpec {
  name?: string;
  data: TensorData;
  dims: readonly number[];
  dataType: DataType;
}

type Tagged =
  | { kind: "float"; v: number }
  | { kind: "floats"; v: readonly number[] }
  | { kind: "ints"; v: readonly (number | bigint)[] }
  | { kind: "tensor"; v: TensorSpec };
export type AttrValue = number | bigint | string | readonly number[] | readonly string[] | Float32Array | Tagged;

export const attr = {
  float: (v: number): Tagged => ({ kind: "float", v }),
  floats: (v: readonly number[]): Tagged => ({ kind: "floats", v }),
  ints: (v: readonly (number | bigint)[]): Tagged => ({ kind: "ints", v }),
  tensor: (data: TensorData, dims: readonly number[], dataType?: DataType): Tagged => ({
    kind: "tensor",
    v: { data, dims, dataType: dataType ?? inferDataType(data) },
  }),
};

// ---------------------------------------------------------------------------------------------
// Protobuf wire format: varints (wire type 0), 32-bit (5), length-delimited (2).

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const utf8 = new TextEncoder();

/** Collects a message as a list of byte chunks; large payloads are referenced, not copied. */
class ProtoWriter {
  private parts: Uint8Array[] = [];
  private small: number[] = [];
  private flushed = 0;

  get length(): number {
    return this.flushed + this.small.length;
  }

  private flush(): void {
    if (this.small.length === 0) return;
    this.parts.push(Uint8Array.from(this.small));
    this.flushed += this.small.length;
    this.small = [];
  }

  private varint(v: number | bigint): void {
    if (typeof v === "bigint" || v < 0 || v > Number.MAX_SAFE_INTEGER) {
      // int64 two's complement: negatives take 10 bytes, as protobuf specifies.
      let u = BigInt.asUintN(64, BigInt(v));
      while (u >= 0x80n) {
        this.small.push(Number(u & 0x7fn) | 0x80);
        u >>= 7n;
      }
      this.small.push(Number(u));
      return;
    }
    if (!Number.isInteger(v)) throw new Error(`onnx: varint of non-integer ${v}`);
    while (v >= 0x80) {
      this.small.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.small.push(v);
  }

  private tag(field: number, wire: 0 | 2 | 5): void {
    this.varint(field * 8 + wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    this.small.push(...(LITTLE_ENDIAN ? b : b.reverse()));
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(data.byteLength);
    if (data.byteLength < 256) {
      for (const x of data) this.small.push(x);
    } else {
      this.flush();
      this.parts.push(data);
      this.flushed += data.byteLength;
    }
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: ProtoWriter): this {
    m.flush();
    this.tag(field, 2);
    this.varint(m.flushed);
    this.flush();
    this.parts.push(...m.parts);
    this.flushed += m.flushed;
    return this;
  }

  packedInts(field: number, vs: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of vs) inner.varint(v);
    inner.flush();
    this.tag(field, 2);
    this.varint(inner.flushed);
    for (const x of inner.parts) for (const b of x) this.small.push(b);
    return this;
  }

  packedFloats(field: number, vs: ArrayLike<number>): this {
    return this.bytes(field, leBytes(Float32Array.from(vs)));
  }

  finish(): Uint8Array {
    this.flush();
    if (this.flushed > 0x7fffffff) {
      // protobuf's own limit; past it ONNX needs external data (not written by this module yet).
      throw new Error(`onnx: model is ${this.flushed} bytes, over protobuf's 2 GiB limit`);
    }
    const out = new Uint8Array(this.flushed);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }
}

function leBytes(data: TensorData): Uint8Array {
  if (!LITTLE_ENDIAN && data.BYTES_PER_ELEMENT > 1) {
    throw new Error("onnx: raw_data is little-endian; big-endian hosts are not supported");
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function inferDataType(data: TensorData): DataType {
  if (data instanceof Float32Array) return DataType.FLOAT;
  if (data instanceof Float64Array) return DataType.DOUBLE;
  if (data instanceof Int32Array) return DataType.INT32;
  if (data instanceof BigInt64Array) return DataType.INT64;
  if (data instanceof Int8Array) return DataType.INT8;
  if (data instanceof Uint8Array) return DataType.UINT8;
  if (data instanceof Int16Array) return DataType.INT16;
  if (data instanceof Uint32Array) return DataType.UINT32;
  if (data instanceof BigUint64Array) return DataType.UINT64;
  // Uint16Array is FLOAT16, BFLOAT16 or UINT16: the caller must say which.
  throw new Error("onnx: cannot infer the data type of a Uint16Array; pass dataType (FLOAT16, BFLOAT16, UINT16)");
}

// ---------------------------------------------------------------------------------------------
// Messages.

function tensorProto(t: TensorSpec): ProtoWriter {
  const n = t.dims.reduce((a, b) => a * b, 1);
  const elemBytes = DTYPE_BYTES[t.dataType];
  if (elemBytes === undefined) throw new Error(`onnx: tensor '${t.name}': unsupported data type ${t.dataType}`);
  if (t.data.byteLength !== n * elemBytes) {
    throw new Error(
      `onnx: tensor '${t.name}' has ${t.data.byteLength} bytes, dims [${t.dims}] ` + `of type ${t.dataType} need ${n * elemBytes}`,
    );
  }
  const w = new ProtoWriter();
  if (t.dims.length > 0) w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  if (t.name !== undefined) w.string(8, t.name);
  w.bytes(9, leBytes(t.data));
  return w;
}

function attributeProto(name: string, value: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  const isTagged = (v: unknown): v is Tagged => typeof v === "object" && v !== null && "kind" in v;
  if (isTagged(value)) {
    switch (value.kind) {
      case "float":
        return w.float(2, value.v).int(20, AttrType.FLOAT);
      case "floats":
        return w.packedFloats(7, value.v).int(20, AttrType.FLOATS);
      case "ints":
        return w.packedInts(8, value.v).int(20, AttrType.INTS);
      case "tensor":
        return w.message(5, tensorProto(value.v)).int(20, AttrType.TENSOR);
    }
  }
  if (typeof value === "bigint") return w.int(3, value).int(20, AttrType.INT);
  if (typeof value === "number") {
    return Number.isInteger(value) ? w.int(3, value).int(20, AttrType.INT) : w.float(2, value).int(20, AttrType.FLOAT);
  }
  if (typeof value === "string") return w.string(4, value).int(20, AttrType.STRING);
  if (value instanceof Float32Array) return w.packedFloats(7, value).int(20, AttrType.FLOATS);
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === "string")) {
      for (const s of value as string[]) w.string(9, s);
      return w.int(20, AttrType.STRINGS);
    }
    const nums = value as number[];
    return nums.every(Number.isInteger) ? w.packedInts(8, nums).int(20, AttrType.INTS) : w.packedFloats(7, nums).int(20, AttrType.FLOATS);
  }
  throw new Error(`onnx: attribute '${name}': unsupported value ${String(value)}`);
}

function valueInfoProto(v: ValueInfo): ProtoWriter {
  const tensorType = new ProtoWriter().int(1, v.elemType);
  if (v.dims !== undefined) {
    const shape = new ProtoWriter();
    for (const d of v.dims) {
      shape.message(1, typeof d === "number" ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
    }
    tensorType.message(2, shape);
  }
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}

// ---------------------------------------------------------------------------------------------
// The builder.

interface ValueInfo {
  name: string;
  elemType: DataType;
  /** Omitted: rank unknown (allowed for outputs and intermediate values). */
  dims?: readonly Dim[];
}

interface Node {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs: Record<string, AttrValue>;
  name: string;
  domain: string;
}

export interface NodeOptions {
  /** Node name (default: `${op}_${index}`). */
  name?: string;
  /** Operator domain: "" is ai.onnx; e.g. "com.microsoft" (declare it with `useOpset`). */
  domain?: string;
}

export class OnnxGraph {
  readonly name: string;
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly valueInfos: ValueInfo[] = [];
  private readonly initializers: TensorSpec[] = [];
  private readonly nodes: Node[] = [];
  private readonly opsets = new Map<string, number>();
  /** Every value name defined so far (inputs, initializers, node outputs), to catch typos early. */
  private readonly defined = new Set<string>();
  producerName = "wasm-lm";

  constructor(name = "graph", opset = DEFAULT_OPSET) {
    this.name = name;
    this.opsets.set("", opset);
  }

  /** Import an operator set (domain "" is ai.onnx). */
  useOpset(domain: string, version: number): this {
    this.opsets.set(domain, version);
    return this;
  }

  private define(name: string, what: string): void {
    if (name === "") throw new Error(`onnx: ${what} with an empty name`);
    if (this.defined.has(name)) throw new Error(`onnx: '${name}' (${what}) is already defined in graph '${this.name}'`);
    this.defined.add(name);
  }

  addInput(name: string, elemType: DataType, dims: readonly Dim[]): this {
    this.define(name, "input");
    this.inputs.push({ name, elemType, dims: [...dims] });
    return this;
  }

  /** Declare a graph output; it must be produced by a node or be an input/initializer by toBytes(). */
  addOutput(name: string, elemType: DataType, dims?: readonly Dim[]): this {
    this.outputs.push({ name, elemType, dims: dims && [...dims] });
    return this;
  }

  /** Optional shape annotation of an intermediate value. */
  addValueInfo(name: string, elemType: DataType, dims?: readonly Dim[]): this {
    this.valueInfos.push({ name, elemType, dims: dims && [...dims] });
    return this;
  }

  /** A constant tensor stored in the model. The data is referenced until toBytes() copies it. */
  addInitializer(name: string, data: TensorData, dims: readonly number[], dataType: DataType = inferDataType(data)): this {
    this.define(name, "initializer");
    this.initializers.push({ name, data, dims: [...dims], dataType });
    return this;
  }

  /**
   * Append a node; nodes must come in topological order (inputs defined before use).
   * An empty input name "" skips an optional input.
   */
  addNode(
    op: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attrs: Record<string, AttrValue> = {},
    opts: NodeOptions = {},
  ): this {
    const domain = opts.domain ?? "";
    if (!this.opsets.has(domain)) throw new Error(`onnx: node ${op} uses domain '${domain}': call useOpset first`);
    for (const i of inputs) {
      if (i !== "" && !this.defined.has(i)) {
        throw new Error(`onnx: node ${op} reads '${i}', which no input, initializer or earlier node defines`);
      }
    }
    const name = opts.name ?? `${op}_${this.nodes.length}`;
    for (const o of outputs) if (o !== "") this.define(o, `output of ${name}`);
    this.nodes.push({ op, inputs: [...inputs], outputs: [...outputs], attrs: { ...attrs }, name, domain });
    return this;
  }

  /** The serialized ModelProto. */
  toBytes(): Uint8Array {
    for (const o of this.outputs) {
      if (!this.defined.has(o.name)) throw new Error(`onnx: graph output '${o.name}' is never produced`);
    }
    const g = new ProtoWriter();
    for (const n of this.nodes) {
      const w = new ProtoWriter();
      for (const i of n.inputs) w.string(1, i);
      for (const o of n.outputs) w.string(2, o);
      w.string(3, n.name).string(4, n.op);
      for (const [k, v] of Object.entries(n.attrs)) w.message(5, attributeProto(k, v));
      if (n.domain !== "") w.string(7, n.domain);
      g.message(1, w);
    }
    g.string(2, this.name);
    for (const t of this.initializers) g.message(5, tensorProto(t));
    for (const v of this.inputs) g.message(11, valueInfoProto(v));
    for (const v of this.outputs) g.message(12, valueInfoProto(v));
    for (const v of this.valueInfos) g.message(13, valueInfoProto(v));

    const m = new ProtoWriter().int(1, IR_VERSION).string(2, this.producerName);
    m.message(7, g);
    for (const [domain, version] of this.opsets) {
      const o = new ProtoWriter();
      if (domain !== "") o.string(1, domain);
      m.message(8, o.int(2, version));
    }
    return m.finish();
  }
}
