// The steps a round's generations asked for. Decode steps (one token each) run as one
// model.stepBatch: the weights are read once for all of them. Prompt slices then run one by one,
// each after a turn of the event loop, so that the tokens just made reach their clients first. A
// generation stopped meanwhile (aborted) drops out before its step. A batch of one, or one that
// fails (stepBatch checks everything first and moves no session), steps each session alone: only
// the generation whose session is at fault gets the error.
import { runStep, yieldToEventLoop, type StepRequest } from '../generate/generate.js';
import type { BatchStep } from '../model/session.js';

/** A step asked for, and how to answer it: the step's milliseconds, or what stopped it. */
export interface AskedStep {
  request: StepRequest;
  resolve(ms: number): void;
  reject(failure: unknown): void;
}

export async function runSteps(stepBatch: (steps: readonly BatchStep[]) => Float32Array[], asked: readonly AskedStep[]): Promise<void> {
  const ready = asked.filter(stillWanted);
  runDecodeSteps(stepBatch, ready.filter((a) => a.request.ids.length === 1));
  for (const slice of ready.filter((a) => a.request.ids.length > 1)) {
    await yieldToEventLoop();
    if (stillWanted(slice)) runAlone(slice);
  }
}

function stillWanted(a: AskedStep): boolean {
  try {
    a.request.check();
    return true;
  } catch (e) {
    a.reject(e);
    return false;
  }
}

function runDecodeSteps(stepBatch: (steps: readonly BatchStep[]) => Float32Array[], ready: readonly AskedStep[]): void {
  if (ready.length < 2) return ready.forEach(runAlone);
  const t0 = performance.now();
  let logits: Float32Array[];
  try {
    // Every session is held by its generation's stream: the batch runs as the holder of each.
    const batch = () => stepBatch(ready.map(({ request: r }) => ({ session: r.session, id: r.ids[0] })));
    logits = ready.reduce((inner, { request: r }) => () => r.use(inner), batch)();
  } catch {
    return ready.forEach(runAlone);
  }
  const ms = performance.now() - t0;
  ready.forEach((a, i) => {
    a.request.out.set(logits[i]);
    a.resolve(ms);
  });
}

function runAlone(a: AskedStep): void {
  let ms: number;
  try {
    ms = runStep(a.request);
  } catch (e) {
    return a.reject(e);
  }
  a.resolve(ms);
}
