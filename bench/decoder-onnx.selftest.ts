// Self-test of bench/decoder-onnx.ts through onnxruntime-web, on the real transformers fixtures
// (test/fixtures/{opt,gpt2,llama}-tiny: config.json, model.safetensors, reference.json with the
// logits transformers computed for input_ids).
//   f32 graphs: every graph variant and lm_head variant must give transformers' logits within 1e-4
//     (max |Δ|), both for one prefill of all the ids and when the ids go in as a 5-token prefill
//     followed by one-token decode steps on the returned presents (which checks the past/present
//     plumbing, positions, the causal mask and rotary offsets).
//   q8 and q4 graphs (standard variant, as transformers.js' quantized files): the same two runs,
//     reported by relative RMS (‖a − b‖ / ‖b‖ over every logit) and top-1 agreement against the f32
//     graph, transformers' logits and our model loaded with the matching dtype (int8 / q4) from the
//     same file (our q4 is another 4-bit format — offset + min, see linear_dot.ts — so it differs
//     from ORT's q4 by both roundings). Checked:
//       q4  exactly what its weights say: within 1e-4 (max |Δ|, both runs) of an f32 graph whose
//           MatMuls hold the q4-rounded weights (MatMulNBits computes in f32 in this build);
//       q8  rel RMS vs the f32 graph ≤ 10 % (both runs): DynamicQuantizeLinear picks one scale per
//           run from every row of it, so its logits also depend on which tokens share a run (the
//           prefill and the steps differ; printed).
//   npx tsx bench/decoder-onnx.selftest.ts
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Tensor } from "onnxruntime-web";
import { openSafetensors } from "../src/formats/safetensors.js";
import { DecoderModel } from "../src/models/decoder.js";
import { modelDims, parseModelConfig } from "../src/models/families/index.js";
import { type DecoderOnnx, exportDecoderOnnx, type GraphWeights, graphVariants, type LmHeadVariant } from "./decoder-onnx.js";
import { createSession, initOrt, ort } from "./ort.js";

const TOL = 1e-4;
const PREFIX = 5;
/** rel RMS vs the f32 graph the q8 graph may show (observed 2.8–5.7 % on these fixtures). */
const Q8_RMS = 0.1;
/** Our dtype computing the same model as each quantized graph. */
const OURS: Record<Exclude<GraphWeights, "f32">, "int8" | "q4"> = { q8: "int8", q4: "q4" };

/** Logits of every position two ways: one prefill of all ids, and a PREFIX-token prefill + one-token steps. */
async function runGraph(ex: DecoderOnnx, ids: number[]): Promise<{ all: Float32Array; steps: Float32Array }> {
  const s = await createSession(ex.bytes);
  try {
    const i64 = (xs: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), [xs.length]);
    const empty = () => ex.pastNames.map(() => new ort.Tensor("float32", new Float32Array(0), ex.pastDims(0)));
    let past: Tensor[] = empty();
    const run = async (chunk: number[], rows: number[]) => {
      const feeds: Record<string, Tensor> = { input_ids: i64(chunk).reshape([1, chunk.length]), logits_index: i64(rows) };
      ex.pastNames.forEach((n, i) => (feeds[n] = past[i]));
      const out = await s.run(feeds);
      past = ex.presentNames.map((n) => out[n]);
      return out.logits.data as Float32Array;
    };
    const all = await run(
      ids,
      ids.map((_, t) => t),
    );
    past = empty();
    const parts = [await run(ids.slice(0, PREFIX), [...Array(PREFIX).keys()])];
    for (let t = PREFIX; t < ids.length; t++) parts.push(await run([ids[t]], [0]));
    const steps = new Float32Array(all.length);
    let at = 0;
    for (const p of parts) steps.set(p, (at += p.length) - p.length);
    return { all, steps };
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** ‖a − b‖ / ‖b‖ over every value. */
function relRms(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

/** Rows of V whose argmax agrees, "agree/rows". */
function top1(a: ArrayLike<number>, b: ArrayLike<number>, V: number): string {
  let same = 0;
  const rows = a.length / V;
  for (let r = 0; r < rows; r++) {
    let ia = 0;
    let ib = 0;
    for (let j = 1; j < V; j++) {
      if (a[r * V + j] > a[r * V + ia]) ia = j;
      if (b[r * V + j] > b[r * V + ib]) ib = j;
    }
    if (ia === ib) same++;
  }
  return `${same}/${rows}`;
}

await initOrt();
let failed = 0;
let passed = 0;
const verdict = (ok: boolean) => {
  if (ok) passed++;
  else failed++;
  return ok ? "ok  " : "FAIL";
};
for (const name of ["opt-tiny", "gpt2-tiny", "llama-tiny"]) {
  const dir = fileURLToPath(new URL(`../test/fixtures/${name}/`, import.meta.url));
  const config = parseModelConfig(readFileSync(dir + "config.json", "utf8"), `${name}/config.json`);
  const src = openSafetensors(new Uint8Array(readFileSync(dir + "model.safetensors")), `${name}/model.safetensors`);
  const ref = JSON.parse(readFileSync(dir + "reference.json", "utf8")) as { input_ids: number[]; logits: number[][] };
  const ids = ref.input_ids;
  const V = ref.logits[0].length;
  const want = Float32Array.from(ref.logits.flat());
  let f32Standard: Float32Array | null = null;
  for (const variant of graphVariants(modelDims(config))) {
    for (const lmHead of ["gemm", "matmul"] as LmHeadVariant[]) {
      const what = `${name} ${variant}/${lmHead}`;
      try {
        const ex = exportDecoderOnnx(config, src, { variant, lmHead, label: name });
        const { all, steps } = await runGraph(ex, ids);
        if (variant === "standard") f32Standard ??= all;
        const [a, s] = [maxAbsDiff(all, want), maxAbsDiff(steps, want)];
        console.log(
          `${verdict(a <= TOL && s <= TOL)} ${what}: max|Δlogit| prefill ${a.toExponential(2)}, ` +
            `${PREFIX}-token prefill + ${ids.length - PREFIX} decode steps ${s.toExponential(2)} (tolerance ${TOL}); ${ex.ops}`,
        );
      } catch (e) {
        console.log(`FAIL ${what}: ${(e as Error).message.split("\n")[0]}`);
        failed++;
      }
    }
  }

  for (const weights of ["q8", "q4"] as const) {
    const what = `${name} standard ${weights}`;
    try {
      const ex = exportDecoderOnnx(config, src, { variant: "standard", weights, label: name });
      const { all, steps } = await runGraph(ex, ids);
      const model = await DecoderModel.load(config, src, { dtype: OURS[weights], threads: 1 });
      const ours = model.forward([ids], { logits: "all" }).logits;
      const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
      let check: string;
      let ok: boolean;
      if (weights === "q4") {
        const deq = await runGraph(exportDecoderOnnx(config, src, { variant: "standard", weights, q4Dequantized: true, label: name }), ids);
        const d = Math.max(maxAbsDiff(all, deq.all), maxAbsDiff(steps, deq.steps));
        ok = d <= TOL;
        check = `max|Δ| vs f32 MatMuls on the q4-rounded weights ${d.toExponential(2)} (tolerance ${TOL})`;
      } else {
        const r = Math.max(relRms(all, f32Standard!), relRms(steps, f32Standard!));
        ok = r <= Q8_RMS;
        check = `rel RMS vs the f32 graph ${pct(r)} (bound ${100 * Q8_RMS} %; prefill vs prefill + steps ${pct(relRms(steps, all))})`;
      }
      console.log(
        `${verdict(ok)} ${what}: ${check}; rel RMS, top-1: vs the f32 graph ${pct(relRms(all, f32Standard!))} ${top1(all, f32Standard!, V)}, ` +
          `vs transformers ${pct(relRms(all, want))} ${top1(all, want, V)}, vs ours ${OURS[weights]} ${pct(relRms(all, ours))} ` +
          `${top1(all, ours, V)}; ours ${OURS[weights]} vs transformers ${pct(relRms(ours, want))} ${top1(ours, want, V)}; ${ex.ops}`,
      );
    } catch (e) {
      console.log(`FAIL ${what}: ${(e as Error).message.split("\n")[0]}`);
      failed++;
    }
  }
}
console.log(`decoder-onnx selftest: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
