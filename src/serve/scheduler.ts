// Runs the server's generations: at most `maxActive` at once, each in its own session; more wait
// in a queue of at most `maxQueued`, and past that a request is refused (BUSY, a 429). Work goes in
// rounds: a round advances every running generation by one token, or by one slice of its prompt
// (PROMPT_SLICE tokens), so neither a long answer nor a long prompt holds up the others.
// Generations join and leave only between rounds, at token boundaries.
//
// Continuous batching: a round starts the turns of every running generation at once; each asks
// its stepper for a step, and once every turn still going waits for one, the decode steps run as
// one model.stepBatch (batch-steps.ts): the weights are read once a round, not once a generation.
// A generation that has run a prompt slice this round and asks for the next is parked: its turn
// ends without a token, and the slice waits for the next round. The pieces each generation yields
// go into its job's buffer, and the round never waits for a client to read them: a slow reader
// cannot stall the others.
import { MlaError } from '../errors.js';
import { yieldToEventLoop, type Generation, type GenerationPiece, type GenerationStats, type StepRequest, type Stepper } from '../generate/generate.js';
import type { BatchStep } from '../model/session.js';
import { runSteps, type AskedStep } from './batch-steps.js';

export interface SchedulerOptions {
  /** Generations running at once (each holds a session's KV cache). */
  maxActive: number;
  /** Requests waiting for a slot; past that, submit() throws BUSY. */
  maxQueued: number;
  /** One decode step for several sessions at once: the model's stepBatch. */
  stepBatch: (steps: readonly BatchStep[]) => Float32Array[];
}

/** One request's generation, as the HTTP side sees it. */
export interface Job {
  /** The pieces in order; ends with the generation, or throws what stopped it (ABORTED after cancel()). */
  pieces(): AsyncGenerator<GenerationPiece, void, undefined>;
  /** The generation's stats, once it has started (null while queued). */
  readonly stats: GenerationStats | null;
  /** Stop it: a queued job leaves the queue; a running one stops before its next token, and its session is freed. */
  cancel(): void;
}

/** Makes a job's generation: `signal` is what cancel() aborts, `step` the stepper that batches its decode steps. */
type Start = (signal: AbortSignal, step: Stepper) => Generation;

class Entry implements Job {
  readonly controller = new AbortController();
  generation: Generation | null = null;
  /** Its generation's next() while a turn ended without a token (parked mid-prompt). */
  pending: Promise<IteratorResult<GenerationPiece, void>> | null = null;
  /** The round in which it last ran a prompt slice. */
  slicedIn = -1;
  /** Ends the current turn without a token: set while a turn waits. */
  park: (() => void) | null = null;
  private readonly buffer: GenerationPiece[] = [];
  private ended = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;

  constructor(readonly start: Start, private readonly onCancel: (e: Entry) => void) {}

  get stats(): GenerationStats | null { return this.generation?.stats ?? null; }

  push(piece: GenerationPiece): void {
    this.buffer.push(piece);
    this.wake?.();
  }

  end(failure: unknown = null): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = failure;
    this.wake?.();
  }

  async *pieces(): AsyncGenerator<GenerationPiece, void, undefined> {
    for (let i = 0; ; ) {
      if (i < this.buffer.length) yield this.buffer[i++];
      else if (this.ended) {
        if (this.failure !== null) throw this.failure;
        return;
      } else await new Promise<void>((r) => { this.wake = r; });
    }
  }

  cancel(): void {
    this.controller.abort();
    this.onCancel(this);
  }
}

export class Scheduler {
  private readonly running: Entry[] = [];
  private readonly queue: Entry[] = [];
  private loop: Promise<void> | null = null;
  private closed = false;
  // Turns of this round not yet ended, and the steps asked for and not yet run; prompt slices
  // parked for the next round.
  private turns = 0;
  private asked: AskedStep[] = [];
  private parked: { job: Entry; step: AskedStep }[] = [];
  private roundNo = 0;

  constructor(private readonly o: SchedulerOptions) {}

  /** Generations running now. */
  get active(): number { return this.running.length; }

  /** Requests waiting for a slot. */
  get queued(): number { return this.queue.length; }

  /**
   * Queue a generation; `start` is called when a slot frees and must not have run anything yet.
   * BUSY when the queue is full.
   */
  submit(start: Start): Job {
    if (this.closed) throw new MlaError('DISPOSED', 'the server is shutting down');
    if (this.running.length + this.queue.length >= this.o.maxActive + this.o.maxQueued) {
      throw new MlaError('BUSY', `the server is busy: ${this.running.length} generation(s) running and ` +
        `${this.queue.length} waiting, the most it takes; try again shortly`);
    }
    const job = new Entry(start, (e) => this.dequeue(e));
    this.queue.push(job);
    // Started on a microtask: requests submitted together join the same first round.
    this.loop ??= Promise.resolve().then(() => this.run()).finally(() => { this.loop = null; });
    return job;
  }

  /** Cancel everything and wait until every generation has stopped. */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of [...this.queue, ...this.running]) j.cancel();
    await this.loop;
  }

  private dequeue(e: Entry): void {
    const i = this.queue.indexOf(e);
    if (i < 0) return;
    this.queue.splice(i, 1);
    e.end(new MlaError('ABORTED', 'generation aborted'));
  }

  private async run(): Promise<void> {
    while (this.running.length || this.queue.length) {
      while (this.running.length < this.o.maxActive && this.queue.length) {
        const job = this.queue.shift()!;
        try {
          job.generation = job.start(job.controller.signal, (request) => this.ask(job, request));
          this.running.push(job);
        } catch (e) {
          job.end(e);
        }
      }
      await this.round();
      // Whatever the round did, the event loop gets a turn: aborts and new requests get in.
      await yieldToEventLoop();
    }
  }

  /**
   * One token (or prompt slice) for every running generation: their turns start at once, in the
   * order they joined, with the slices parked last round already asked.
   */
  private async round(): Promise<void> {
    this.roundNo++;
    this.asked = this.parked.map(({ job, step }) => { job.slicedIn = this.roundNo; return step; });
    this.parked = [];
    this.turns = this.running.length;
    const turns = Promise.all(this.running.map((job) => this.turn(job)));
    // The parked slices are asked already: when every turn is one of them, no ask() or turn's end
    // is left to run them.
    this.stepWhenAllAsked();
    await turns;
  }

  private async turn(job: Entry): Promise<void> {
    try {
      job.pending ??= job.generation!.next();
      const parked = new Promise<null>((r) => { job.park = () => r(null); });
      const r = await Promise.race([job.pending, parked]);
      job.park = null;
      if (r === null) return;
      job.pending = null;
      if (r.done) this.leave(job, null);
      else job.push(r.value);
    } catch (e) {
      job.pending = null;
      this.leave(job, e);
    } finally {
      this.turns--;
      this.stepWhenAllAsked();
    }
  }

  /** A generation's stepper: its step waits for the round's batch, a second prompt slice for the next round. */
  private ask(job: Entry, request: StepRequest): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const asked = { request, resolve, reject };
      if (request.ids.length > 1 && job.slicedIn === this.roundNo) {
        this.parked.push({ job, step: asked });
        job.park?.();
        return;
      }
      if (request.ids.length > 1) job.slicedIn = this.roundNo;
      this.asked.push(asked);
      this.stepWhenAllAsked();
    });
  }

  /** Once every turn still going waits for its step, run them all. */
  private stepWhenAllAsked(): void {
    if (this.asked.length === 0 || this.asked.length < this.turns) return;
    const asked = this.asked;
    this.asked = [];
    void runSteps(this.o.stepBatch, asked);
  }

  private leave(job: Entry, failure: unknown): void {
    this.running.splice(this.running.indexOf(job), 1);
    job.end(failure);
  }
}
