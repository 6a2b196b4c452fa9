// Self-test of bench/decoder-onnx.ts through onnxruntime-web, on the real transformers fixtures
// (test/fixtures/{opt,gpt2,llama}-tiny: config.json, model.safetensors, reference.json with the
// logits transformers computed for input_ids). Every graph variant and lm_head variant must give
// transformers' logits within 1e-4 (max |Δ|), both for one prefill of all the ids and when the ids
// go in as a 5-token prefill followed by one-token decode steps on the returned presents (which
// checks the past/present plumbing, positions, the causal mask and rotary offsets).
//   npx tsx bench/decoder-onnx.selftest.ts
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Tensor } from "onnxruntime-web";
import { openSafetensors } from "../src/formats/safetensors.js";
import { modelDims, parseModelConfig } from "../src/models/families/index.js";
import { exportDecoderOnnx, graphVariants, type LmHeadVariant } from "./decoder-onnx.js";
import { createSession, initOrt, ort } from "./ort.js";

const TOL = 1e-4;
const PREFIX = 5;

await initOrt();
let failed = 0;
let passed = 0;
for (const name of ["opt-tiny", "gpt2-tiny", "llama-tiny"]) {
  const dir = fileURLToPath(new URL(`../test/fixtures/${name}/`, import.meta.url));
  const config = parseModelConfig(readFileSync(dir + "config.json", "utf8"), `${name}/config.json`);
  const src = openSafetensors(new Uint8Array(readFileSync(dir + "model.safetensors")), `${name}/model.safetensors`);
  const ref = JSON.parse(readFileSync(dir + "reference.json", "utf8")) as { input_ids: number[]; logits: number[][] };
  const ids = ref.input_ids;
  const want = ref.logits;
  for (const variant of graphVariants(modelDims(config))) {
    for (const lmHead of ["gemm", "matmul"] as LmHeadVariant[]) {
      const what = `${name} ${variant}/${lmHead}`;
      try {
        const ex = exportDecoderOnnx(config, src, { variant, lmHead, label: name });
        const s = await createSession(ex.bytes);
        const i64 = (xs: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), [xs.length]);
        let past: Tensor[] = ex.pastNames.map(() => new ort.Tensor("float32", new Float32Array(0), ex.pastDims(0)));
        const run = async (chunk: number[], rows: number[]) => {
          const feeds: Record<string, Tensor> = { input_ids: i64(chunk).reshape([1, chunk.length]), logits_index: i64(rows) };
          ex.pastNames.forEach((n, i) => (feeds[n] = past[i]));
          const out = await s.run(feeds);
          past = ex.presentNames.map((n) => out[n]);
          return out.logits.data as Float32Array;
        };
        /** max |Δ| of consecutive rows of logits against reference rows from `row0`. */
        const worst = (got: Float32Array, row0: number) => {
          const V = want[0].length;
          let m = 0;
          for (let r = 0; r < got.length / V; r++)
            for (let j = 0; j < V; j++) m = Math.max(m, Math.abs(got[r * V + j] - want[row0 + r][j]));
          return m;
        };
        const all = worst(
          await run(
            ids,
            ids.map((_, t) => t),
          ),
          0,
        );
        past = ex.pastNames.map(() => new ort.Tensor("float32", new Float32Array(0), ex.pastDims(0)));
        let steps = worst(await run(ids.slice(0, PREFIX), [...Array(PREFIX).keys()]), 0);
        for (let t = PREFIX; t < ids.length; t++) steps = Math.max(steps, worst(await run([ids[t]], [0]), t));
        await s.release();
        const ok = all <= TOL && steps <= TOL;
        console.log(
          `${ok ? "ok  " : "FAIL"} ${what}: max|Δlogit| prefill ${all.toExponential(2)}, ` +
            `${PREFIX}-token prefill + ${ids.length - PREFIX} decode steps ${steps.toExponential(2)} (tolerance ${TOL}); ${ex.ops}`,
        );
        if (ok) passed++;
        else failed++;
      } catch (e) {
        console.log(`FAIL ${what}: ${(e as Error).message.split("\n")[0]}`);
        failed++;
      }
    }
  }
}
console.log(`decoder-onnx selftest: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
