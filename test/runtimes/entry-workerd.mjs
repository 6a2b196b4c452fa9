// workerd (Cloudflare's Workers runtime): bundled by esbuild into one ES module with dist/ (a
// Worker's modules are fixed at deploy time; there is no node_modules to resolve from), with the
// export conditions wrangler uses (workerd, worker, browser). Workers
// forbid compiling wasm bytes at run time, so each build arrives as a compiled WebAssembly.Module:
// a Wasm module of the worker (imported below; in a modules-syntax worker this replaces the
// service-worker syntax's wasm binding, and is what wrangler produces), left external by esbuild.
// The fixture files come through text and data bindings (see run.mjs for the capnp config).
// Run by `workerd test`, which calls the test() handler below.
import * as lib from "wasm-lm";
import * as kernels from "wasm-lm/kernels";
import { MODEL_FIXTURES, runChecks, workerdBinding } from "./checks.mjs";
import simd from "./wasm-lm.simd.wasm";
import relaxed from "./wasm-lm.relaxed.wasm";
import simdMt from "./wasm-lm.simd-mt.wasm";
import relaxedMt from "./wasm-lm.relaxed-mt.wasm";

export default {
  async test(_controller, env) {
    const modules = { simd, relaxed, "simd-mt": simdMt, "relaxed-mt": relaxedMt };
    const name = env.RUNTIME_NAME;
    const log = (line) => console.log(`[${name}] ${line}`);
    const result = await runChecks({
      runtime: name,
      lib,
      kernels,
      threads: env.THREADS,
      log,
      fixture: {
        models: MODEL_FIXTURES.map((m) => ({
          name: m,
          configJson: env[workerdBinding(m, "CONFIG_JSON")],
          referenceJson: env[workerdBinding(m, "REFERENCE_JSON")],
          safetensors: new Uint8Array(env[workerdBinding(m, "SAFETENSORS")]),
        })),
        vocabJson: env.VOCAB_JSON,
        mergesTxt: env.MERGES_TXT,
        tokenizationJson: env.TOKENIZATION_JSON,
      },
      wasmSource: async (build, shared) => ({ module: modules[shared ? `${build}-mt` : build] }),
    });
    // Bytes are what other runtimes get; here they must fail with wasm-lm's own explanation.
    try {
      await kernels.loadKernels({ build: "simd", bytes: new Uint8Array(env.SIMD_BYTES) });
      log("note loadKernels({ bytes }) compiled at run time: Workers no longer forbid it?");
    } catch (e) {
      const msg = String(e?.message ?? e);
      if (msg.startsWith("wasm-lm:")) log(`ok   loadKernels({ bytes }) refused, with a clear error: "${msg}"`);
      else {
        log(`FAIL loadKernels({ bytes }): unclear error: ${msg}`);
        result.ok = false;
        result.failures.push("bytes error");
      }
    }
    console.log(`RESULT ${JSON.stringify({ runtime: name, ...result })}`);
    if (!result.ok) throw new Error(`${result.failures.length} check(s) failed`);
  },
};
