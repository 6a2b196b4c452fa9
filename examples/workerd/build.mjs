// Bundle worker.mjs with wasm-lm for workerd: out/worker.js and out/wasm-lm.simd.wasm, which
// config.capnp embeds. `node build.mjs [outdir]` (default ./out). Needs `npm install wasm-lm esbuild`.
// (Wrangler does the same by itself: `wrangler deploy worker.mjs` with MODEL_URL in `vars`.)
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "out"));
mkdirSync(join(out, "wasm-lm/build"), { recursive: true });
await esbuild.build({
  entryPoints: [join(here, "worker.mjs")],
  outfile: join(out, "worker.js"),
  bundle: true,
  format: "esm",
  platform: "neutral",
  conditions: ["workerd", "worker", "browser"], // wasm-lm's platform-neutral entry, no node: imports
  external: ["*.wasm"], // kept as imports: config.capnp lists the module
  logLevel: "warning",
});
// The .wasm, at the name the bundle imports it by.
const wasm = createRequire(join(here, "worker.mjs")).resolve("wasm-lm/build/wasm-lm.simd.wasm");
copyFileSync(wasm, join(out, "wasm-lm/build/wasm-lm.simd.wasm"));
console.log(`built ${out}/worker.js`);
