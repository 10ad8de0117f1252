// The OpenAI-compatible server under Deno or Bun, through the package's own name: its fetch handler
// handed to Deno.serve / Bun.serve on 127.0.0.1 at a free port. Prints one line of JSON with the
// port, then serves until killed, or for 60 s at most.
import { createServer, loadModel } from 'mla-wasm';

const model = await loadModel(undefined, { threads: 1 });
const server = createServer(model, { modelId: 'fortune-mla', apiKey: 'runtime-key' });
let port;
let stop;
if (globalThis.Deno) {
  const http = Deno.serve({ port: 0, hostname: '127.0.0.1', onListen: () => {} }, server.fetch);
  port = http.addr.port;
  stop = () => http.shutdown();
} else if (globalThis.Bun) {
  const http = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: server.fetch });
  port = http.port;
  stop = () => http.stop(true);
} else {
  throw new Error('serve.mjs is for Deno and Bun; Node runs the server through the CLI');
}
const runtime = globalThis.Deno ? `deno ${Deno.version.deno}` : `bun ${Bun.version}`;
console.log(JSON.stringify({ runtime, port }));
setTimeout(async () => {
  await stop();
  await server.close();
  model.dispose();
}, 60_000);
