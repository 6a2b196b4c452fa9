// `npm run demo`: bundle the demo page with esbuild and serve it on 127.0.0.1 with the headers
// that make a page cross-origin isolated (COOP same-origin + COEP require-corp), without which
// browsers give no SharedArrayBuffer and so no threads.
//
//   /                        demo/index.html
//   /app/…                   the bundle (demo/out/: main.js, worker.js — the library comes from src/)
//   /build/*.wasm            the kernels: src/wasm.ts finds them at new URL("../build/…", import.meta.url)
//   /tokenizers/opt/…        OPT's tokenizer files, the default tokenizer
//   /fixtures/<name>/…       the tiny test models (opt-tiny, llama-tiny, gpt2-tiny), in the Hugging Face layout
//
// Usage: npm run demo [-- --port 5178]   (PORT=… works too; port 0 picks a free one)
import { spawnSync } from "node:child_process";
import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const OUT = join(ROOT, "demo", "out");

const ROUTES: [prefix: string, dir: string, ext?: string][] = [
  ["/app/", OUT],
  ["/build/", join(ROOT, "build"), ".wasm"],
  ["/tokenizers/opt/", join(ROOT, "tokenizers", "opt")],
  ...["opt-tiny", "llama-tiny", "gpt2-tiny"].map((m): [string, string] => [`/fixtures/${m}/`, join(ROOT, "test", "fixtures", m)]),
];

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".wasm": "application/wasm",
};

const WASM_BUILDS = ["simd", "relaxed", "simd-mt", "relaxed-mt"].map((b) => join(ROOT, "build", `wasm-lm.${b}.wasm`));

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "__tests__") continue;
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Build the .wasm files (npm run asbuild) when one is missing or older than assembly/. */
export function ensureWasm(): void {
  const sources = Math.max(newestMtime(join(ROOT, "assembly")), statSync(join(ROOT, "asconfig.json")).mtimeMs);
  if (WASM_BUILDS.every((f) => existsSync(f) && statSync(f).mtimeMs >= sources)) return;
  console.log("demo: building the wasm kernels (npm run asbuild)…");
  const r = spawnSync("npm", ["run", "asbuild"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error("npm run asbuild failed");
}

/** Bundle demo/main.ts and demo/worker.ts into demo/out/. */
export async function bundleDemo(): Promise<void> {
  await build({
    entryPoints: [join(ROOT, "demo", "main.ts"), join(ROOT, "demo", "worker.ts")],
    outdir: OUT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    // The library loads node:fs / node:os / node:worker_threads only when it runs under Node.
    external: ["node:*"],
    logLevel: "warning",
  });
}

function resolvePath(urlPath: string): string | null {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path === "/" || path === "/index.html") return join(ROOT, "demo", "index.html");
  for (const [prefix, dir, ext] of ROUTES) {
    if (!path.startsWith(prefix)) continue;
    const file = normalize(join(dir, path.slice(prefix.length)));
    if (!file.startsWith(dir + sep) || (ext && !file.endsWith(ext))) return null;
    return file;
  }
  return null;
}

/** Serve the demo (already bundled) on host:port; resolves once listening. */
export async function startDemoServer(
  o: { port?: number; host?: string } = {},
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const host = o.host ?? "127.0.0.1";
  const server = createServer((req, res) => {
    // Every response: the page is cross-origin isolated, and its resources may be embedded by it.
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
    res.setHeader("Cache-Control", "no-cache");
    const file = req.method === "GET" || req.method === "HEAD" ? resolvePath(new URL(req.url ?? "/", "http://x").pathname) : null;
    const stat = file && existsSync(file) ? statSync(file) : null;
    if (!file || !stat?.isFile()) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Length": stat.size });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(o.port ?? 5178, host, () => ok());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : o.port;
  return {
    url: `http://${host}:${port}/`,
    server,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf("--port");
  const port = Number(i > 0 ? process.argv[i + 1] : (process.env.PORT ?? 5178));
  ensureWasm();
  await bundleDemo();
  const { url } = await startDemoServer({ port });
  console.log(`demo: ${url}  (Ctrl-C stops it)`);
}
