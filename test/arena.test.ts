// The arena: the one owner of wasm memory. Growth, the detached-view hazard, alignment, limits.
import { describe, expect, it } from "vitest";
import { Arena, OutOfMemoryError } from "../src/arena.js";
import { loadWasm } from "../src/wasm.js";

describe("Arena", () => {
  it("views made before a growth are detached; views made after see the data", async () => {
    const wasm = await loadWasm({ build: "simd", initialBytes: 1 << 20 });
    const arena = new Arena(wasm);
    const p = arena.alloc(16);
    const before = arena.f32(p, 4);
    before.set([1, 2, 3, 4]);
    arena.alloc(8 << 20); // forces memory.grow
    // The hazard: the old view now has length 0, reads give undefined and writes vanish.
    expect(before.length).toBe(0);
    before[0] = 42;
    const after = arena.f32(p, 4);
    expect(Array.from(after)).toEqual([1, 2, 3, 4]);
    // Kernels keep working on the grown memory through fresh pointers.
    const y = arena.alloc(16);
    wasm.k.add(y, p, p, 4);
    expect(Array.from(arena.f32(y, 4))).toEqual([2, 4, 6, 8]);
  });

  it("a shared memory's old view keeps its old length after growth", async () => {
    const wasm = await loadWasm({ build: "simd", shared: true, initialBytes: 1 << 20 });
    const arena = new Arena(wasm);
    const old = arena.u8(0, 16);
    const cap = arena.capacity;
    arena.alloc(4 << 20);
    expect(arena.capacity).toBeGreaterThan(cap);
    expect(old.length).toBe(16);
    expect(wasm.memory.buffer.byteLength).toBe(arena.capacity);
  });

  it("aligns, marks and resets, and tracks the high-water mark", async () => {
    const arena = new Arena(await loadWasm({ build: "simd" }));
    const a = arena.alloc(3);
    const b = arena.alloc(5);
    expect(a % 64).toBe(0);
    expect(b % 64).toBe(0);
    expect(b - a).toBe(64);
    const m = arena.mark();
    arena.alloc(1000);
    const high = arena.highWater;
    arena.reset(m);
    expect(arena.mark()).toBe(m);
    expect(arena.highWater).toBe(high);
    expect(() => arena.reset(m + (1 << 20))).toThrow(/outside/);
  });

  it("refuses to grow while frozen, and past wasm32's 4 GiB, leaving its state unchanged", async () => {
    const arena = new Arena(await loadWasm({ build: "simd", initialBytes: 1 << 20 }));
    const used = arena.used;
    arena.frozen = true;
    expect(() => arena.alloc(64 << 20)).toThrow(OutOfMemoryError);
    expect(() => arena.alloc(64 << 20)).toThrow(/frozen phase/);
    arena.frozen = false;
    expect(arena.used).toBe(used);
    expect(() => arena.alloc(5 * 2 ** 30)).toThrow(
      /out of WebAssembly memory: 5120\.\d MiB needed, wasm32 can address at most 4096\.0 MiB/,
    );
    expect(arena.used).toBe(used);
    expect(() => arena.alloc(-1)).toThrow(/bad allocation size/);
    arena.alloc(1024); // still usable
  });
});

describe("loadWasm", () => {
  it("finds the builds where `locate` says, and names the place when nothing is there", async () => {
    const seen: string[] = [];
    const wasm = await loadWasm({
      build: "simd",
      shared: true,
      locate: (b, s) => {
        seen.push(`${b}${s ? "-mt" : ""}`);
        return new URL(`../build/wasm-lm.${b}${s ? "-mt" : ""}.wasm`, import.meta.url);
      },
    });
    expect(seen).toEqual(["simd-mt"]);
    expect(wasm.shared).toBe(true);
    await expect(loadWasm({ build: "simd", locate: () => new URL("../build/missing.wasm", import.meta.url) })).rejects.toThrow(
      /cannot read file:.*build\/missing\.wasm/,
    );
  });
});
