// The conformance smoke test, run as it is by Node, Deno and Bun (test/runtimes.test.ts):
// load the default model through the package's own name, greedy-decode a fixed prompt with
// prefill + step, and print one line of JSON: the runtime, the build, the generated ids and text,
// the threads it ran on, and the first logits row (the prefill's).
// Arguments: [simd: auto|simd|relaxed] [tokens] [threads].
import { detectSimd, loadModel } from 'mla-wasm';

const args = globalThis.Deno ? globalThis.Deno.args : globalThis.process.argv.slice(2);
const simd = args[0] ?? 'auto';
const tokens = Number(args[1] ?? 32);
const threads = args[2] === undefined ? undefined : Number(args[2]);
export const PROMPT = 'Q: What is the meaning of life?\nA:';

const runtime = globalThis.Deno ? `deno ${globalThis.Deno.version.deno}`
  : globalThis.Bun ? `bun ${globalThis.Bun.version}` : `node ${globalThis.process.version}`;

const model = await loadModel(undefined, { simd, threads });
const { bosTokenId, eosTokenIds } = model.config;
const prompt = [bosTokenId, ...new TextEncoder().encode(PROMPT)];
const session = model.createSession();
const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

let logits = session.prefill(prompt);
const first = Array.from(logits);
const ids = [];
while (ids.length < tokens) {
  const id = argmax(logits);
  if (eosTokenIds.includes(id)) break;
  ids.push(id);
  logits = session.step(id);
}
const text = new TextDecoder().decode(new Uint8Array(ids.filter((id) => id < 256)));
const threadsAvailable = typeof SharedArrayBuffer === 'function' && (typeof Worker === 'function' || !!globalThis.process?.versions?.node);
console.log(JSON.stringify({ runtime, detected: detectSimd(), simd: model.simd, threads: model.threads, threadsAvailable, ids, text, logits: first }));
session.dispose();
model.dispose();
