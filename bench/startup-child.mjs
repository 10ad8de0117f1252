// One cold start, in a fresh process of Node, Deno or Bun (spawned by bench/startup.ts): import the
// package, read and compile the kernel build this runtime picks, instantiate it, load the default
// model (from its folder, with the compiled module handed in so that it is not compiled twice),
// and run the first token. Prints one line of JSON with the time of each step in ms.
const t0 = performance.now();
const { detectSimd, loadModel } = await import('mla-wasm');
const tImport = performance.now();

const build = detectSimd().relaxed ? 'relaxed' : 'simd';
const { readFile } = await import('node:fs/promises');
const bytes = await readFile(new URL(`../build/kernels-${build}.wasm`, import.meta.url));
const tRead = performance.now();
const module = await WebAssembly.compile(bytes);
const tCompile = performance.now();
const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536 });
const instance = await WebAssembly.instantiate(module, { env: { memory } });
instance.exports._initialize();
const tInstantiate = performance.now();
const model = await loadModel(undefined, { wasmModule: module });
const tLoad = performance.now();
const session = model.createSession({ contextLength: 16 });
session.prefill([model.config.bosTokenId ?? 0]);
const tFirst = performance.now();

const runtime = globalThis.Deno ? 'deno' : globalThis.Bun ? 'bun' : 'node';
const version = globalThis.Deno ? globalThis.Deno.version.deno : globalThis.Bun ? globalThis.Bun.version : globalThis.process.versions.node;
console.log(JSON.stringify({
  runtime, version, build: model.simd, wasmBytes: bytes.byteLength,
  importMs: tImport - t0, readMs: tRead - tImport, compileMs: tCompile - tRead,
  instantiateMs: tInstantiate - tCompile, loadMs: tLoad - tInstantiate, firstTokenMs: tFirst - tLoad,
  totalMs: tFirst - t0,
}));
