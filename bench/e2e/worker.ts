// The child process of one end-to-end side (bench/run.ts --e2e-worker <spec>): load the side,
// say it is ready, then time blocks of runs on request, with a read probe before every second run.
import { createInterface } from 'node:readline';
import { inProcessReader, type InProcessReader } from '../probes.js';
import { onnxruntimeSide } from './onnxruntime.js';
import { oursSide } from './ours.js';
import type { E2eBlock, E2eWorkerSpec } from './protocol.js';

/** Timed runs per in-process read probe. */
const PROBE_EVERY = 2;

/**
 * The in-process read probe, after a pause in which the threads of what was timed go idle
 * (onnxruntime's pool spins after a run; a probe beside a spinning thread reads less).
 */
async function probeAfterPause(reader: InProcessReader): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 30));
  return reader.read();
}

export async function e2eWorker(spec: E2eWorkerSpec): Promise<void> {
  const side = spec.peer === 'mla-wasm' ? await oursSide(spec) : await onnxruntimeSide(spec);
  console.log(JSON.stringify(side.ready));
  if (!side.ready.ok) return;
  const reader = await inProcessReader(spec.build, spec.threads);
  for await (const line of createInterface({ input: process.stdin })) {
    const n = Number(line);
    if (!line || !(n > 0)) break;
    await side.warm!();
    const block: E2eBlock = { times: [], probeGBs: [] };
    for (let i = 0; i < n; i++) {
      const gbs = i % PROBE_EVERY === 0 ? await probeAfterPause(reader) : block.probeGBs[i - 1];
      const t = performance.now();
      const pending = side.run!(); // a promise only where the API is asynchronous
      if (pending instanceof Promise) await pending;
      block.times.push(performance.now() - t);
      block.probeGBs.push(gbs);
    }
    console.log(JSON.stringify(block));
  }
  reader.dispose();
  await side.dispose!();
}
