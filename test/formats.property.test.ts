// Property tests: the writer and reader agree on any valid file, and damaged files end in a
// CheckpointError (never a RangeError/TypeError from inside the parser, never a hang).
import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, zipSync } from "fflate";
import {
  CheckpointError,
  DTYPE_SIZE,
  openPytorchBin,
  openSafetensors,
  writeSafetensors,
  f16ToF32,
  f32ToF16,
  numel,
  type AnyDType,
  type TensorSource,
  type TensorToWrite,
} from "../src/formats/index.js";

const FIX = join(import.meta.dirname, "fixtures", "opt-tiny");
const fixture = (f: string) => new Uint8Array(readFileSync(join(FIX, f)));

/** Opens and reads every tensor every way; returns normally or throws. */
function readAll(open: () => TensorSource): void {
  const src = open();
  for (const t of src.tensors()) {
    src.readRaw(t.name);
    if (t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16") {
      src.readF32(t.name, new Float32Array(numel(t.shape)));
    }
  }
}

/** Either parses or throws a one-line CheckpointError. */
function parsesOrRefuses(open: () => TensorSource): boolean {
  try {
    readAll(open);
    return true;
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e; // a bug: fast-check shrinks and reports it
    expect(e.message).not.toContain("\n");
    return false;
  }
}

const dtypes: AnyDType[] = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64"];

const tensorArb: fc.Arbitrary<TensorToWrite> = fc
  .record({
    name: fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== "__metadata__"),
    dtype: fc.constantFrom(...dtypes),
    shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
  })
  .chain((t) =>
    fc
      .uint8Array({
        minLength: numel(t.shape) * DTYPE_SIZE[t.dtype],
        maxLength: numel(t.shape) * DTYPE_SIZE[t.dtype],
      })
      .map((data) => ({ ...t, data })),
  );

/** A mutation: overwrite a few bytes (biased towards `hot`, the structural region), or truncate. */
function mutationArb(len: number, hot: [number, number][]) {
  const pos = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...hot).chain(([a, b]) => fc.integer({ min: a, max: Math.max(a, b - 1) })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: len - 1 }) },
  );
  return fc.oneof(
    fc.record({
      kind: fc.constant("poke" as const),
      edits: fc.array(fc.tuple(pos, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    }),
    fc.record({ kind: fc.constant("cut" as const), at: fc.integer({ min: 0, max: len - 1 }) }),
  );
}

function apply(bytes: Uint8Array, m: { kind: "poke"; edits: [number, number][] } | { kind: "cut"; at: number }): Uint8Array {
  if (m.kind === "cut") return bytes.slice(0, m.at);
  const out = bytes.slice();
  for (const [p, v] of m.edits) out[p] = v;
  return out;
}

describe("safetensors properties", () => {
  it("a tensor named __proto__ round-trips (fast-check found it lost by the writer)", () => {
    const src = openSafetensors(writeSafetensors([{ name: "__proto__", dtype: "F32", shape: [1], data: new Uint8Array(4) }]));
    expect(src.tensors().map((t) => t.name)).toEqual(["__proto__"]);
  });

  it("round-trips any valid set of tensors and metadata", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(tensorArb, { selector: (t) => t.name, maxLength: 8 }),
        fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined }),
        (tensors, metadata) => {
          const file = writeSafetensors(tensors, metadata);
          const src = openSafetensors(file, "rt.safetensors");
          // File order; empty tensors share an offset with their neighbour, and JSON objects list
          // integer-like keys first, so among those the order is the header's, not the writer's.
          const byOffset = (ts: { name: string; dtype: string; shape: number[] }[]) =>
            ts.filter((t) => numel(t.shape) > 0).map(({ name, dtype, shape }) => ({ name, dtype, shape }));
          expect(byOffset(src.tensors())).toEqual(byOffset(tensors));
          expect(new Set(src.tensors().map((t) => t.name))).toEqual(new Set(tensors.map((t) => t.name)));
          expect({ ...src.metadata }).toEqual(metadata && Object.keys(metadata).length ? metadata : {});
          for (const t of tensors) {
            expect(src.readRaw(t.name)).toEqual(t.data);
            if (t.dtype === "F16") {
              const dst = new Float32Array(numel(t.shape));
              src.readF32(t.name, dst);
              for (let i = 0; i < dst.length; i++) {
                expect(
                  Object.is(dst[i], f16ToF32(t.data[2 * i] | (t.data[2 * i + 1] << 8))) ||
                    (Number.isNaN(dst[i]) && Number.isNaN(f16ToF32(t.data[2 * i] | (t.data[2 * i + 1] << 8)))),
                ).toBe(true);
              }
            }
            if (t.dtype === "F32") {
              const dst = new Float32Array(numel(t.shape));
              src.readF32(t.name, dst);
              expect(new Uint8Array(dst.buffer)).toEqual(t.data); // bit-exact, NaN payloads too
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("mutated or truncated files parse or throw a CheckpointError", () => {
    const file = fixture("model.fp16.safetensors");
    const headerEnd = 8 + new DataView(file.buffer, file.byteOffset).getUint32(0, true);
    fc.assert(
      fc.property(
        mutationArb(file.length, [
          [0, 8],
          [8, headerEnd],
          [headerEnd - 64, headerEnd],
        ]),
        (m) => {
          parsesOrRefuses(() => openSafetensors(apply(file, m), "m.safetensors"));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("pytorch .bin properties", () => {
  const file = fixture("pytorch_model.bin");
  // Structural regions: the first local header + data.pkl, and the central directory at the end.
  const cd = new DataView(file.buffer, file.byteOffset).getUint32(file.length - 22 + 16, true);

  it("mutated or truncated archives parse or throw a CheckpointError", () => {
    fc.assert(
      fc.property(
        mutationArb(file.length, [
          [0, 3800],
          [cd, file.length],
        ]),
        (m) => {
          parsesOrRefuses(() => openPytorchBin(apply(file, m), "m.bin"));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("mutated, spliced or random pickles parse or throw a CheckpointError", () => {
    const entries = unzipSync(file);
    const pkl = entries["pytorch_model/data.pkl"];
    const rezip = (p: Uint8Array) => zipSync({ ...entries, "pytorch_model/data.pkl": p }, { level: 0 });
    const pklArb = fc.oneof(
      mutationArb(pkl.length, [[0, pkl.length]]).map((m) => apply(pkl, m)),
      // Splices: a slice of the real pickle repeated or moved, which keeps opcodes plausible.
      fc.tuple(fc.nat(pkl.length), fc.nat(pkl.length), fc.nat(pkl.length)).map(([a, b, c]) => {
        const [lo, hi] = a < b ? [a, b] : [b, a];
        return new Uint8Array([...pkl.subarray(0, c), ...pkl.subarray(lo, hi), ...pkl.subarray(c)]);
      }),
      fc.uint8Array({ maxLength: 200 }),
    );
    fc.assert(
      fc.property(pklArb, (p) => {
        parsesOrRefuses(() => openPytorchBin(rezip(p), "p.bin"));
      }),
      { numRuns: 500 },
    );
  });
});

describe("f32ToF16 property", () => {
  it("picks the nearest half, ties to even", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        const h = f32ToF16(x);
        const y = f16ToF32(h);
        if (!Number.isFinite(y)) {
          expect(Math.abs(x)).toBeGreaterThanOrEqual(65520); // halfway between 65504 and 2^16
          return;
        }
        const d = Math.abs(x - y);
        // Compare with both neighbours (same sign direction; across zero the neighbour is ∓0).
        for (const n of [h + 1, h - 1]) {
          if (n < 0 || n > 0xffff || (n & 0x7fff) >= 0x7c00 || (n & 0x8000) !== (h & 0x8000)) continue;
          const dn = Math.abs(x - f16ToF32(n));
          expect(d <= dn).toBe(true);
          if (d === dn) expect(h & 1).toBe(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
