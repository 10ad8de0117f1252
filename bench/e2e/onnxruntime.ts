// onnxruntime-web (wasm) or onnxruntime-node (native) as an end-to-end side: an ONNX graph of
// the step (onnx-step.ts) on the cache and RoPE inputs ours wrote with the graph's weights format.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { GRAPH_WEIGHTS, stepGraphFile } from './onnx-step.js';
import { encodeLogits, inputsFile, WARM_MS, type E2eWorkerSpec, type Side } from './protocol.js';

/** onnxruntime-web or -node running the spec's graph on its weights' inputs. */
export async function onnxruntimeSide(spec: E2eWorkerSpec): Promise<Side> {
  const base = { peer: spec.peer, threads: spec.threads };
  const req = createRequire(import.meta.url);
  let version = '?';
  try {
    let dir = path.dirname(req.resolve(spec.peer));
    while (!existsSync(path.join(dir, 'package.json')) || JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== spec.peer) dir = path.dirname(dir);
    version = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch { /* unknown */ }
  try {
    const name = spec.peer;
    const ort = await import(name);
    const web = spec.peer === 'onnxruntime-web';
    if (web) { ort.env.wasm.numThreads = spec.threads; ort.env.logLevel = 'error'; }
    const options: Record<string, unknown> = { executionProviders: [web ? 'wasm' : 'cpu'], graphOptimizationLevel: 'all' };
    if (!web) Object.assign(options, { intraOpNumThreads: spec.threads, interOpNumThreads: 1, executionMode: 'sequential' });
    const t0 = performance.now();
    const graph = spec.graph ?? 'f32';
    const session = await ort.InferenceSession.create(readFileSync(path.join(spec.dir, stepGraphFile(graph))), options);
    const loadMs = performance.now() - t0;
    const inputsName = inputsFile(GRAPH_WEIGHTS[graph]);
    const inputs = JSON.parse(readFileSync(path.join(spec.dir, `${inputsName}.json`), 'utf8'));
    const bin = readFileSync(path.join(spec.dir, `${inputsName}.bin`));
    const f32 = (off: number, n: number) => new Float32Array(bin.buffer.slice(bin.byteOffset + off * 4, bin.byteOffset + (off + n) * 4));
    const feeds: Record<string, unknown> = {
      ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(inputs.id)), [1]),
      cos: new ort.Tensor('float32', f32(0, inputs.dr), [1, inputs.dr]),
      sin: new ort.Tensor('float32', f32(inputs.dr, inputs.dr), [1, inputs.dr]),
    };
    for (let l = 0; l < inputs.layers; l++) {
      feeds[`cache_${l}`] = new ort.Tensor('float32', f32(2 * inputs.dr + l * inputs.S * inputs.row, inputs.S * inputs.row), [inputs.S, inputs.row]);
    }
    const out = await session.run(feeds);
    const logits = out.logits.data as Float32Array;
    return {
      ready: { ...base, version, ok: true, loadMs, logits: encodeLogits(logits) },
      warm: async () => { for (const until = performance.now() + WARM_MS; performance.now() < until;) await session.run(feeds); },
      run: () => session.run(feeds),
      dispose: async () => { await session.release?.(); },
    };
  } catch (e) {
    return { ready: { ...base, version, ok: false, note: String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300) } };
  }
}
