// The decode steps a round's generations asked for, run as one model.stepBatch: the weights are read
// once for all of them. A generation stopped meanwhile (aborted) drops out before the step. A batch
// of one, or one that fails (stepBatch checks everything first and moves no session), steps each
// session alone: only the generation whose session is at fault gets the error.
import type { StepRequest } from '../generate/generate.js';
import type { BatchStep } from '../model/session.js';

/** A step asked for, and how to answer it: the step's milliseconds, or what stopped it. */
export interface AskedStep {
  request: StepRequest;
  resolve(ms: number): void;
  reject(failure: unknown): void;
}

export function runSteps(stepBatch: (steps: readonly BatchStep[]) => Float32Array[], asked: readonly AskedStep[]): void {
  const ready = asked.filter((a) => {
    try {
      a.request.check();
      return true;
    } catch (e) {
      a.reject(e);
      return false;
    }
  });
  if (ready.length < 2) return stepEachAlone(ready);
  const t0 = performance.now();
  let logits: Float32Array[];
  try {
    // Every session is held by its generation's stream: the batch runs as the holder of each.
    const batch = () => stepBatch(ready.map(({ request: r }) => ({ session: r.session, id: r.id })));
    logits = ready.reduce((inner, { request: r }) => () => r.use(inner), batch)();
  } catch {
    return stepEachAlone(ready);
  }
  const ms = performance.now() - t0;
  ready.forEach((a, i) => {
    a.request.out.set(logits[i]);
    a.resolve(ms);
  });
}

function stepEachAlone(asked: readonly AskedStep[]): void {
  for (const { request: r, resolve, reject } of asked) {
    const t0 = performance.now();
    try {
      r.use(() => r.session.step(r.id, { out: r.out }));
    } catch (e) {
      reject(e);
      continue;
    }
    resolve(performance.now() - t0);
  }
}
