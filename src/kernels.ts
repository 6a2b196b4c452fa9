// wasm-lm/kernels: each kernel of the .wasm called on Float32Arrays, next to its scalar twin.
//
// For people who test or study the kernels one by one. Every call copies its inputs into the
// module's memory, runs one kernel (the SIMD one, or with `{ scalar: true }` its plain-loop twin)
// and returns a fresh Float32Array: inputs are never mutated, nothing is shared between calls.
// The memory is a small Arena of this object's own: it grows as a call needs and is reset after
// every call. Shapes are row-major and checked before anything runs; a wrong length is a one-line
// error naming the argument. The model itself does not go through here (it plans its memory once
// and calls the raw exports, see wasm-lm/internals).
import { Arena } from "./arena.js";
import { loadWasm, type Build, type LoadWasmOptions, type Wasm } from "./wasm.js";

/** Where the kernels come from: as for a model (see {@link LoadWasmOptions}), on one thread. */
export type KernelsOptions = Pick<LoadWasmOptions, "build" | "bytes" | "module" | "locate" | "initialBytes">;

/** Options every kernel call takes. */
export interface KernelCallOptions {
  /** Run the scalar twin (`<name>Scalar`: plain sequential f32 loops, the reference) instead of the SIMD kernel. */
  scalar?: boolean;
}

export interface NormOptions extends KernelCallOptions {
  /** Added to the variance (or mean square) under the square root. Default 1e-5 (layerNorm), 1e-6 (rmsNorm). */
  eps?: number;
}

export interface SoftmaxOptions extends KernelCallOptions {
  /** (cols) shared by every row: 0 excludes a column (its probability is exactly 0). Default: keep all. */
  mask?: Uint8Array | null;
}

export interface AttentionOptions extends KernelCallOptions {
  /** Positions already in the context before these T queries: keys and values hold past + T rows. Default 0. */
  past?: number;
  /** Multiplies q·k before the softmax. Default 1/√D. */
  scale?: number;
  /** (past + T): 0 hides a key from every query (left padding). Default: every key visible. */
  keyMask?: Uint8Array | null;
  /**
   * The cache k and v are stored in before attention reads them: "f32" (default), or "f16" —
   * kvStoreF16 rounds each to the nearest half and attentionF16 reads the halves (as a model's
   * KVCache of kvDtype "f16" does).
   */
  kvDtype?: "f32" | "f16";
}

type KernelFn = (...args: number[]) => void;
type Input = Float32Array | Uint8Array;

/** Load the kernels (the build "auto" picks, unless `build` says) with an arena of their own. */
export async function loadKernels(opts: KernelsOptions = {}): Promise<Kernels> {
  const { build, bytes, module, locate, initialBytes } = opts;
  return new Kernels(await loadWasm({ build, bytes, module, locate, initialBytes: initialBytes ?? 1 << 20 }));
}

/**
 * The kernels on Float32Arrays. Make one with {@link loadKernels}. Each method returns a new array;
 * `{ scalar: true }` runs the kernel's scalar twin on the same inputs.
 *
 * @example
 * ```ts
 * const k = await loadKernels();
 * const y = k.linear(x, w, b, T, K, N);                  // (T, N) = x·wᵀ + b
 * const ref = k.linear(x, w, b, T, K, N, { scalar: true });
 * ```
 */
export class Kernels {
  readonly #wasm: Wasm;
  readonly #arena: Arena;

  /** Usually made by {@link loadKernels}; or over a module of your own (wasm-lm/internals' loadWasm). */
  constructor(wasm: Wasm) {
    if (wasm.shared) throw new Error("wasm-lm: kernels: give a non-shared module (the kernels run on one thread)");
    this.#wasm = wasm;
    this.#arena = new Arena(wasm);
  }

  /** The build these kernels come from ("simd" or "relaxed"). */
  get build(): Build {
    return this.#wasm.build;
  }

  /** Bytes of WebAssembly memory the kernels have now (it grows with the largest call). */
  get memoryBytes(): number {
    return this.#arena.capacity;
  }

  /**
   * y = x·wᵀ + b, PyTorch's nn.Linear layout.
   * @param x (T, K)
   * @param w (N, K), one row per output
   * @param b (N), or null for no bias
   * @returns y (T, N)
   */
  linear(
    x: Float32Array,
    w: Float32Array,
    b: Float32Array | null,
    T: number,
    K: number,
    N: number,
    o: KernelCallOptions = {},
  ): Float32Array {
    const op = "linear";
    dims(op, { T, K, N });
    f32(op, "x", x, T * K, "T·K");
    f32(op, "w", w, N * K, "N·K");
    if (b !== null) f32(op, "b", b, N, "N");
    const fn = this.#fn(op, o.scalar);
    return this.#run(T * N, (y, put) => fn(y, put(x), put(w), put(b), T, K, N, 0, N));
  }

  /**
   * Each row of x: (x − mean) / √(variance + eps) · w + b (the biased variance, as PyTorch).
   * @param x (T, C)
   * @param w (C), or null for no scale
   * @param b (C), or null for no shift
   * @returns (T, C)
   */
  layerNorm(x: Float32Array, w: Float32Array | null, b: Float32Array | null, T: number, C: number, o: NormOptions = {}): Float32Array {
    const op = "layerNorm";
    dims(op, { T, C });
    f32(op, "x", x, T * C, "T·C");
    if (w !== null) f32(op, "w", w, C, "C");
    if (b !== null) f32(op, "b", b, C, "C");
    const eps = epsilon(op, o.eps ?? 1e-5);
    const fn = this.#fn(op, o.scalar);
    return this.#run(T * C, (y, put) => fn(y, put(x), put(w), put(b), T, C, eps));
  }

  /**
   * Each row of x: x / √(mean(x²) + eps) · w (LLaMA's RMSNorm).
   * @param x (T, C)
   * @param w (C), or null for no scale
   * @returns (T, C)
   */
  rmsNorm(x: Float32Array, w: Float32Array | null, T: number, C: number, o: NormOptions = {}): Float32Array {
    const op = "rmsNorm";
    dims(op, { T, C });
    f32(op, "x", x, T * C, "T·C");
    if (w !== null) f32(op, "w", w, C, "C");
    const eps = epsilon(op, o.eps ?? 1e-6);
    const fn = this.#fn(op, o.scalar);
    return this.#run(T * C, (y, put) => fn(y, put(x), put(w), T, C, eps));
  }

  /**
   * Softmax of each row over its columns; with a mask, excluded columns get exactly 0 and a row
   * with nothing kept is all zeros.
   * @param x (rows, cols)
   * @returns (rows, cols)
   */
  softmax(x: Float32Array, rows: number, cols: number, o: SoftmaxOptions = {}): Float32Array {
    const op = "softmax";
    dims(op, { rows, cols });
    f32(op, "x", x, rows * cols, "rows·cols");
    const mask = o.mask ?? null;
    if (mask !== null) u8(op, "mask", mask, cols, "cols");
    const fn = this.#fn(op, o.scalar);
    return this.#run(rows * cols, (y, put) => fn(y, put(x), put(mask), rows, cols));
  }

  /**
   * Causal attention with grouped-query heads: query t (at position past + t) of head h attends to
   * keys 0 … past + t of KV head h / (H / Hkv), out = softmax(q·kᵀ · scale)·v.
   * Hkv = H is multi-head attention, Hkv = 1 multi-query.
   * @param q (T, H·D)
   * @param k (past + T, Hkv·D), as the K projection writes it
   * @param v (past + T, Hkv·D)
   * @returns (T, H·D)
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    T: number,
    H: number,
    Hkv: number,
    D: number,
    o: AttentionOptions = {},
  ): Float32Array {
    const op = "attention";
    const past = o.past ?? 0;
    dims(op, { T, H, Hkv, D, past });
    if (Hkv < 1 || H % Hkv !== 0) throw new Error(`wasm-lm: ${op}: Hkv = ${Hkv} must divide H = ${H}`);
    const S = past + T;
    f32(op, "q", q, T * H * D, "T·H·D");
    f32(op, "k", k, S * Hkv * D, "(past + T)·Hkv·D");
    f32(op, "v", v, S * Hkv * D, "(past + T)·Hkv·D");
    const keyMask = o.keyMask ?? null;
    if (keyMask !== null) u8(op, "keyMask", keyMask, S, "past + T");
    const scale = o.scale ?? 1 / Math.sqrt(D);
    if (!Number.isFinite(scale)) throw new Error(`wasm-lm: ${op}: scale = ${scale} must be a finite number`);
    const kvDtype = o.kvDtype ?? "f32";
    if (kvDtype !== "f32" && kvDtype !== "f16") throw new Error(`wasm-lm: ${op}: kvDtype '${String(kvDtype)}' is not supported (f32, f16)`);
    const f16 = kvDtype === "f16";
    const store = this.#fn(f16 ? "kvStoreF16" : "kvStore", o.scalar);
    const fn = this.#fn(f16 ? "attentionF16" : op, o.scalar);
    return this.#run(T * H * D, (out, put, alloc) => {
      // The kernel reads keys and values per KV head: (Hkv, S, D), laid out by kvStore (f16: half
      // the floats' room is enough, rounded up).
      const cacheFloats = f16 ? Math.ceil((S * Hkv * D) / 2) : S * Hkv * D;
      const kc = alloc(cacheFloats),
        vc = alloc(cacheFloats),
        scratch = alloc(S);
      store(kc, put(k), S, 0, Hkv, D, S);
      store(vc, put(v), S, 0, Hkv, D, S);
      fn(out, put(q), kc, vc, put(keyMask), 0, scratch, T, past, H, Hkv, D, S, scale, 0, H);
    });
  }

  /**
   * Rotary position embedding, LLaMA's rotate-half form: for each row and head, with a = x[i] and
   * b = x[i + D/2], a·cos − b·sin and b·cos + a·sin.
   * @param x (rows, H·D), the q or k projection
   * @param cs (rows, D): each row's cos in [0, D/2), sin in [D/2, D) (see {@link ropeTable})
   * @returns (rows, H·D)
   */
  rope(x: Float32Array, cs: Float32Array, rows: number, H: number, D: number, o: KernelCallOptions = {}): Float32Array {
    const op = "rope";
    dims(op, { rows, H, D });
    if (D % 2 !== 0) throw new Error(`wasm-lm: ${op}: D = ${D} must be even`);
    f32(op, "x", x, rows * H * D, "rows·H·D");
    f32(op, "cs", cs, rows * D, "rows·D");
    const fn = this.#fn(op, o.scalar);
    return this.#run(rows * H * D, (y, put, _alloc, set) => {
      set(y, x); // rope works in place
      fn(y, put(cs), rows, H, D);
    });
  }

  /** silu(gate) · up, element by element (LLaMA's MLP). gate and up have the same length. */
  swiglu(gate: Float32Array, up: Float32Array, o: KernelCallOptions = {}): Float32Array {
    const op = "swiglu";
    f32(op, "gate", gate, -1, "");
    f32(op, "up", up, gate.length, "gate.length");
    const fn = this.#fn(op, o.scalar);
    return this.#run(gate.length, (y, put) => fn(y, put(gate), put(up), gate.length));
  }

  /** x · Φ(x), the exact (erf) GELU. */
  gelu(x: Float32Array, o: KernelCallOptions = {}): Float32Array {
    return this.#unary("gelu", x, o);
  }
  /** GELU's tanh approximation (PyTorch approximate="tanh", GPT-2's gelu_new). */
  geluTanh(x: Float32Array, o: KernelCallOptions = {}): Float32Array {
    return this.#unary("geluTanh", x, o);
  }
  /** x / (1 + e^−x). */
  silu(x: Float32Array, o: KernelCallOptions = {}): Float32Array {
    return this.#unary("silu", x, o);
  }
  /** max(x, 0) (NaN → 0). */
  relu(x: Float32Array, o: KernelCallOptions = {}): Float32Array {
    return this.#unary("relu", x, o);
  }

  #unary(op: string, x: Float32Array, o: KernelCallOptions): Float32Array {
    f32(op, "x", x, -1, "");
    const fn = this.#fn(op, o.scalar);
    return this.#run(x.length, (y, put) => fn(y, put(x), x.length));
  }

  #fn(name: string, scalar = false): KernelFn {
    const full = scalar ? `${name}Scalar` : name;
    const fn = (this.#wasm.k as Record<string, unknown>)[full];
    if (typeof fn !== "function") throw new Error(`wasm-lm: kernel ${full} is not in this .wasm (rebuild it: npm run asbuild)`);
    return fn as KernelFn;
  }

  /**
   * One call: an output of n floats, inputs copied in by `put` (null → 0, "none"), scratch from
   * `alloc`; the output copied out and the arena reset, whatever happens.
   */
  #run(
    n: number,
    body: (
      y: number,
      put: (a: Input | null) => number,
      alloc: (floats: number) => number,
      set: (ptr: number, a: Float32Array) => void,
    ) => void,
  ): Float32Array {
    const a = this.#arena;
    const mark = a.mark();
    try {
      const y = a.alloc(n * 4);
      const put = (data: Input | null) => (data === null ? 0 : a.put(data));
      const alloc = (floats: number) => a.alloc(floats * 4);
      const set = (ptr: number, data: Float32Array) => a.f32(ptr, data.length).set(data);
      body(y, put, alloc, set);
      return a.f32(y, n).slice();
    } finally {
      a.reset(mark);
    }
  }
}

/**
 * Rotary cos | sin rows for {@link Kernels.rope}, in float32 as transformers' LLaMA computes them
 * (and the model does): angle_i = position · inv_freq_i with inv_freq_i = 1 / θ^(2i/D).
 * @param positions each row's position
 * @param D the head size (even)
 * @param theta the base (config.json's rope_theta), default 10000
 * @returns (positions.length, D): cos in [0, D/2), sin in [D/2, D)
 */
export function ropeTable(positions: ArrayLike<number>, D: number, theta = 10000): Float32Array {
  dims("ropeTable", { D });
  if (D % 2 !== 0) throw new Error(`wasm-lm: ropeTable: D = ${D} must be even`);
  const half = D / 2;
  const cs = new Float32Array(positions.length * D);
  for (let r = 0; r < positions.length; r++) {
    const t = Math.fround(positions[r]);
    for (let i = 0; i < half; i++) {
      const invFreq = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / D))));
      const a = Math.fround(t * invFreq);
      cs[r * D + i] = Math.cos(a);
      cs[r * D + half + i] = Math.sin(a);
    }
  }
  return cs;
}

const MAX_I32 = 2 ** 31 - 1;

function dims(op: string, sizes: Record<string, number>): void {
  for (const [name, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_I32) throw new Error(`wasm-lm: ${op}: ${name} = ${v} must be a non-negative integer`);
  }
}

/** want < 0: any length. */
function f32(op: string, name: string, a: unknown, want: number, formula: string): void {
  if (!(a instanceof Float32Array)) throw new Error(`wasm-lm: ${op}: ${name} must be a Float32Array, got ${describe(a)}`);
  if (want >= 0 && a.length !== want) throw new Error(`wasm-lm: ${op}: ${name} has ${a.length} elements, expected ${formula} = ${want}`);
}

function u8(op: string, name: string, a: unknown, want: number, formula: string): void {
  if (!(a instanceof Uint8Array)) throw new Error(`wasm-lm: ${op}: ${name} must be a Uint8Array, got ${describe(a)}`);
  if (a.length !== want) throw new Error(`wasm-lm: ${op}: ${name} has ${a.length} elements, expected ${formula} = ${want}`);
}

function epsilon(op: string, eps: number): number {
  if (!Number.isFinite(eps) || eps < 0) throw new Error(`wasm-lm: ${op}: eps = ${eps} must be a non-negative number`);
  return eps;
}

const describe = (a: unknown): string =>
  a === null ? "null" : typeof a === "object" ? ((a as object).constructor?.name ?? "an object") : typeof a;
