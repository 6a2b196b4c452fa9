// Bundle worker.mjs with wasm-lm for the browser: out/worker.js plus the four .wasm builds next to
// it (the worker picks one: relaxed SIMD where the browser has it, -mt for threads).
// `node build.mjs [outdir]` (default ./out). Needs `npm install wasm-lm esbuild`.
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "out"));
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, "worker.mjs")],
  outfile: join(out, "worker.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  logLevel: "warning",
});
const require = createRequire(join(here, "worker.mjs"));
for (const build of ["simd", "relaxed", "simd-mt", "relaxed-mt"]) {
  copyFileSync(require.resolve(`wasm-lm/build/wasm-lm.${build}.wasm`), join(out, `wasm-lm.${build}.wasm`));
}
console.log(`built ${out}/worker.js`);
