// Generate text with streaming, in Node.
//
//   npm install wasm-lm
//   node generate.mjs                                         # synthetic:opt-125m: OPT-125M's shape, random weights
//   node generate.mjs facebook/opt-125m "Hello, my name is"   # real weights (downloaded once into the Hugging Face cache)
//   node generate.mjs ./SmolLM2-135M "Once upon a time" 64     # a local model directory
//
// Arguments: [model] [prompt] [max new tokens]. Greedy decoding (the same text as
// `npx wasm-lm generate --model … --prompt … --max-new-tokens …`); pass sampling options such as
// { temperature: 0.8, topP: 0.95, seed: 1 } to streamGenerate for varied text.
import { streamGenerate } from "wasm-lm";
import { loadModel } from "wasm-lm/node";

const [spec = "synthetic:opt-125m", prompt = "The meaning of life is", maxNewTokens = "24"] = process.argv.slice(2);

if (spec.startsWith("synthetic:")) {
  console.error(`note: ${spec} has random weights: its text is noise. Pass a real model for real text, e.g. facebook/opt-125m.`);
}

const t0 = performance.now();
const { model, tokenizer } = await loadModel(spec);
const loadMs = performance.now() - t0;
if (!tokenizer) throw new Error(`${spec} has no tokenizer files: this example needs text in and out`);
try {
  process.stdout.write(prompt);
  // Each event is one token; its text is "" while a UTF-8 character is still incomplete.
  const tokens = streamGenerate(model, tokenizer, prompt, { maxNewTokens: Number(maxNewTokens) });
  let step;
  while (!(step = await tokens.next()).done) process.stdout.write(step.value.text);
  const { finish_reason, timings } = step.value; // the generator's return value: the whole result
  process.stdout.write("\n");
  console.error(
    `${finish_reason}: ${timings.tokens_per_second.toFixed(1)} tokens/s, ` +
      `load ${loadMs.toFixed(0)} ms, prefill ${timings.prefill_ms.toFixed(0)} ms`,
  );
} finally {
  model.dispose(); // stops the worker threads
}
