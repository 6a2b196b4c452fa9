// The one owner of WebAssembly memory on the TypeScript side.
//
// A bump allocator over the module's linear memory, above the AssemblyScript heap base:
//   - callers plan sizes up front and `reserve` once, so nothing grows during a forward pass;
//   - regions are aligned (64 bytes by default: a cache line, and 16 for SIMD loads);
//   - `mark`/`reset` release everything allocated after a mark (scratch for one call);
//   - typed-array views are made on demand from the *current* buffer: growing a non-shared
//     memory detaches the old ArrayBuffer (old views then read length 0 and writes vanish),
//     so a view is never cached across anything that may grow memory.
import { MAX_PAGES, PAGE, type Wasm } from "./wasm.js";
import { numel } from "./formats/types.js";

export { numel };

export type DType = "f32" | "f16" | "i8" | "u8" | "i32";
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i8: 1, u8: 1, i32: 4 };

/** A tensor is a view: where it lives, its shape and element type. */
export interface Tensor {
  ptr: number;
  shape: number[];
  dtype: DType;
}

export const MAX_BYTES = MAX_PAGES * PAGE;

export class OutOfMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OutOfMemoryError";
  }
}

const fmtMiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

export class Arena {
  readonly wasm: Wasm;
  readonly base: number;
  private top: number;
  private high: number;
  /** While frozen, an allocation that would need more memory throws instead of growing it. */
  frozen = false;

  constructor(wasm: Wasm, reserveBytes = 0) {
    this.wasm = wasm;
    this.base = align(wasm.k.heapBase() >>> 0, 64);
    this.top = this.base;
    this.high = this.base;
    if (reserveBytes > 0) this.reserve(reserveBytes);
  }

  get memory(): WebAssembly.Memory {
    return this.wasm.memory;
  }
  /** Bytes of linear memory the module has now. */
  get capacity(): number {
    return this.wasm.memory.buffer.byteLength;
  }
  /** Bytes handed out (above the heap base). */
  get used(): number {
    return this.top - this.base;
  }
  /** The most ever handed out at once. */
  get highWater(): number {
    return this.high - this.base;
  }

  /** Make sure `bytes` more can be allocated without growing memory later. */
  reserve(bytes: number): void {
    this.ensure(this.top + bytes);
  }

  private ensure(end: number): void {
    if (end <= this.capacity) return;
    if (end > MAX_BYTES) {
      throw new OutOfMemoryError(
        `wasm-lm: out of WebAssembly memory: ${fmtMiB(end)} needed, ` + `wasm32 can address at most ${fmtMiB(MAX_BYTES)}`,
      );
    }
    if (this.frozen) {
      throw new OutOfMemoryError(
        `wasm-lm: arena needs ${fmtMiB(end - this.capacity)} more during a frozen ` +
          `phase (a forward pass must not grow memory: plan it up front)`,
      );
    }
    const pages = Math.ceil((end - this.capacity) / PAGE);
    try {
      this.wasm.memory.grow(pages);
    } catch (e) {
      throw new OutOfMemoryError(
        `wasm-lm: cannot grow WebAssembly memory to ${fmtMiB(end)} ` + `(${(e as Error).message}); the host refused the allocation`,
      );
    }
  }

  /** Hand out `bytes` at the given alignment; grows memory if needed (unless frozen). */
  alloc(bytes: number, alignment = 64): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`wasm-lm: bad allocation size ${bytes}`);
    const ptr = align(this.top, alignment);
    this.ensure(ptr + bytes);
    this.top = ptr + bytes;
    if (this.top > this.high) this.high = this.top;
    return ptr;
  }

  tensor(shape: number[], dtype: DType = "f32"): Tensor {
    return { ptr: this.alloc(numel(shape) * DTYPE_BYTES[dtype]), shape: [...shape], dtype };
  }

  mark(): number {
    return this.top;
  }
  reset(mark: number): void {
    if (mark < this.base || mark > this.top) throw new Error(`wasm-lm: arena reset to ${mark} outside [${this.base}, ${this.top}]`);
    this.top = mark;
  }

  // Views over the current buffer. Cheap to make; never keep one across a possible growth.
  f32(ptr: number, len: number): Float32Array {
    return new Float32Array(this.wasm.memory.buffer, ptr, len);
  }
  u16(ptr: number, len: number): Uint16Array {
    return new Uint16Array(this.wasm.memory.buffer, ptr, len);
  }
  u8(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.wasm.memory.buffer, ptr, len);
  }
  i8(ptr: number, len: number): Int8Array {
    return new Int8Array(this.wasm.memory.buffer, ptr, len);
  }
  i32(ptr: number, len: number): Int32Array {
    return new Int32Array(this.wasm.memory.buffer, ptr, len);
  }
  /** A Float32Array over an f32 tensor. */
  view(t: Tensor): Float32Array {
    if (t.dtype !== "f32") throw new Error(`wasm-lm: view() wants an f32 tensor, got ${t.dtype}`);
    return this.f32(t.ptr, numel(t.shape));
  }
  /** Copy host data into a fresh region and return its pointer. */
  put(data: Float32Array | Int32Array | Uint8Array): number {
    const ptr = this.alloc(data.byteLength);
    new Uint8Array(this.wasm.memory.buffer, ptr, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return ptr;
  }
}

export function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
