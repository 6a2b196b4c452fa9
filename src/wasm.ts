// The one module that knows where the .wasm builds live and how each platform loads them.
//
// Two builds come from one AssemblyScript source (asconfig.json):
//   simd     SIMD128, runs everywhere wasm-lm runs
//   relaxed  SIMD128 + relaxed SIMD (f32x4.relaxed_madd = a fused multiply-add, ~1.3x on matmul; the
//            relaxed int8 dot product for the q4 / int8·int8 kernels): Node 22+, Chromium, Deno, Bun;
//            Node 20 behind --experimental-wasm-relaxed-simd, which this module sets itself (below)
// `build: "auto"` probes the runtime with WebAssembly.validate on a tiny module and picks the best.
// Callers may hand in the bytes or a compiled WebAssembly.Module instead (Cloudflare Workers forbid
// compiling fetched bytes; bundlers may want to inline the file).
import { instantiate } from "@assemblyscript/loader";

export type Build = "simd" | "relaxed";
export type BuildChoice = Build | "auto";

// Kernels with a scalar twin of the same signature (see assembly/index.ts).
/** K or V rows (T, H·D) f32 into a cache (H, maxCtx, D) at positions [past, past + T): f32, or f16 for kvStoreF16. */
type KVStoreKernel = (cache: number, src: number, T: number, past: number, H: number, D: number, maxCtx: number) => void;
/** attention reads f32 caches, attentionF16 f16 ones (see assembly/kernels/attention.ts). */
type AttentionKernel = (
  out: number,
  q: number,
  k: number,
  v: number,
  keyMask: number,
  probs: number,
  scratch: number,
  T: number,
  past: number,
  H: number,
  Hkv: number,
  D: number,
  maxCtx: number,
  scale: number,
  h0: number,
  h1: number,
) => void;
type LinearQ4Kernel = (
  y: number,
  xq: number,
  xs: number,
  q: number,
  s: number,
  b: number,
  T: number,
  K: number,
  N: number,
  n0: number,
  n1: number,
) => void;
type LinearI8DotKernel = (
  y: number,
  xq: number,
  xs: number,
  q: number,
  s: number,
  b: number,
  T: number,
  K: number,
  N: number,
  n0: number,
  n1: number,
  G: number,
) => void;

type MatvecI8A16Kernel = (
  y: number,
  xq: number,
  xs: number,
  q: number,
  s: number,
  b: number,
  K: number,
  n0: number,
  n1: number,
  G: number,
) => void;

/** The raw kernel exports (see assembly/index.ts). Pointers are byte offsets, sizes are i32. */
export interface KernelExports {
  heapBase(): number;
  linear(y: number, x: number, w: number, b: number, T: number, K: number, N: number, n0: number, n1: number): void;
  linearScalar(y: number, x: number, w: number, b: number, T: number, K: number, N: number, n0: number, n1: number): void;
  layerNorm(y: number, x: number, w: number, b: number, T: number, C: number, eps: number): void;
  layerNormScalar(y: number, x: number, w: number, b: number, T: number, C: number, eps: number): void;
  rmsNorm(y: number, x: number, w: number, T: number, C: number, eps: number): void;
  rmsNormScalar(y: number, x: number, w: number, T: number, C: number, eps: number): void;
  softmax(y: number, x: number, mask: number, rows: number, cols: number): void;
  softmaxScalar(y: number, x: number, mask: number, rows: number, cols: number): void;
  kvStore: KVStoreKernel;
  kvStoreScalar: KVStoreKernel;
  kvStoreF16: KVStoreKernel;
  kvStoreF16Scalar: KVStoreKernel;
  attention: AttentionKernel;
  attentionScalar: AttentionKernel;
  attentionF16: AttentionKernel;
  attentionF16Scalar: AttentionKernel;
  rope(x: number, cs: number, rows: number, H: number, D: number): void;
  ropeScalar(x: number, cs: number, rows: number, H: number, D: number): void;
  relu(y: number, x: number, n: number): void;
  gelu(y: number, x: number, n: number): void;
  geluTanh(y: number, x: number, n: number): void;
  silu(y: number, x: number, n: number): void;
  swiglu(y: number, gate: number, up: number, n: number): void;
  add(y: number, a: number, b: number, n: number): void;
  addBias(y: number, b: number, T: number, C: number): void;
  embedGather(y: number, table: number, ids: number, T: number, C: number): void;
  scale(y: number, x: number, s: number, n: number): void;
  linearF16(y: number, x: number, w: number, b: number, T: number, K: number, N: number, n0: number, n1: number, scratch: number): void;
  linearI8(
    y: number,
    x: number,
    q: number,
    s: number,
    b: number,
    T: number,
    K: number,
    N: number,
    n0: number,
    n1: number,
    G: number,
    scratch: number,
  ): void;
  quantizeI8(q: number, s: number, w: number, n: number, K: number, G: number): void;
  /** linearI8 at T = 1 in two steps: x → int16 xq (K) and its scale xs (one f32), then rows [n0, n1). */
  quantizeActI16(xq: number, xs: number, x: number, K: number): void;
  quantizeActI16Scalar(xq: number, xs: number, x: number, K: number): void;
  matvecI8A16: MatvecI8A16Kernel;
  matvecI8A16Scalar: MatvecI8A16Kernel;
  f32ToF16Rows(dst: number, src: number, n: number): void;
  embedGatherF16(y: number, table: number, ids: number, T: number, C: number): void;
  embedGatherI8(y: number, q: number, s: number, ids: number, T: number, C: number, G: number): void;
  quantRows(): number;
  /** xq (T, K) int8, xs (T, 2, K/32) f32: per token the block scales, then the block sums (see linear_dot.ts). */
  quantizeActI8(xq: number, xs: number, x: number, T: number, K: number, bits: number): void;
  quantizeActI8Scalar(xq: number, xs: number, x: number, T: number, K: number, bits: number): void;
  /** q (N, K/2) packed nibbles, s (N, 2, K/32) bf16 scales then mins; K % 32 == 0. */
  quantizeQ4(q: number, s: number, w: number, n: number, K: number): void;
  /** y[t] = row ids[t] of a q4 table (V, C) (quantizeQ4's layout) as f32. */
  embedGatherQ4(y: number, q: number, s: number, ids: number, T: number, C: number): void;
  linearQ4: LinearQ4Kernel;
  linearQ4Scalar: LinearQ4Kernel;
  /** int8 weights from quantizeI8 (group G, G % 32 == 0) against quantizeActI8's activations. */
  linearI8Dot: LinearI8DotKernel;
  linearI8DotScalar: LinearI8DotKernel;
  /**
   * T > 1 (see gemm_dot.ts): quantizeActI8's scales regrouped per tile of 4 tokens, xt (ceil(T/4), 2, K/32, 4)
   * f32.
   */
  actTiles(xt: number, xs: number, T: number, K: number): void;
  actTilesScalar(xt: number, xs: number, T: number, K: number): void;
  /** linearQ4 at T > 1 on actTiles' scales. */
  gemmQ4Tiles: LinearQ4Kernel;
  gemmQ4TilesScalar: LinearQ4Kernel;
  [name: string]: unknown;
}

export interface Wasm {
  /** Kernel functions straight from the instance (no wrapper on the hot path). */
  k: KernelExports;
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  build: Build;
  /** The memory is a shared one (the -mt build): worker threads can run kernels on it. */
  shared: boolean;
}

export interface LoadWasmOptions {
  /** Which build to run; "auto" (default) picks relaxed when the runtime validates it. */
  build?: BuildChoice;
  /** The .wasm bytes of the chosen build (skips locating the file). */
  bytes?: BufferSource;
  /** A compiled module of the chosen build (for runtimes that forbid compiling at run time). */
  module?: WebAssembly.Module;
  /** Use this memory instead of a new one (e.g. a shared memory for worker threads). */
  memory?: WebAssembly.Memory;
  /** Load the shared-memory (-mt) build on a shared memory, so worker threads can join. */
  shared?: boolean;
  /**
   * Where the .wasm files are served from, when not next to this module (a bundle, a CDN):
   * called with the chosen build and whether it is the shared-memory one.
   */
  locate?: (build: Build, shared: boolean) => URL | string;
  /** Initial memory in bytes (grown later by the arena as planned). Default 16 MiB. */
  initialBytes?: number;
}

export const PAGE = 65536;
/** wasm32 limit: 65536 pages of 64 KiB. */
export const MAX_PAGES = 65536;

/** A module of one () -> () function with this body (no locals), for WebAssembly.validate. */
function probeModule(body: number[]): Uint8Array<ArrayBuffer> {
  const fn = [0x00, ...body, 0x0b]; // no locals, the body, end
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version 1
    ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00], // type section: () -> ()
    ...[0x03, 0x02, 0x01, 0x00], // function section
    ...[0x0a, fn.length + 2, 0x01, fn.length, ...fn], // code section: one body
  ]);
}
const V128_ZERO = [0xfd, 0x0c, ...new Array<number>(16).fill(0)]; // v128.const 0
// (func v128.const 0 v128.const 0 v128.const 0 f32x4.relaxed_madd drop)
const RELAXED_PROBE = probeModule([...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x85, 0x02, 0x1a]);
// (func v128.const 0 drop)
const SIMD_PROBE = probeModule([...V128_ZERO, 0x1a]);

export interface WasmFeatures {
  simd: boolean;
  relaxedSimd: boolean;
  threads: boolean;
}

/** Node, or a runtime that provides its `process` (Bun; Deno 2). */
export const isNode = typeof process !== "undefined" && !!process.versions?.node;

interface V8Flags {
  setFlagsFromString(flag: string): void;
}
let relaxedFlagSet = false;

/**
 * Node 20 validates relaxed SIMD only behind --experimental-wasm-relaxed-simd (not allowed in
 * NODE_OPTIONS), and V8 honours the flag when it is set at run time — measured on Node 20.20: after
 * v8.setFlagsFromString a relaxed module validates, compiles and runs, even when modules were compiled
 * or a relaxed validate failed earlier in the process, and worker threads started later see it too.
 * So in Node, when the probe fails, set it once and probe again. Runtimes that have relaxed SIMD
 * (Node 22+, Deno, Bun) never get here. Returns whether the flag was set.
 */
function setRelaxedFlag(v8: V8Flags | undefined): boolean {
  if (relaxedFlagSet || !v8 || typeof v8.setFlagsFromString !== "function") return relaxedFlagSet;
  try {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
    relaxedFlagSet = true;
  } catch {
    // not V8, or flags are locked: the simd build it is
  }
  return relaxedFlagSet;
}

/** The synchronous way in (process.getBuiltinModule: Node ≥ 20.16); loadWasm also tries import(). */
function syncV8(): V8Flags | undefined {
  const proc = isNode ? (process as { getBuiltinModule?: (id: string) => unknown }) : undefined;
  try {
    return typeof proc?.getBuiltinModule === "function" ? (proc.getBuiltinModule("node:v8") as V8Flags) : undefined;
  } catch {
    return undefined;
  }
}

export function detectFeatures(): WasmFeatures {
  let threads = false;
  try {
    threads =
      typeof SharedArrayBuffer !== "undefined" &&
      new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    threads = false;
  }
  let relaxedSimd = WebAssembly.validate(RELAXED_PROBE);
  if (!relaxedSimd && isNode && !relaxedFlagSet && setRelaxedFlag(syncV8())) relaxedSimd = WebAssembly.validate(RELAXED_PROBE);
  return { simd: WebAssembly.validate(SIMD_PROBE), relaxedSimd, threads };
}

/** Node before 20.16 has no process.getBuiltinModule: set the flag through import("node:v8"). */
async function enableRelaxedSimd(): Promise<void> {
  if (!isNode || relaxedFlagSet || WebAssembly.validate(RELAXED_PROBE)) return;
  if (setRelaxedFlag(syncV8())) return;
  try {
    setRelaxedFlag(await importNodeBuiltin<V8Flags>("v8"));
  } catch {
    // no node:v8 here
  }
}

export function chooseBuild(choice: BuildChoice = "auto"): Build {
  const f = detectFeatures();
  if (!f.simd) {
    throw new Error("wasm-lm: this runtime's WebAssembly has no SIMD128 support (needed by every build)");
  }
  if (choice === "auto") return f.relaxedSimd ? "relaxed" : "simd";
  if (choice === "relaxed" && !f.relaxedSimd) {
    throw new Error(
      "wasm-lm: build 'relaxed' requested but this runtime does not validate relaxed SIMD " +
        "(Node 22+, Chromium, Deno and Bun have it; Node 20 gets it from v8.setFlagsFromString, which failed here); use build 'simd'",
    );
  }
  if (choice !== "simd" && choice !== "relaxed") {
    throw new Error(`wasm-lm: unknown build '${String(choice)}' (expected "auto", "simd" or "relaxed")`);
  }
  return choice;
}

/** Where a build's file is, relative to this module (src/ and dist/ both sit next to build/). */
export function wasmUrl(build: Build, shared = false): URL {
  return new URL(`../build/wasm-lm.${build}${shared ? "-mt" : ""}.wasm`, import.meta.url);
}

/**
 * A Node built-in module, imported only when called (Node, Deno, Bun). The specifier is computed so
 * that bundlers targeting browsers or Workers leave it alone: esbuild fails on a literal
 * import("node:…") and webpack 5 on the node: scheme; the comments keep webpack and Vite quiet.
 */
export function importNodeBuiltin<T>(name: string): Promise<T> {
  return import(/* webpackIgnore: true */ /* @vite-ignore */ `node:${name}`) as Promise<T>;
}

async function readBuild(build: Build, shared: boolean, locate?: LoadWasmOptions["locate"]): Promise<BufferSource> {
  const url = locate
    ? new URL(locate(build, shared), typeof location !== "undefined" ? location.href : import.meta.url)
    : wasmUrl(build, shared);
  try {
    if (url.protocol === "file:" && isNode) {
      const { readFile } = await importNodeBuiltin<typeof import("node:fs/promises")>("fs/promises");
      return await readFile(url);
    }
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.arrayBuffer();
  } catch (e) {
    throw new Error(
      `wasm-lm: cannot read ${url.href} (${(e as Error).message}); run 'npm run asbuild' ` + `or pass { bytes } / { module } to loadWasm`,
    );
  }
}

async function compile(bytes: BufferSource): Promise<WebAssembly.Module> {
  try {
    return await WebAssembly.compile(bytes);
  } catch (e) {
    // Cloudflare Workers (workerd): "Wasm code generation disallowed by embedder".
    if (/disallowed/i.test((e as Error)?.message ?? "")) {
      throw new Error(
        "wasm-lm: this runtime forbids compiling WebAssembly at run time (Cloudflare Workers); " +
          "import the .wasm as a module and pass it as { module }",
      );
    }
    throw e;
  }
}

export async function loadWasm(opts: LoadWasmOptions = {}): Promise<Wasm> {
  // Code handed in by the caller is labelled by opts.build (it only names the build in reports).
  const fromCaller = opts.module !== undefined || opts.bytes !== undefined;
  if (!fromCaller || opts.build === "relaxed") await enableRelaxedSimd();
  const chosen: Build = fromCaller ? (opts.build === "relaxed" ? "relaxed" : "simd") : chooseBuild(opts.build);
  const shared = opts.shared ?? false;
  if (shared && !detectFeatures().threads) {
    throw new Error(
      "wasm-lm: shared WebAssembly memory is not available here (browsers need a cross-origin " +
        "isolated page: COOP same-origin + COEP require-corp); run with one thread",
    );
  }
  const module = opts.module ?? (await compile(opts.bytes ?? (await readBuild(chosen, shared, opts.locate))));
  const initialPages = Math.max(1, Math.ceil((opts.initialBytes ?? 16 << 20) / PAGE));
  const memory = opts.memory ?? new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared });
  const { instance } = await instantiate(module, {
    env: {
      memory,
      abort(_msg: number, _file: number, line: number, col: number) {
        throw new Error(`wasm-lm: kernel abort at line ${line}:${col}`);
      },
    },
  });
  return { k: instance.exports as unknown as KernelExports, memory, module, build: chosen, shared };
}
