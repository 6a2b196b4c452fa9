// Serving a fetch handler (./handler.ts) on node:http, through @hono/node-server's request
// listener: a maintained Node ⇄ fetch adapter that streams bodies both ways, aborts
// request.signal when the client disconnects, and drains (bounded) unread request bodies.
// Deno, Bun and workerd need no adapter: Deno.serve(handler), Bun.serve({ fetch: handler }),
// export default { fetch: handler }.
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { ApiError, errorResponse } from "./http.js";

export interface NodeServeOptions {
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
}

export interface NodeServer {
  server: Server;
  /** http://host:port (no trailing slash). */
  url: string;
  port: number;
  /**
   * Stop accepting: new connections are refused and requests arriving on open connections get
   * 503; resolves when the requests in flight have been answered and every connection is closed.
   */
  close(): Promise<void>;
}

export async function serveNode(handler: (request: Request) => Promise<Response>, opts: NodeServeOptions = {}): Promise<NodeServer> {
  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? 8080;
  if (!(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new Error(`wasm-lm serve: port ${port} is not a port number (0..65535)`);
  let closing = false;
  const shuttingDown = () =>
    errorResponse(new ApiError(503, "The server is shutting down.", "server_error", null, "shutting_down", { connection: "close" }));
  const listener = getRequestListener((request) => (closing ? shuttingDown() : handler(request)), {
    // Keep Node's own Request/Response globals: the adapter would otherwise replace them process-wide.
    overrideGlobalObjects: false,
  });
  const server = createServer(listener);
  // Connections and their requests in flight. When closing, a connection without one is ended:
  // Node's closeIdleConnections() leaves connections that never sent a request (clients open
  // spares), and server.close() would wait for them.
  const inFlight = new Map<Socket, number>();
  server.on("connection", (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.on("close", () => inFlight.delete(socket));
  });
  server.on("request", (req, res) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    res.on("close", () => {
      if (inFlight.has(socket)) inFlight.set(socket, inFlight.get(socket)! - 1);
      if (closing && inFlight.get(socket) === 0) socket.destroySoon();
    });
  });
  const endIdle = () => {
    for (const [socket, n] of inFlight) if (n === 0) socket.destroySoon();
  };
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(new Error(`wasm-lm serve: cannot listen on ${host}:${port}: ${e.code === "EADDRINUSE" ? "the port is in use" : e.message}`));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  let closed: Promise<void> | null = null;
  return {
    server,
    url: `http://${shownHost}:${bound}`,
    port: bound,
    close() {
      closing = true;
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections idle now; the others once their response is sent (above).
        endIdle();
      });
      return closed;
    },
  };
}
