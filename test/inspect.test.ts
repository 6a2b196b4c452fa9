// inspectPrompt, the library's look inside the model: what it reports must be what the model
// computes (forward's logits and attentions), read the way the logit lens defines it.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "../src/formats/index.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { inspectPrompt } from "../src/inspect.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { FIXTURE_DIR, reference, TOKENIZER_FIXTURE_DIR } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const tokenizer = Tokenizer.fromFiles({
  vocabJson: readFileSync(join(TOKENIZER_FIXTURE_DIR, "vocab.json"), "utf8"),
  mergesTxt: readFileSync(join(TOKENIZER_FIXTURE_DIR, "merges.txt"), "utf8"),
});

describe("inspectPrompt", () => {
  it("lens, attention patterns and norms agree with forward", async () => {
    const model = await DecoderModel.load(config, openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors")))), {
      threads: 1,
    });
    const ids: number[] = ref.input_ids;
    const T = ids.length;
    const { V, H, L } = model.dims;
    const r = await inspectPrompt(model, tokenizer, ids, { lensPositions: 3, attentions: true, top: 4 });
    const f = model.forward([ids], { outputAttentions: true, outputHiddenStates: true });
    expect(r.layers).toHaveLength(L + 1);

    // After the last layer the lens is the model's own prediction: the top-4 of forward's logits.
    const last = r.layers[L];
    for (let t = 0; t < T; t++) {
      const cell = last.lens[t];
      if (t < T - 3) {
        expect(cell).toBeNull();
        continue;
      }
      const row = Array.from(f.logits.subarray(t * V, (t + 1) * V).subarray(0, tokenizer.vocabSize));
      const want = row
        .map((v, id) => [v, id])
        .sort((a, b) => b[0] - a[0])
        .slice(0, 4)
        .map(([, id]) => id);
      expect(cell!.map((c) => c.id)).toEqual(want);
      expect(cell!.every((c, j) => j === 0 || c.prob <= cell![j - 1].prob)).toBe(true);
      expect(cell![0].token).toBe(tokenizer.decode([want[0]]));
    }
    expect(last.top).toEqual(last.lens[T - 1]);

    // Attention: forward's, causal, rows summing to 1.
    for (let l = 0; l < L; l++) {
      const a = r.layers[l + 1].attention!;
      expect(a).toEqual(f.attentions![l]);
      for (let h = 0; h < H; h++) {
        for (let q = 0; q < T; q++) {
          const rowSum = a.subarray((h * T + q) * T, (h * T + q + 1) * T).reduce((x, y) => x + y, 0);
          expect(Math.abs(rowSum - 1)).toBeLessThan(1e-5);
          for (let key = q + 1; key < T; key++) expect(a[(h * T + q) * T + key]).toBe(0);
        }
      }
    }
    // Norms: of forward's hidden states.
    const C = model.dims.C;
    const emb = f.hiddenStates!.embeddings;
    expect(r.layers[0].norms[0]).toBeCloseTo(Math.hypot(...emb.subarray(0, C)), 4);
    expect(r.layers[1].attention).toBeDefined();
    expect((await inspectPrompt(model, tokenizer, ids)).layers[1].attention).toBeUndefined();
  });
});
