// The page: sends a request to the worker and shows what comes back. No wasm-lm import here —
// all of it is in the worker. ?model=…&prompt=…&tokens=… fill the form and start at once.
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL("./out/worker.js", import.meta.url), { type: "module" });
const status = (state, text) => {
  $("status").dataset.state = state;
  $("status").textContent = text;
};

worker.onmessage = ({ data: m }) => {
  if (m.type === "progress")
    status(
      "loading",
      `${m.file}: ${(m.done / 2 ** 20).toFixed(1)}${m.total ? ` of ${(m.total / 2 ** 20).toFixed(1)}` : ""} MiB${m.cached ? " (cached)" : ""}`,
    );
  else if (m.type === "loaded")
    status("generating", `loaded in ${m.ms.toFixed(0)} ms on ${m.threads} thread${m.threads === 1 ? "" : "s"}: generating…`);
  else if (m.type === "token") $("output").textContent += m.text;
  else if (m.type === "done") {
    $("output").dataset.tokens = String(m.tokens);
    status("done", `${m.tokens} tokens (${m.finishReason}), ${m.tokensPerSecond.toFixed(1)} tokens/s`);
    $("go").disabled = false;
  } else if (m.type === "error") {
    status("error", `error: ${m.message}`);
    $("go").disabled = false;
  }
};

$("form").onsubmit = (e) => {
  e.preventDefault();
  $("go").disabled = true;
  $("output").textContent = $("prompt").value;
  status("loading", "loading…");
  worker.postMessage({ model: $("model").value, prompt: $("prompt").value, maxNewTokens: Number($("tokens").value) });
};

const q = new URLSearchParams(location.search);
for (const k of ["model", "prompt", "tokens"]) if (q.has(k)) $(k).value = q.get(k);
if (q.has("model")) $("form").requestSubmit();
