// The test page's main thread. It runs the checks here with one thread — a page's main thread may
// not Atomics.wait, so threads: 2 must fail there with wasm-lm's clear error — and then the same
// checks in a module Web Worker on this page, where threads: 2 must work when the page is
// cross-origin isolated (COOP + COEP) and fail clearly when it is not (no SharedArrayBuffer).
// "wasm-lm" resolves through the package's "browser" export; the page lets wasm-lm locate the
// .wasm itself (new URL("../build/…", import.meta.url) in the bundle), the worker passes { bytes }.
// __loader runs the library's fetch loader with the Cache API (loader.mjs).
import * as lib from "wasm-lm";
import * as kernels from "wasm-lm/kernels";
import { runChecks } from "../runtimes/checks.mjs";
import { fetchFixture } from "./shared.mjs";
import { loaderVisit, streamVisit } from "./loader.mjs";

const pre = document.createElement("pre");
document.body.append(pre);
const say = (line) => {
  console.log(line);
  pre.textContent += line + "\n";
};

function inWorker(threads, tag) {
  return new Promise((resolve) => {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (e) => {
      if (e.data.log) say(e.data.log);
      if (e.data.result) {
        worker.terminate();
        resolve(e.data.result);
      }
    };
    worker.onerror = (e) => resolve({ ok: false, failures: [`worker error: ${e.message}`], figures: {} });
    worker.postMessage({ threads, tag });
  });
}

window.__run = async () => {
  const isolated = self.crossOriginIsolated === true;
  const tag = isolated ? "chromium isolated" : "chromium not-isolated";
  if (!isolated) {
    say(
      `[${tag}] notice: this page is not cross-origin isolated (no COOP/COEP headers): SharedArrayBuffer is ` +
        `${typeof SharedArrayBuffer}, so wasm-lm runs on one thread here and threads: 2 must fail with a clear error`,
    );
  }
  const fixture = await fetchFixture(location.href);
  const page = await runChecks({
    runtime: `${tag} page`,
    lib,
    kernels,
    fixture,
    threads: "error",
    log: (l) => say(`[${tag} page] ${l}`),
    wasmSource: async () => ({}),
  });
  const worker = await inWorker(isolated ? "expect" : "error", `${tag} worker`);
  return { isolated, page, worker };
};

/** loadModelFromUrl with the Cache API (loader.mjs); run.mjs calls it on a first visit and after a reload. */
window.__loader = (first) => loaderVisit(lib, first);
/** loadModelFromUrl with stream: true (loader.mjs) for one fixture; run.mjs checks the server saw Range requests. */
window.__stream = (name) => streamVisit(lib, name);
