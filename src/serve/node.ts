// Listening on a Node port with a Server's fetch handler (the CLI's `serve`). Node only, so not
// part of the library bundle; Deno and Bun hand server.fetch to Deno.serve / Bun.serve instead.
import { serve } from '@hono/node-server';
import type { Server } from './app.js';

export interface Listening {
  /** The port listened on (the one the OS chose, for port 0). */
  port: number;
  host: string;
  /** Stop listening and stop every generation. */
  close(): Promise<void>;
}

export function listen(server: Server, options: { port: number; host: string }): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const http = serve({ fetch: server.fetch, port: options.port, hostname: options.host }, (info) => {
      http.off('error', reject);
      resolve({
        port: info.port,
        host: options.host,
        close: async () => {
          const closed = new Promise<void>((r) => http.close(() => r()));
          await server.close();
          (http as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          await closed;
        },
      });
    });
    http.once('error', reject);
  });
}
