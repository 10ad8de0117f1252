// Finding, compiling and instantiating the kernel module. Nothing here touches `fs` or
// `process` at the top level: file URLs are read through a dynamic import of node:fs,
// which exists in Node, Deno and Bun; anything else is fetched.
import { instantiate } from '../../build/kernels-simd.js';
import { MlaError, showValue } from '../errors.js';

/** The kernel exports, typed by AssemblyScript's generated bindings. */
export type Kernels = Awaited<ReturnType<typeof instantiate>>;

/** Which build of the kernels: plain SIMD (mul + add) or relaxed SIMD (fused multiply-add). */
export type SimdBuild = 'simd' | 'relaxed';

export interface KernelOptions {
  /** 'auto' (default) picks relaxed when this runtime can compile it, else plain SIMD. */
  simd?: 'auto' | SimdBuild;
  /** A precompiled kernel module (edge platforms that forbid compiling at run time). */
  wasmModule?: WebAssembly.Module;
  /** The kernel module's bytes, when there is no file or URL to read them from. */
  wasmBytes?: BufferSource;
  /**
   * Threads to run the kernels on, the calling one included (loadKernels: default 1; loadModel:
   * default the cores, at most 4, or 1 for a model under 48 MiB of weights: threads.ts
   * SMALL_MODEL_BYTES). Above 1, where SharedArrayBuffer and workers exist, the
   * threaded build (shared memory) is loaded and a worker pool started; elsewhere, one thread.
   */
  threads?: number;
}

// (module (func (result v128) (v128.const 0) … f32x4.relaxed_madd)), and the same with
// f32x4.add for plain SIMD: the smallest modules that need each feature.
function probeModule(operands: number, op: number[]): Uint8Array<ArrayBuffer> {
  const v128Zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
  const body = [0x00, ...new Array(operands).fill(v128Zero).flat(), ...op, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
    0x03, 0x02, 0x01, 0x00,                   // one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body,
  ]);
}
const RELAXED_PROBE = probeModule(3, [0xfd, 0x85, 0x02]); // f32x4.relaxed_madd (0xfd 0x105)
const SIMD_PROBE = probeModule(2, [0xfd, 0xe4, 0x01]);    // f32x4.add (0xfd 0xe4)

/** What this runtime can compile, found by validating tiny modules (never by its name). */
export function detectSimd(): { simd: boolean; relaxed: boolean } {
  return { simd: WebAssembly.validate(SIMD_PROBE), relaxed: WebAssembly.validate(RELAXED_PROBE) };
}

export function chooseBuild(wanted: 'auto' | SimdBuild = 'auto'): SimdBuild {
  if (!['auto', 'simd', 'relaxed'].includes(wanted)) {
    throw new MlaError('BAD_INPUT', `simd must be 'auto', 'simd' or 'relaxed', got ${showValue(wanted)}`);
  }
  const can = detectSimd();
  if (!can.simd) throw new MlaError('NO_SIMD', 'this runtime cannot compile WebAssembly SIMD, which the kernels need');
  if (wanted === 'relaxed' && !can.relaxed) {
    throw new MlaError('NO_SIMD',
      'relaxed SIMD was asked for, but this runtime cannot compile it (Node 20 needs --experimental-wasm-relaxed-simd)');
  }
  if (wanted === 'auto') return can.relaxed ? 'relaxed' : 'simd';
  return wanted;
}

const compiled = new Map<string, Promise<WebAssembly.Module>>();

async function readUrl(url: URL): Promise<ArrayBuffer | Uint8Array> {
  if (url.protocol === 'file:') {
    const fs = await import('node:fs/promises');
    return fs.readFile(url);
  }
  const res = await fetch(url);
  if (!res.ok) throw new MlaError('BAD_SOURCE', `could not fetch ${url}: HTTP ${res.status}`);
  return res.arrayBuffer();
}

/** build/kernels-<build>.wasm, or kernels-<build>-mt.wasm: the same code over a shared memory. */
export function compileBuild(build: SimdBuild, shared: boolean): Promise<WebAssembly.Module> {
  const name = `kernels-${build}${shared ? '-mt' : ''}`;
  let p = compiled.get(name);
  if (!p) {
    // Literal URLs (no template): bundlers that ship the files a module finds with
    // new URL('…', import.meta.url) (webpack 5, Vite, Parcel) only follow literals. They are
    // relative to this source file; scripts/build.mjs makes them relative to dist/index.js.
    const url = {
      'kernels-simd': new URL('../../build/kernels-simd.wasm', import.meta.url),
      'kernels-relaxed': new URL('../../build/kernels-relaxed.wasm', import.meta.url),
      'kernels-simd-mt': new URL('../../build/kernels-simd-mt.wasm', import.meta.url),
      'kernels-relaxed-mt': new URL('../../build/kernels-relaxed-mt.wasm', import.meta.url),
    }[name]!;
    p = readUrl(url).then((bytes) => WebAssembly.compile(bytes as BufferSource));
    p.catch(() => compiled.delete(name));
    compiled.set(name, p);
  }
  return p;
}

/** The kernel exports over `memory`, typed by AssemblyScript's generated bindings. */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<Kernels> {
  return instantiate(module, { env: { memory } } as any);
}
