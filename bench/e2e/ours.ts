// Ours as an end-to-end side: load the checkpoint, prefill CONTEXT tokens, take the step that is
// checked against the peers, then time steps just past CONTEXT (the peers see CONTEXT + 1 rows).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadModel, parseConfig, type MlaAttention } from '../../src/internal.js';
import { E2E_CONFIG } from './checkpoint.js';
import { latentCache, ropeInputs } from './onnx-step.js';
import { CONTEXT, e2ePrompt, encodeLogits, inputsFile, STEP_ID, WARM_MS, type E2eWorkerSpec, type Side } from './protocol.js';

/** Ours: load, prefill CONTEXT tokens, the checked step; each block then steps at CONTEXT + 3 … */
export async function oursSide(spec: E2eWorkerSpec): Promise<Side> {
  const base = { peer: spec.peer, threads: spec.threads, version: '' };
  const c = parseConfig(E2E_CONFIG);
  const t0 = performance.now();
  const model = await loadModel(spec.dir, { simd: spec.build, threads: spec.threads, weights: spec.weights ?? 'f32' });
  const loadMs = performance.now() - t0;
  if (model.threads !== spec.threads) {
    model.dispose();
    return { ready: { ...base, ok: false, note: `${spec.threads} threads asked, ${model.threads} available` } };
  }
  const session = model.createSession({ contextLength: CONTEXT + 128, cache: spec.cache ?? 'f32' });
  const t1 = performance.now();
  session.prefill(e2ePrompt(c));
  const prefillMs = performance.now() - t1;
  if (spec.writeInputs) {
    const a = c.attention as MlaAttention, row = a.kvLoraRank + a.ropeDim;
    const rope = ropeInputs(c, CONTEXT);
    const bin = new Float32Array(2 * a.ropeDim + c.layers * CONTEXT * row);
    bin.set(rope.cos, 0); bin.set(rope.sin, a.ropeDim);
    latentCache(model, session, CONTEXT).forEach((layer, l) => bin.set(layer, 2 * a.ropeDim + l * CONTEXT * row));
    const name = inputsFile(spec.weights ?? 'f32');
    writeFileSync(path.join(spec.dir, `${name}.bin`), new Uint8Array(bin.buffer));
    writeFileSync(path.join(spec.dir, `${name}.json`), JSON.stringify({ id: STEP_ID, dr: a.ropeDim, layers: c.layers, S: CONTEXT, row }));
  }
  const logits = session.step(STEP_ID);
  let id = 3;
  // The timed steps write their logits into one buffer, as a decode loop would (generate() does).
  const out = new Float32Array(c.vocabSize);
  return {
    ready: { ...base, ok: true, loadMs, prefillMs, logits: encodeLogits(logits) },
    warm: async () => {
      for (const until = performance.now() + WARM_MS; performance.now() < until;) {
        session.step(1, { out });
        if (session.position > CONTEXT + 64) session.truncate(CONTEXT + 1);
      }
      // Every block times the same steps: context CONTEXT + 3 … (the peers see CONTEXT + 1 rows).
      session.truncate(CONTEXT + 1);
      for (let i = 0; i < 2; i++) session.step(i, { out });
      id = 3;
    },
    run: () => session.step(id++, { out }),
    dispose: () => model.dispose(),
  };
}
