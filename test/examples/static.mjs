// A static file server for the examples' checks, on 127.0.0.1: URL prefixes mapped to directories
// (several directories may share a prefix: the first that has the file answers), with HTTP Range
// (as the hub's CDN and R2 answer them), optional COOP/COEP headers, and a count of requests.
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".txt": "text/plain",
  ".css": "text/css",
};

/**
 * @param {Array<[string, string]>} routes  [URL prefix ending in "/", directory] pairs
 * @param {{ isolated?: boolean }} [opts]    isolated: COOP same-origin + COEP require-corp (SharedArrayBuffer on the page)
 * @returns {Promise<{ url: string, requests: string[], ranges: number, close(): Promise<void> }>}
 */
export async function serveStatic(routes, opts = {}) {
  const state = { requests: [], ranges: 0 };
  const server = createServer((req, res) => {
    state.requests.push(req.url);
    const headers = { "cache-control": "no-store", "accept-ranges": "bytes" };
    if (opts.isolated) {
      Object.assign(headers, {
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
        "cross-origin-resource-policy": "same-origin",
      });
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      path = "";
    }
    if (path.endsWith("/")) path += "index.html";
    for (const [prefix, dir] of routes) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(normalize(dir + "/")) || !existsSync(file) || !statSync(file).isFile()) continue;
      const size = statSync(file).size;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      if (!m) {
        res.writeHead(200, { ...headers, "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": size });
        if (req.method === "HEAD") res.end();
        else createReadStream(file).pipe(res);
        return;
      }
      state.ranges++;
      const start = Number(m[1]);
      const end = Math.min(m[2] === "" ? size - 1 : Number(m[2]), size - 1);
      if (start > end) {
        res.writeHead(416, { ...headers, "content-range": `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        "content-type": "application/octet-stream",
        "content-length": end - start + 1,
        "content-range": `bytes ${start}-${end}/${size}`,
      });
      createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(404, headers).end("not found");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(state, {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}
