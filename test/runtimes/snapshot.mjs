// Restores a session snapshot taken in Node (snapshot.bin beside this file) under whichever runtime
// runs this, through the package's own name, and prints one line of JSON: the runtime, the restored
// position, and the logits of the next step for the given token, as numbers.
// Arguments: <simd: simd|relaxed> <next token id>.
import { loadModel } from 'mla-wasm';

const args = globalThis.Deno ? globalThis.Deno.args : globalThis.process.argv.slice(2);
const [simd, next] = [args[0], Number(args[1])];
const read = globalThis.Deno ? (f) => Deno.readFile(f)
  : async (f) => new Uint8Array(await (await import('node:fs/promises')).readFile(f));
const model = await loadModel(undefined, { simd, threads: 1 });
const session = model.restoreSession(await read('snapshot.bin'));
const logits = session.step(next);
const runtime = globalThis.Deno ? 'deno' : globalThis.Bun ? 'bun' : 'node';
console.log(JSON.stringify({ runtime, position: session.position - 1, logits: Array.from(logits) }));
