import { describe, it, expect } from "vitest";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";
import { zipSync, unzipSync, strToU8 } from "fflate";
import {
  CheckpointError,
  MultiSource,
  openCheckpoint,
  openPytorchBin,
  openSafetensors,
  openTensorFile,
  writeSafetensors,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  convertToF32,
  f32ArrayToF16Bytes,
  f32ArrayToBf16Bytes,
  f32ArrayToBytes,
  numel,
  type TensorSource,
} from "../src/formats/index.js";
import { openCheckpointDir, readFileBytes } from "../src/formats/node.js";
import { crc32 } from "../src/formats/zip.js";
import { Pickle, stateDictPickle, torchZip, centralEntries, fixtureTorchZip, type FakeTensor } from "./builders.js";

const FIX = join(import.meta.dirname, "fixtures", "opt-tiny");
const fixture = (f: string) => new Uint8Array(readFileSync(join(FIX, f)));
const info = JSON.parse(readFileSync(join(FIX, "weights_info.json"), "utf8")) as {
  tensors: Record<string, { shape: number[]; mean: number; std: number }>;
};

function f32(src: TensorSource, name: string): Float32Array {
  const t = src.get(name);
  if (!t) throw new Error(`missing ${name}`);
  const out = new Float32Array(numel(t.shape));
  src.readF32(name, out);
  return out;
}

/** Bitwise equality (vitest's deep equality is slow on large typed arrays). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** Asserts `fn` throws a one-line CheckpointError matching every pattern. */
function expectFail(fn: () => unknown, ...patterns: (RegExp | string)[]): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, "expected an error").toBeInstanceOf(CheckpointError);
  const msg = (err as Error).message;
  expect(msg).not.toContain("\n");
  for (const p of patterns) {
    if (typeof p === "string") expect(msg).toContain(p);
    else expect(msg).toMatch(p);
  }
  return msg;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

describe("fixture checkpoints", () => {
  const st32 = openSafetensors(fixture("model.safetensors"), "model.safetensors");
  const st16 = openSafetensors(fixture("model.fp16.safetensors"), "model.fp16.safetensors");
  const bin = openPytorchBin(fixture("pytorch_model.bin"), "pytorch_model.bin");
  const pre = openPytorchBin(fixture("pytorch_model.prefixed.bin"), "pytorch_model.prefixed.bin");
  const names = Object.keys(info.tensors);

  it("list the expected tensors, dtypes and shapes", () => {
    expect(names.length).toBe(36);
    const byName = (s: TensorSource) => new Map(s.tensors().map((t) => [t.name, t]));
    for (const [src, dtype, prefix] of [
      [st32, "F32", ""],
      [st16, "F16", ""],
      [bin, "F16", "model."],
      [pre, "F16", ""],
    ] as const) {
      const m = byName(src);
      for (const n of names) {
        const t = m.get(n.slice(prefix.length));
        expect(t, n).toBeDefined();
        expect(t!.dtype).toBe(dtype);
        expect(t!.shape).toEqual(info.tensors[n].shape);
      }
    }
    expect(st32.tensors().length).toBe(36);
    expect(st16.tensors().length).toBe(36);
    expect(bin.tensors().length).toBe(36);
    expect(
      pre
        .tensors()
        .map((t) => t.name)
        .sort(),
    ).toEqual([...names, "lm_head.weight"].sort());
    expect(st32.metadata).toEqual({ format: "pt" });
    expect(bin.tensors()[0].name).toBe("decoder.embed_tokens.weight"); // pickle (dict) order
  });

  it("hold identical values in all four files", () => {
    for (const n of names) {
      const a = f32(st32, n);
      for (const [src, key] of [
        [st16, n],
        [bin, n.slice("model.".length)],
        [pre, n],
      ] as const) {
        expect(sameBytes(f32(src, key), a), `${n} in ${key}`).toBe(true);
      }
    }
    // The tied head in the prefixed file is a copy of the embedding.
    expect(sameBytes(f32(pre, "lm_head.weight"), f32(st32, "model.decoder.embed_tokens.weight"))).toBe(true);
  });

  it("match the means and stds in weights_info.json", () => {
    for (const n of names) {
      const x = f32(st32, n);
      let s = 0;
      for (const v of x) s += v;
      const mean = s / x.length;
      let ss = 0;
      for (const v of x) ss += (v - mean) ** 2;
      const std = Math.sqrt(ss / (x.length - 1)); // torch.std is unbiased
      const want = info.tensors[n];
      expect(Math.abs(mean - want.mean), n).toBeLessThanOrEqual(1e-5 * want.std + 1e-7);
      expect(Math.abs(std - want.std) / want.std, n).toBeLessThan(1e-5);
    }
  });

  it("F16 raw bytes equal f32ToF16 of the F32 file, and raw reads are views", () => {
    const bytes = fixture("model.fp16.safetensors");
    const src = openSafetensors(bytes);
    for (const n of names) {
      const raw = src.readRaw(n);
      expect(raw.buffer).toBe(bytes.buffer); // no copy
      expect(sameBytes(raw, f32ArrayToF16Bytes(f32(st32, n))), n).toBe(true);
    }
    const binBytes = fixture("pytorch_model.bin");
    const b = openPytorchBin(binBytes);
    expect(b.readRaw("decoder.embed_tokens.weight").buffer).toBe(binBytes.buffer);
  });

  it("check the destination and the name", () => {
    expectFail(
      () => st32.readF32("model.decoder.final_layer_norm.bias", new Float32Array(63)),
      "model.safetensors",
      "'model.decoder.final_layer_norm.bias'",
      "63",
      "64",
    );
    expectFail(() => bin.readF32("decoder.nope", new Float32Array(1)), "pytorch_model.bin", "'decoder.nope'");
    expectFail(() => st16.readRaw("nope"), "no tensor named 'nope'");
    expect(st16.get("nope")).toBeUndefined();
  });

  it("read into a view of a larger buffer (as into WebAssembly memory)", () => {
    const mem = new WebAssembly.Memory({ initial: 1 });
    const dst = new Float32Array(mem.buffer, 1024, 64);
    st16.readF32("model.decoder.final_layer_norm.weight", dst);
    expect(Array.from(dst)).toEqual(Array.from(f32(st32, "model.decoder.final_layer_norm.weight")));
    expect(new Float32Array(mem.buffer, 0, 256).every((v) => v === 0)).toBe(true);
  });

  it("are told apart by openTensorFile", () => {
    expect(openTensorFile(fixture("pytorch_model.bin"), "x").get("decoder.embed_tokens.weight")).toBeDefined();
    expect(openTensorFile(fixture("model.safetensors"), "x").get("model.decoder.embed_tokens.weight")).toBeDefined();
  });
});

// ---------------------------------------------------------------------------------------------
// dtype conversion

describe("dtype conversion", () => {
  it("f16: every non-NaN half survives f16 → f32 → f16; NaN stays NaN", () => {
    for (let h = 0; h < 65536; h++) {
      const x = f16ToF32(h);
      if (Number.isNaN(x)) {
        expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true);
        expect(Number.isNaN(f16ToF32(f32ToF16(x)))).toBe(true);
      } else {
        expect(f32ToF16(x)).toBe(h);
      }
    }
  });

  it("f32ToF16 rounds like numpy (nearest, ties to even)", () => {
    // [value, numpy float16 bits]
    const cases: [number, number][] = [
      [0, 0],
      [-0, 0x8000],
      [1, 0x3c00],
      [65504, 0x7bff],
      [65519.98828125, 0x7bff],
      [65520, 0x7c00],
      [1e10, 0x7c00],
      [-1e10, 0xfc00],
      [1.00048828125, 0x3c00],
      [1.00146484375, 0x3c02],
      [2 ** -24, 0x1],
      [2 ** -25, 0x0],
      [3 * 2 ** -26, 0x1],
      [2.980232594040899e-8, 0x1],
      [6.0999998822808266e-5, 0x3ff],
      [-2.499999936844688e-6, 0x802a],
      [0.1, 0x2e66],
      [3.14159, 0x4248],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x400],
      [6.1005353927612305e-5, 0x400],
      [0.333333, 0x3555],
    ];
    for (const [x, h] of cases) expect(f32ToF16(x), String(x)).toBe(h);
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
  });

  it("bf16 round trip and rounding", () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(f32ToBf16(-2.5)).toBe(0xc020);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
    expect(bf16ToF32(f32ToBf16(Infinity))).toBe(Infinity);
    for (let h = 0; h < 65536; h += 7) {
      const x = bf16ToF32(h);
      if (!Number.isNaN(x)) expect(f32ToBf16(x)).toBe(h);
    }
  });

  it("convertToF32 handles unaligned sources for every dtype", () => {
    const vals = [1, -2, 0.5, 65504, -0, 3.140625];
    for (const [dtype, bytes] of [
      ["F32", f32ArrayToBytes(vals)],
      ["F16", f32ArrayToF16Bytes(vals)],
      ["BF16", f32ArrayToBf16Bytes(vals)],
    ] as const) {
      const buf = new Uint8Array(bytes.length + 1);
      buf.set(bytes, 1);
      const dst = new Float32Array(vals.length);
      convertToF32(dtype, buf.subarray(1), dst);
      const want = dtype === "BF16" ? vals.map((v) => bf16ToF32(f32ToBf16(v))) : vals;
      expect(Array.from(dst)).toEqual(want);
    }
    // Longer than the 64K-element scratch chunk used for odd offsets.
    const n = 150_001;
    const bytes = new Uint8Array(2 * n + 1).map((_, i) => (i * 2654435761) >>> 24);
    for (const dtype of ["F16", "BF16"] as const) {
      const odd = new Float32Array(n),
        even = new Float32Array(n);
      convertToF32(dtype, bytes.subarray(1), odd);
      convertToF32(dtype, bytes.slice(1), even);
      expect(sameBytes(odd, even)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// safetensors

/** A safetensors file with an arbitrary header (raw JSON text) and `dataLen` data bytes. */
function rawSafetensors(header: unknown, dataLen: number, headerLen?: number): Uint8Array {
  const json = strToU8(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  return out;
}

describe("safetensors", () => {
  it("writer output is 8-byte aligned and reads back", () => {
    const file = writeSafetensors(
      [
        { name: "a", dtype: "F32", shape: [2, 3], data: f32ArrayToBytes([1, 2, 3, 4, 5, 6]) },
        { name: "b", dtype: "F16", shape: [3], data: f32ArrayToF16Bytes([0.5, -1, 2]) },
        { name: "c", dtype: "BF16", shape: [1], data: f32ArrayToBf16Bytes([-3]) },
        { name: "e", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
        { name: "ids", dtype: "I64", shape: [2], data: new Uint8Array(16) },
      ],
      { format: "pt", note: "x" },
    );
    const headerLen = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const src = openSafetensors(file, "w.safetensors");
    expect(src.metadata).toEqual({ format: "pt", note: "x" });
    expect(src.tensors().map((t) => `${t.name}:${t.dtype}:${t.shape}`)).toEqual([
      "a:F32:2,3",
      "b:F16:3",
      "c:BF16:1",
      "e:F32:0,4",
      "ids:I64:2",
    ]);
    expect(Array.from(f32(src, "a"))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(f32(src, "b"))).toEqual([0.5, -1, 2]);
    expect(Array.from(f32(src, "c"))).toEqual([-3]);
    expect(f32(src, "e").length).toBe(0);
    // Other dtypes are listed and readable raw, but not as f32.
    expect(src.readRaw("ids").length).toBe(16);
    expectFail(() => src.readF32("ids", new Float32Array(2)), "w.safetensors", "'ids'", "I64");
  });

  it("writer refuses inconsistent input", () => {
    expect(() => writeSafetensors([{ name: "a", dtype: "F32", shape: [2], data: new Uint8Array(4) }])).toThrow(/'a'.*4 bytes, expected 8/);
    const t = { name: "a", dtype: "F16" as const, shape: [1], data: new Uint8Array(2) };
    expect(() => writeSafetensors([t, t])).toThrow(/duplicate/);
  });

  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const cases: [string, Uint8Array, (string | RegExp)[]][] = [
    ["too short", new Uint8Array(5), ["too short"]],
    ["header past the end", rawSafetensors({ a: ok }, 8, 1000), ["header length 1000", "past the end"]],
    ["absurd header length", rawSafetensors({ a: ok }, 8, 2 ** 40), ["absurd"]],
    ["header not JSON", rawSafetensors("{not json", 0), ["not JSON"]],
    [
      "header not UTF-8",
      (() => {
        const f = rawSafetensors('{"a":1}', 0);
        f[10] = 0xff;
        return f;
      })(),
      ["UTF-8"],
    ],
    ["header an array", rawSafetensors([1, 2], 0), ["not a JSON object"]],
    ["header null", rawSafetensors("null", 0), ["not a JSON object"]],
    ["metadata not an object", rawSafetensors({ __metadata__: [1] }, 0), ["__metadata__"]],
    ["metadata value not a string", rawSafetensors({ __metadata__: { k: 1 } }, 0), ["__metadata__", "'k'"]],
    ["entry not an object", rawSafetensors({ w: 5 }, 0), ["'w'", "not an object"]],
    ["unknown dtype", rawSafetensors({ w: { ...ok, dtype: "F128" } }, 8), ["'w'", "'F128'"]],
    ["offsets not two", rawSafetensors({ w: { ...ok, data_offsets: [0, 4, 8] } }, 8), ["'w'", "data_offsets"]],
    ["offsets not integers", rawSafetensors({ w: { ...ok, data_offsets: [0, 7.5] } }, 8), ["'w'", "data_offsets"]],
    ["offsets strings", rawSafetensors({ w: { ...ok, data_offsets: ["0", "8"] } }, 8), ["'w'", "data_offsets"]],
    ["offsets negative", rawSafetensors({ w: { ...ok, data_offsets: [-8, 0] } }, 8), ["'w'", "data_offsets"]],
    ["end < begin", rawSafetensors({ w: { ...ok, data_offsets: [8, 0] } }, 8), ["'w'", "end 0 < begin 8"]],
    ["out of range", rawSafetensors({ w: { ...ok, data_offsets: [8, 16] } }, 8), ["'w'", "past the end"]],
    ["shape negative", rawSafetensors({ w: { ...ok, shape: [-2] } }, 8), ["'w'", "shape"]],
    ["shape float", rawSafetensors({ w: { ...ok, shape: [1.5] } }, 8), ["'w'", "shape"]],
    ["shape missing", rawSafetensors({ w: { dtype: "F32", data_offsets: [0, 8] } }, 8), ["'w'", "shape"]],
    ["byte count ≠ shape", rawSafetensors({ w: { ...ok, shape: [3] } }, 8), ["'w'", "8 bytes", "expected 12"]],
    ["huge shape", rawSafetensors({ w: { ...ok, shape: [2 ** 40, 2 ** 40] } }, 8), ["'w'", "expected"]],
    ["overlap", rawSafetensors({ a: ok, b: { ...ok, data_offsets: [4, 12] } }, 12), ["'b'", "overlap", "'a'"]],
    ["name with a newline", rawSafetensors({ "x\ny": { ...ok, dtype: "Q" } }, 8), ["'x\\u000ay'"]],
  ];
  for (const [what, bytes, patterns] of cases) {
    it(`refuses: ${what}`, () => {
      expectFail(() => openSafetensors(bytes, "bad.safetensors"), "bad.safetensors: ", ...patterns);
    });
  }

  it("refuses a truncated file, naming the tensor", () => {
    const full = fixture("model.safetensors");
    expectFail(() => openSafetensors(full.subarray(0, full.length - 1), "cut.safetensors"), "cut.safetensors", "truncated");
    expectFail(() => openSafetensors(full.subarray(0, 100), "cut.safetensors"), "past the end of the file");
  });

  it("accepts zero-size tensors sharing an offset", () => {
    const src = openSafetensors(
      rawSafetensors(
        {
          a: { dtype: "F32", shape: [0], data_offsets: [0, 0] },
          b: { dtype: "F16", shape: [0, 3], data_offsets: [0, 0] },
          c: ok,
        },
        8,
      ),
    );
    expect(src.tensors().length).toBe(3);
  });
});

// ---------------------------------------------------------------------------------------------
// PyTorch .bin: hand-written pickles in hand-built zips

const halves = (xs: number[]) => f32ArrayToF16Bytes(xs);
const seq = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe("pytorch .bin", () => {
  it("reads storage offsets, shared (tied) storages, parameters and _metadata", () => {
    const pkl = stateDictPickle(
      [
        { name: "a", storage: "0", numel: 10, offset: 4, shape: [2, 3] },
        { name: "tied", storage: "0", numel: 10, shape: [10] },
        { name: "p", storage: "1", numel: 3, shape: [3], param: true, type: "FloatStorage" },
        { name: "bf", storage: "2", numel: 2, shape: [1, 2], type: "BFloat16Storage" },
        { name: "one", storage: "3", numel: 1, shape: [], stride: [] },
        { name: "col", storage: "4", numel: 3, shape: [3, 1], stride: [1, 99] }, // size-1 dims: any stride
      ],
      true,
    );
    for (const level of [0, 6] as const) {
      const src = openPytorchBin(
        torchZip(
          pkl,
          {
            0: halves(seq(10)),
            1: f32ArrayToBytes([0.25, 0.5, 0.75]),
            2: f32ArrayToBf16Bytes([-1, 2]),
            3: halves([7]),
            4: halves([1, 2, 3]),
          },
          {},
          level,
        ),
        "t.bin",
      );
      expect(src.tensors().map((t) => `${t.name}:${t.dtype}:${t.shape}`)).toEqual([
        "a:F16:2,3",
        "tied:F16:10",
        "p:F32:3",
        "bf:BF16:1,2",
        "one:F16:",
        "col:F16:3,1",
      ]);
      expect(Array.from(f32(src, "a"))).toEqual([4, 5, 6, 7, 8, 9]);
      expect(Array.from(f32(src, "tied"))).toEqual(seq(10));
      expect(Array.from(f32(src, "p"))).toEqual([0.25, 0.5, 0.75]);
      expect(Array.from(f32(src, "bf"))).toEqual([-1, 2]);
      expect(Array.from(f32(src, "one"))).toEqual([7]);
      expect(Array.from(f32(src, "col"))).toEqual([1, 2, 3]);
      // Tied tensors are views of the same bytes.
      expect(src.readRaw("a").buffer).toBe(src.readRaw("tied").buffer);
    }
  });

  it("accepts a plain dict and an archive prefix other than 'archive'", () => {
    const p = new Pickle()
      .op(0x7d, 0x28)
      .str("w")
      .global("torch._utils", "_rebuild_tensor_v2")
      .tuple((q) =>
        q
          .tuple((r) => r.str("storage").stackGlobal("torch", "HalfStorage").str("0").str("cuda:0").int(2))
          .op(0x51)
          .int(0)
          .ints([2])
          .ints([1])
          .op(0x88)
          .op(0x7d),
      )
      .op(0x52, 0x75, 0x2e)
      .bytes();
    const src = openPytorchBin(torchZip(p, { 0: halves([1, 2]) }, 0, "my_model"), "d.bin");
    expect(Array.from(f32(src, "w"))).toEqual([1, 2]);
  });

  it("lists other storage types but refuses to read them as f32", () => {
    const pkl = stateDictPickle([
      { name: "ids", storage: "0", numel: 2, shape: [2], type: "LongStorage" },
      { name: "d", storage: "1", numel: 1, shape: [1], type: "DoubleStorage" },
    ]);
    const src = openPytorchBin(torchZip(pkl, { 0: new Uint8Array(16), 1: new Uint8Array(8) }), "o.bin");
    expect(src.get("ids")).toEqual({ name: "ids", dtype: "I64", shape: [2] });
    expect(src.readRaw("ids").length).toBe(16);
    expectFail(() => src.readF32("ids", new Float32Array(2)), "o.bin", "'ids'", "I64");
    expectFail(() => src.readF32("d", new Float32Array(1)), "o.bin", "'d'", "F64");
  });

  const forbidden: [string, string][] = [
    ["os", "system"],
    ["builtins", "eval"],
    ["subprocess", "Popen"],
    ["posix", "system"],
    ["torch", "load"],
    ["torch._utils", "_rebuild_device_tensor_from_numpy"],
    ["collections", "OrderedDictX"],
  ];
  for (const [mod, name] of forbidden) {
    for (const how of ["GLOBAL", "STACK_GLOBAL"] as const) {
      it(`refuses the global ${mod}.${name} via ${how}`, () => {
        // The classic exploit: callable('touch /tmp/pwned') through REDUCE.
        const p = new Pickle();
        if (how === "GLOBAL") p.global(mod, name);
        else p.stackGlobal(mod, name);
        const pkl = p
          .tuple((q) => q.str("touch /tmp/pwned"))
          .op(0x52, 0x2e)
          .bytes();
        expectFail(
          () => openPytorchBin(torchZip(pkl, {}), "pytorch_model.bin"),
          `pytorch_model.bin: pickle references forbidden global '${mod}.${name}'`,
        );
      });
    }
  }

  it("refuses calling an allowed global that is not a constructor of weights", () => {
    const pkl = new Pickle().global("torch", "HalfStorage").op(0x29, 0x52, 0x2e).bytes();
    expectFail(() => openPytorchBin(torchZip(pkl, {}), "x.bin"), "torch.HalfStorage");
  });

  const hostile: [string, Uint8Array, (string | RegExp)[]][] = [
    ["unknown opcode", new Pickle().op(0x7d, 0xff, 0x2e).bytes(), ["unknown pickle opcode 0xff at offset 3"]],
    ["unsupported opcode NEWOBJ", new Pickle().op(0x29, 0x29, 0x81, 0x2e).bytes(), ["NEWOBJ", "0x81", "offset 4"]],
    ["unsupported opcode INST", new Pickle().op(0x28, 0x69).bytes(), ["INST"]],
    ["no STOP", new Pickle().op(0x7d).bytes(), ["truncated", "no STOP"]],
    ["truncated BINUNICODE", new Pickle().op(0x58, 10, 0, 0, 0, 0x61).bytes(), ["truncated", "BINUNICODE"]],
    ["truncated GLOBAL", new Pickle().op(0x63, 0x6f, 0x73).bytes(), ["truncated", "GLOBAL"]],
    ["stack underflow", new Pickle().op(0x52, 0x2e).bytes(), ["underflow", "REDUCE"]],
    ["pop below MARK", new Pickle().op(0x4e, 0x28, 0x85).bytes(), ["underflow", "TUPLE1"]],
    ["TUPLE without MARK", new Pickle().op(0x74).bytes(), ["no MARK"]],
    ["memo miss", new Pickle().op(0x68, 7).bytes(), ["memo 7"]],
    ["SETITEMS on a list", new Pickle().op(0x5d, 0x28, 0x4e, 0x4e, 0x75).bytes(), ["non-dict"]],
    ["root not a dict", new Pickle().op(0x5d, 0x2e).bytes(), ["does not hold a dict"]],
    ["bad persistent id", new Pickle().op(0x7d).str("w").str("storage").op(0x51).bytes(), ["persistent id"]],
    ["protocol 9", new Uint8Array([0x80, 9, 0x2e]), ["protocol 9"]],
    ["huge LONG1", new Pickle().op(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x2e).bytes(), ["integer too large"]],
    ["REDUCE args not a tuple", new Pickle().global("collections", "OrderedDict").op(0x4e, 0x52).bytes(), ["not a tuple"]],
    [
      "OrderedDict with args",
      new Pickle()
        .global("collections", "OrderedDict")
        .tuple((q) => q.int(1))
        .op(0x52)
        .bytes(),
      ["OrderedDict"],
    ],
    ["BUILD on a tuple", new Pickle().op(0x29, 0x4e, 0x62).bytes(), ["BUILD"]],
    [
      "bad _rebuild_tensor_v2 args",
      new Pickle().global("torch._utils", "_rebuild_tensor_v2").ints([1, 2]).op(0x52).bytes(),
      ["_rebuild_tensor_v2"],
    ],
  ];
  for (const [what, pkl, patterns] of hostile) {
    it(`refuses a pickle with ${what}`, () => {
      expectFail(() => openPytorchBin(torchZip(pkl, {}), "h.bin"), "h.bin: ", ...patterns);
    });
  }

  it("refuses a truncated data.pkl at every length", () => {
    const zip = fixture("pytorch_model.bin");
    const pkl = openZipEntry(zip, "pytorch_model/data.pkl");
    for (let n = 0; n < pkl.length; n += 13) {
      expectFail(() => openPytorchBin(torchZip(pkl.subarray(0, n), {}), "t.bin"), "t.bin: ");
    }
  });

  it("checks tensor layout against its storage", () => {
    const cases: [FakeTensor, Uint8Array, (string | RegExp)[]][] = [
      [{ name: "w", storage: "0", numel: 6, shape: [2, 3], stride: [1, 2] }, halves(seq(6)), ["'w'", "non-contiguous", "[1, 2]"]],
      [{ name: "w", storage: "0", numel: 6, offset: 1, shape: [6] }, halves(seq(6)), ["'w'", "6 elements", "offset 1 + 6"]],
      [{ name: "w", storage: "0", numel: 4, shape: [4] }, halves(seq(3)), ["'w'", "storage '0' has 6 bytes", "expected 4 × 2 = 8"]],
      [{ name: "w", storage: "9", numel: 1, shape: [1] }, halves([1]), ["'w'", "storage '9' is missing"]],
      [{ name: "w", storage: "../x", numel: 1, shape: [1] }, halves([1]), ["'../x'", "not a plain name"]],
    ];
    for (const [t, data, patterns] of cases) {
      expectFail(() => openPytorchBin(torchZip(stateDictPickle([t]), { 0: data }), "l.bin"), "l.bin: ", ...patterns);
    }
  });

  it("refuses a storage key declared twice with different types", () => {
    const pkl = stateDictPickle([
      { name: "a", storage: "0", numel: 2, shape: [2] },
      { name: "b", storage: "0", numel: 1, shape: [1], type: "FloatStorage" },
    ]);
    expectFail(() => openPytorchBin(torchZip(pkl, { 0: new Uint8Array(4) }), "s.bin"), "declared twice");
  });

  it("refuses archives that are not torch.save zips", () => {
    const pkl = stateDictPickle([{ name: "w", storage: "0", numel: 1, shape: [1] }]);
    expectFail(() => openPytorchBin(new Uint8Array([0x80, 2, 0x8a, 0x0a]), "old.bin"), "old.bin", "legacy");
    expectFail(() => openPytorchBin(new Uint8Array(100), "z.bin"), "z.bin", "not a zip");
    expectFail(() => openPytorchBin(new Uint8Array(3), "z.bin"), "z.bin", "too short");
    expectFail(() => openPytorchBin(zipSync({ "a/b.txt": strToU8("hi") }), "z.bin"), "no '<name>/data.pkl'");
    expectFail(() => openPytorchBin(zipSync({ "a/data.pkl": pkl, "b/data.pkl": pkl }), "z.bin"), "several data.pkl");
    expectFail(
      () => openPytorchBin(torchZip(pkl, { 0: halves([1]) }, 0, "archive", { byteorder: strToU8("big") }), "be.bin"),
      "be.bin",
      "'big'",
    );
    // byteorder "little" (torch ≥ 2.1) is fine
    expect(openPytorchBin(torchZip(pkl, { 0: halves([1]) }, 0, "archive", { byteorder: strToU8("little") })).tensors().length).toBe(1);
  });

  it("refuses truncated archives and damaged directories", () => {
    const full = fixture("pytorch_model.bin");
    expectFail(() => openPytorchBin(full.subarray(0, full.length - 30), "c.bin"), "c.bin: ");
    expectFail(() => openPytorchBin(full.subarray(0, 200_000), "c.bin"), "c.bin: ");
    // A stored entry cut short: keep the directory, drop data before it.
    const zip = torchZip(stateDictPickle([{ name: "w", storage: "0", numel: 1000, shape: [1000] }]), { 0: halves(seq(1000)) });
    const cdStart = new DataView(zip.buffer).getUint32(zip.length - 22 + 16, true);
    const lying = zip.slice();
    new DataView(lying.buffer).setUint32(zip.length - 22 + 16, cdStart + 10_000, true);
    expectFail(() => openPytorchBin(lying, "d.bin"), "d.bin", "central directory");
  });
});

describe("zip CRC-32s (verifyChecksums)", () => {
  /** The fixture .bin with one byte of a storage's data flipped, and that entry's name. */
  const damaged = () => {
    const bin = fixture("pytorch_model.bin");
    const e = centralEntries(bin).find((x) => /\/data\/\d+$/.test(x.name))!;
    const dv = new DataView(bin.buffer);
    const data = e.local + 30 + dv.getUint16(e.local + 26, true) + dv.getUint16(e.local + 28, true);
    bin[data + 5] ^= 0x40;
    return { bin, entry: e.name };
  };

  it("crc32: the standard check value, zlib's on awkward lengths, and continuation", () => {
    expect(crc32(strToU8("123456789"))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const b = Uint8Array.from({ length: 4099 }, (_, i) => (i * 2654435761) >>> 24);
    for (const n of [1, 3, 7, 17, 1000, 4099]) expect(crc32(b.subarray(1, n)), String(n)).toBe(zlib.crc32(b.subarray(1, n)));
    expect(crc32(b.subarray(1000), crc32(b.subarray(0, 1000)))).toBe(crc32(b));
  });

  it("an intact archive passes, stored or deflated, with our CRC-32 or zlib's", () => {
    for (const bytes of [fixture("pytorch_model.bin"), fixture("pytorch_model.prefixed.bin"), fixtureTorchZip(undefined, 6)]) {
      expect(openPytorchBin(bytes, "a.bin", { verifyChecksums: true }).tensors().length).toBeGreaterThan(0);
      expect(openPytorchBin(bytes, "a.bin", { verifyChecksums: (x) => zlib.crc32(x) }).tensors().length).toBeGreaterThan(0);
    }
  });

  it("a flipped byte passes unseen by default and is named with verifyChecksums", () => {
    const { bin, entry } = damaged();
    expect(openPytorchBin(bin, "d.bin").tensors().length).toBe(36); // silently wrong values
    expectFail(
      () => openPytorchBin(bin, "d.bin", { verifyChecksums: true }),
      new RegExp(
        `^d\\.bin: zip entry '${entry}': its CRC-32 is 0x[0-9a-f]{8}, the zip's directory says 0x[0-9a-f]{8} \\(the file is damaged`,
      ),
    );
    // A deflated entry is checked after inflating.
    const z = fixtureTorchZip(undefined, 6);
    const e = centralEntries(z).find((x) => x.name === "archive/data/0")!;
    new DataView(z.buffer).setUint32(e.at + 16, 0x12345678, true); // the directory's CRC
    expectFail(() => openPytorchBin(z, "z.bin", { verifyChecksums: true }), "z.bin: zip entry 'archive/data/0'", "says 0x12345678");
  });

  it("openCheckpointDir checks each .bin file, shards too, naming the file", () => {
    const { bin, entry } = damaged();
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-crc-"));
    writeFileSync(join(dir, "pytorch_model.bin"), bin);
    expect(openCheckpointDir(dir).tensors().length).toBe(36);
    expectFail(() => openCheckpointDir(dir, { verifyChecksums: true }), `${dir}/pytorch_model.bin: zip entry '${entry}'`);
    const shards = mkdtempSync(join(tmpdir(), "wasm-lm-crc-shards-"));
    writeFileSync(join(shards, "part1.bin"), bin);
    writeFileSync(
      join(shards, "pytorch_model.bin.index.json"),
      JSON.stringify({ weight_map: { "decoder.embed_tokens.weight": "part1.bin" } }),
    );
    expectFail(() => openCheckpointDir(shards, { verifyChecksums: true }), `${shards}/part1.bin: zip entry '${entry}'`);
    expect(openCheckpointDir(FIX, { verifyChecksums: true }).tensors().length).toBe(36); // safetensors: nothing to check
  });
});

/** One entry of a zip, read with the library (it copies, which is fine for a test). */
function openZipEntry(zip: Uint8Array, name: string): Uint8Array {
  const e = unzipSync(zip, { filter: (f) => f.name === name })[name];
  if (!e) throw new Error(`no ${name}`);
  return e;
}

// ---------------------------------------------------------------------------------------------
// Shards, directories

describe("sharded checkpoints and directories", () => {
  const full = openSafetensors(fixture("model.safetensors"));
  const names = full.tensors().map((t) => t.name);
  const shardOf = (i: number) => (i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors");
  const shards = [0, 1].map((s) =>
    writeSafetensors(
      names
        .filter((_, i) => i % 2 === s)
        .map((n) => {
          const t = full.get(n)!;
          return { name: n, dtype: t.dtype, shape: t.shape, data: full.readRaw(n) };
        }),
    ),
  );
  const index = { metadata: { total_size: 1 }, weight_map: Object.fromEntries(names.map((n, i) => [n, shardOf(i)])) };
  const files = new Map<string, Uint8Array>([
    ["model.safetensors.index.json", strToU8(JSON.stringify(index))],
    ["model-00001-of-00002.safetensors", shards[0]],
    ["model-00002-of-00002.safetensors", shards[1]],
  ]);

  it("MultiSource reads through the index", () => {
    const src = openCheckpoint(files, "dir");
    expect(src.tensors().map((t) => t.name)).toEqual(names);
    for (const n of names) expect(sameBytes(f32(src, n), f32(full, n)), n).toBe(true);
    expectFail(() => src.readRaw("nope"), "'nope'");
  });

  it("validates the index against the shards", () => {
    const bad = (wm: Record<string, string>, extra?: string) => {
      const m = new Map(files);
      m.set("model.safetensors.index.json", strToU8(extra ?? JSON.stringify({ weight_map: wm })));
      return () => openCheckpoint(m, "dir");
    };
    expectFail(
      bad({ [names[0]]: "model-00003-of-00002.safetensors" }),
      "dir/model.safetensors.index.json",
      "model-00003-of-00002.safetensors is missing",
    );
    expectFail(bad({ [names[0]]: shardOf(1) }), `'${names[0]}'`, "not in shard");
    expectFail(bad({ [names[0]]: "../etc/passwd" }), "not a plain file name");
    expectFail(bad({}, "[]"), "weight_map");
    expectFail(bad({}, "{"), "not JSON");
    expectFail(bad({}), "empty");
  });

  it("MultiSource without an index refuses duplicate names", () => {
    const a = openSafetensors(shards[0]);
    const m = new MultiSource([
      { file: "a", source: a },
      { file: "b", source: openSafetensors(shards[1]) },
    ]);
    expect(m.tensors().length).toBe(names.length);
    expectFail(
      () =>
        new MultiSource([
          { file: "a", source: a },
          { file: "b", source: a },
        ]),
      "more than one shard",
    );
  });

  it("openCheckpointDir prefers safetensors and finds each layout", () => {
    expect(openCheckpointDir(FIX).get("model.decoder.embed_tokens.weight")?.dtype).toBe("F32");

    const binDir = mkdtempSync(join(tmpdir(), "wasm-lm-bin-"));
    copyFileSync(join(FIX, "pytorch_model.bin"), join(binDir, "pytorch_model.bin"));
    expect(openCheckpointDir(binDir).get("decoder.embed_tokens.weight")?.dtype).toBe("F16");

    const shardDir = mkdtempSync(join(tmpdir(), "wasm-lm-shards-"));
    for (const [f, b] of files) writeFileSync(join(shardDir, f), b);
    expect(openCheckpointDir(shardDir).tensors().length).toBe(36);

    const binShards = mkdtempSync(join(tmpdir(), "wasm-lm-binshards-"));
    copyFileSync(join(FIX, "pytorch_model.bin"), join(binShards, "part1.bin"));
    writeFileSync(
      join(binShards, "pytorch_model.bin.index.json"),
      JSON.stringify({ weight_map: { "decoder.embed_tokens.weight": "part1.bin" } }),
    );
    expect(
      openCheckpointDir(binShards)
        .tensors()
        .map((t) => t.name),
    ).toEqual(["decoder.embed_tokens.weight"]);

    const empty = mkdtempSync(join(tmpdir(), "wasm-lm-empty-"));
    expectFail(
      () => openCheckpointDir(empty),
      empty,
      "no checkpoint found",
      "model.safetensors",
      "model.safetensors.index.json",
      "pytorch_model.bin",
      "pytorch_model.bin.index.json",
    );
    expectFail(() => openCheckpointDir(join(empty, "nope")), "not a directory");
    expect(readFileBytes(join(FIX, "config.json"))).toEqual(fixture("config.json"));
  });
});
