// The module Web Worker: loads a model with loadModelFromUrl (download progress, the Cache API)
// and streams the generated tokens to the page. Bundled by build.mjs into out/worker.js.
import { loadModelFromUrl, streamGenerate } from "wasm-lm";

let loaded; // { url, model, tokenizer }: kept for the next request with the same model

self.onmessage = async ({ data: { model: url, prompt, maxNewTokens } }) => {
  try {
    if (loaded?.url !== url) {
      loaded?.model.dispose();
      loaded = undefined;
      const t0 = performance.now();
      const { model, tokenizer } = await loadModelFromUrl(url, {
        // Threads need SharedArrayBuffer: a cross-origin isolated page (COOP + COEP headers).
        threads: self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1,
        // The .wasm files sit next to this bundle (build.mjs copies them); a URL relative to it.
        locate: (build, shared) => `wasm-lm.${build}${shared ? "-mt" : ""}.wasm`,
        onDownload: (p) => self.postMessage({ type: "progress", ...p }),
      });
      if (!tokenizer) throw new Error(`${url} has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)`);
      loaded = { url, model, tokenizer };
      self.postMessage({ type: "loaded", ms: performance.now() - t0, threads: model.threads });
    }
    const tokens = streamGenerate(loaded.model, loaded.tokenizer, prompt, { maxNewTokens });
    let step;
    while (!(step = await tokens.next()).done) self.postMessage({ type: "token", text: step.value.text });
    const r = step.value;
    self.postMessage({
      type: "done",
      tokens: r.new_tokens.length,
      text: r.text,
      finishReason: r.finish_reason,
      tokensPerSecond: r.timings.tokens_per_second,
    });
  } catch (e) {
    self.postMessage({ type: "error", message: e instanceof Error ? e.message : String(e) });
  }
};
