// The server's scheduler (and its prefix cache) over stand-in generations: one token for every running generation per
// round, in turn; joining and leaving only between rounds; a queue in front, BUSY past it; a
// cancelled job leaves the queue or stops before its next token. Then over a model: the running
// generations' decode steps go as one stepBatch a round, and each gets the text it gets alone,
// whoever joins or leaves meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, PROMPT_SLICE, type Generation, type GenerationPiece, type GenerationStats } from '../src/generate/generate.js';
import { MlaError } from '../src/errors.js';
import { loadModel, type Model } from '../src/index.js';
import { PrefixCache } from '../src/serve/prefix-cache.js';
import { Scheduler } from '../src/serve/scheduler.js';

/** A generation of `n` tokens named `name`, writing "name:i" to `log` as each is made. */
function fake(name: string, n: number, log: string[], signal?: AbortSignal): Generation {
  const stats = { generatedTokens: 0 } as GenerationStats;
  async function* run(): AsyncGenerator<GenerationPiece, void, undefined> {
    for (let i = 0; i < n; i++) {
      if (signal?.aborted) throw new MlaError('ABORTED', 'generation aborted');
      log.push(`${name}:${i}`);
      stats.generatedTokens++;
      yield { id: i, text: `${name}${i} ` };
    }
  }
  return Object.assign(run(), { stats });
}

/** The stand-ins never step a session. */
const noSteps = () => { throw new Error('a stand-in generation asked for a decode step'); };

const textOf = async (pieces: AsyncIterable<GenerationPiece>) => {
  let t = '';
  for await (const p of pieces) t += p.text;
  return t;
};

describe('scheduler', () => {
  it('steps the running generations one token each in turn; a queued one joins when a slot frees', async () => {
    const log: string[] = [];
    const s = new Scheduler({ maxActive: 2, maxQueued: 1, stepBatch: noSteps });
    const a = s.submit((sig) => fake('a', 3, log, sig));
    const b = s.submit((sig) => fake('b', 1, log, sig));
    const c = s.submit((sig) => fake('c', 2, log, sig));
    expect(() => s.submit((sig) => fake('d', 1, log, sig))).toThrow(expect.objectContaining({ code: 'BUSY' }));
    expect(await Promise.all([textOf(a.pieces()), textOf(b.pieces()), textOf(c.pieces())])).toEqual(['a0 a1 a2 ', 'b0 ', 'c0 c1 ']);
    // Round 1: a, b. Round 2: a; b finds it has ended and leaves; c joins after the round.
    // Round 3: a, c. Round 4: a ends, c.
    expect(log).toEqual(['a:0', 'b:0', 'a:1', 'a:2', 'c:0', 'c:1']);
    expect(a.stats?.generatedTokens).toBe(3);
    expect(s.active + s.queued).toBe(0);
  });

  it('cancel: a queued job never starts; a running one stops before its next token; the others go on', async () => {
    const log: string[] = [];
    const s = new Scheduler({ maxActive: 1, maxQueued: 2, stepBatch: noSteps });
    const a = s.submit((sig) => fake('a', 4, log, sig));
    const b = s.submit((sig) => fake('b', 2, log, sig));
    const c = s.submit((sig) => fake('c', 2, log, sig));
    b.cancel();
    expect(s.queued).toBe(2); // a and c: the first round starts on a microtask
    const first = a.pieces();
    expect((await first.next()).value?.text).toBe('a0 ');
    a.cancel();
    await expect(textOf(first)).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(textOf(b.pieces())).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await textOf(c.pieces())).toBe('c0 c1 ');
    expect(log.filter((l) => l.startsWith('a'))).toEqual(['a:0']);
    expect(log.some((l) => l.startsWith('b'))).toBe(false);
  });

  it('a generation that fails ends only its own job; one that cannot start is refused with its error', async () => {
    const log: string[] = [];
    const s = new Scheduler({ maxActive: 2, maxQueued: 2, stepBatch: noSteps });
    const bad = s.submit(() => { throw new MlaError('OUT_OF_MEMORY', 'no room'); });
    const broken = s.submit(() => Object.assign((async function* () {
      yield { id: 0, text: 'x' };
      throw new MlaError('NON_FINITE', 'overflow');
    })(), { stats: {} as GenerationStats }));
    const good = s.submit((sig) => fake('g', 3, log, sig));
    await expect(textOf(bad.pieces())).rejects.toMatchObject({ code: 'OUT_OF_MEMORY' });
    await expect(textOf(broken.pieces())).rejects.toMatchObject({ code: 'NON_FINITE' });
    expect(await textOf(good.pieces())).toBe('g0 g1 g2 ');
  });

  it('close() stops everything and refuses new work', async () => {
    const s = new Scheduler({ maxActive: 1, maxQueued: 1, stepBatch: noSteps });
    const a = s.submit((sig) => fake('a', 1000, [], sig));
    const b = s.submit((sig) => fake('b', 1, [], sig));
    await s.close();
    await expect(textOf(a.pieces())).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(textOf(b.pieces())).rejects.toMatchObject({ code: 'ABORTED' });
    expect(() => s.submit((sig) => fake('c', 1, [], sig))).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
  });
});

describe('scheduler: continuous batching over a model', () => {
  let model: Model;
  beforeAll(async () => { model = await loadModel(); });
  afterAll(() => model?.dispose());

  const PROMPTS = ['Q: Why is the sky blue?\nA:', 'Hello there', 'Q: What is the meaning of life?\nA:', 'Once upon a time'];
  const options = (i: number) => ({ temperature: 0.8, topK: 0, topP: 1, seed: 100 + i, maxNewTokens: 24 });
  const alone = (i: number) => textOf(model.generate(PROMPTS[i], options(i)));

  /** A scheduler over the model whose stepBatch calls are seen: the size of each, in order. */
  function batching(maxActive: number) {
    const sizes: number[] = [];
    const scheduler = new Scheduler({ maxActive, maxQueued: 8, stepBatch: (steps) => { sizes.push(steps.length); return model.stepBatch(steps); } });
    const submit = (i: number) => scheduler.submit((signal, step) => generate(model, PROMPTS[i], { ...options(i), signal }, step));
    return { scheduler, sizes, submit };
  }

  /**
   * The stepBatch calls that generations taking `steps[i]` decode steps make, all running from the
   * start: in round k, those with k steps or more step together (a lone one steps on its own).
   */
  const expectedSizes = (steps: number[]) => Array.from({ length: Math.max(...steps) }, (_, k) => steps.filter((d) => d > k).length).filter((n) => n >= 2);

  it('four generations at once: one stepBatch a round over all still running, each with its lone text', async () => {
    const { scheduler, sizes, submit } = batching(4);
    const jobs = PROMPTS.map((_, i) => submit(i));
    const texts = await Promise.all(jobs.map((j) => textOf(j.pieces())));
    for (let i = 0; i < PROMPTS.length; i++) expect(texts[i], `generation ${i}`).toBe(await alone(i));
    const steps = jobs.map((j) => j.stats!.decodeSteps);
    expect(Math.min(...steps)).toBeGreaterThan(2); // all four go on for a while
    expect(sizes[0]).toBe(4);
    expect(sizes).toEqual(expectedSizes(steps));
    expect(scheduler.active + scheduler.queued).toBe(0);
  });

  it('one joining mid-way and one cancelled leave the others\' text as it is alone', async () => {
    const { sizes, submit } = batching(4);
    const before = model.memoryBytes;
    const a = submit(0), b = submit(1);
    let c: ReturnType<typeof submit> | null = null;
    const read = async (job: ReturnType<typeof submit>, each: (n: number) => void) => {
      let t = '', n = 0;
      for await (const p of job.pieces()) { t += p.text; each(++n); }
      return t;
    };
    const ta = read(a, (n) => { if (n === 4) c = submit(2); });
    const tb = read(b, (n) => { if (n === 8) b.cancel(); });
    await expect(tb).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await ta).toBe(await alone(0));
    expect(await textOf(c!.pieces())).toBe(await alone(2));
    expect(b.stats!.stopReason).toBe('aborted');
    expect(b.stats!.generatedTokens).toBeLessThan(12); // stopped soon after the cancel, not at the end
    // Two stepped together, then three (c's prompt ran in a round of theirs), then two once b left.
    expect(sizes[0]).toBe(2);
    expect(sizes).toContain(3);
    expect(sizes.lastIndexOf(3)).toBeLessThan(sizes.length - 1);
    expect(sizes.slice(sizes.indexOf(3)).every((n) => n <= 3)).toBe(true);
    const all = [a, b, c!].reduce((s, j) => s + j.stats!.decodeSteps, 0);
    expect(sizes.reduce((s, n) => s + n, 0)).toBeLessThanOrEqual(all);
    expect(model.memoryBytes).toBe(before); // every session freed, the cancelled one too
  });

  it('a long prompt runs in slices, a round each: the others keep making tokens meanwhile', async () => {
    const long = 'Q: ' + 'Why do cats sit on keyboards, and why do dogs bark at the mail? '.repeat(2) + '\nA:';
    const ids = model.tokenizer!.encode(long);
    expect(ids.length).toBeGreaterThan(PROMPT_SLICE); // two slices
    // Slicing changes no bits: the decoder runs prompts in chunks of PROMPT_SLICE anyway.
    const whole = model.createSession(), sliced = model.createSession();
    const a1 = whole.prefill(ids).slice();
    sliced.prefill(ids.slice(0, PROMPT_SLICE));
    expect(sliced.prefill(ids.slice(PROMPT_SLICE))).toEqual(a1);
    whole.dispose(); sliced.dispose();

    // What happens, in the order the scheduler makes it happen: each token as it is made, each slice as it is asked for.
    const log: string[] = [];
    const logged = (name: string, g: Generation): Generation =>
      Object.assign((async function* () { for await (const p of g) { log.push(name); yield p; } })(), { stats: g.stats });
    const { scheduler } = batching(2);
    const a = scheduler.submit((signal, step) => logged('a', generate(model, PROMPTS[1], { ...options(1), maxNewTokens: 20, signal }, step)));
    let c: ReturnType<typeof scheduler.submit> | null = null;
    const readA = (async () => {
      let t = '';
      for await (const p of a.pieces()) {
        t += p.text;
        c ??= scheduler.submit((signal, step) => logged('c', generate(model, long, { ...options(2), maxNewTokens: 8, signal },
          (r) => { if (r.ids.length > 1) log.push('c-slice'); return step(r); })));
      }
      return t;
    })();
    await expect.poll(() => c).not.toBeNull();
    const tc = await textOf(c!.pieces());
    expect(await readA).toBe(await textOf(model.generate(PROMPTS[1], { ...options(1), maxNewTokens: 20 })));
    expect(tc).toBe(await textOf(model.generate(long, { ...options(2), maxNewTokens: 8 })));
    expect(c!.stats!.promptTokens).toBe(ids.length);
    // c's prompt took two rounds, and a made a token in each: with the whole prompt in one round, one.
    const during = log.slice(log.indexOf('c-slice'), log.indexOf('c'));
    expect(during).toEqual(['c-slice', 'a', 'c-slice', 'a']);
  });

  it('a long prompt alone, and two together, run their slices and answer (no round waits on itself)', async () => {
    const long = (i: number) => `Q: ${i} ` + 'Why do cats sit on keyboards, and why do dogs bark at the mail? '.repeat(2) + '\nA:';
    expect(model.tokenizer!.encode(long(0)).length).toBeGreaterThan(PROMPT_SLICE + 1); // a second slice of more than one token
    const { scheduler } = batching(2);
    const run = (i: number) => textOf(scheduler.submit((signal, step) => generate(model, long(i), { ...options(i), maxNewTokens: 6, signal }, step)).pieces());
    const alone = (i: number) => textOf(model.generate(long(i), { ...options(i), maxNewTokens: 6 }));
    expect(await run(0)).toBe(await alone(0));
    expect(await Promise.all([run(1), run(2)])).toEqual([await alone(1), await alone(2)]);
    expect(scheduler.active + scheduler.queued).toBe(0);
  }, 20_000);

  it('a batch that fails (a session disposed under it) fails only that generation', async () => {
    const sessions: Array<{ dispose(): void }> = [];
    const s = new Scheduler({ maxActive: 3, maxQueued: 0, stepBatch: (steps) => model.stepBatch(steps) });
    const jobs = [0, 1, 2].map((i) => s.submit((signal, step) => {
      const session = model.createSession({ contextLength: 64 });
      sessions.push(session);
      const g = generate(model, PROMPTS[i], { ...options(i), signal, session }, step);
      return Object.assign((async function* () { try { yield* g; } finally { session.dispose(); } })(), { stats: g.stats });
    }));
    const first = jobs[1].pieces();
    await first.next();
    sessions[1].dispose();
    const [t0, t2] = await Promise.all([textOf(jobs[0].pieces()), textOf(jobs[2].pieces())]);
    await expect(textOf(first)).rejects.toMatchObject({ code: 'DISPOSED' });
    expect(t0).toBe(await alone(0));
    expect(t2).toBe(await alone(2));
  });
});

describe('prefix cache', () => {
  const ids = (n: number, first = 0) => Array.from({ length: n }, (_, i) => first + i);
  it('finds the longest shared prefix (16 tokens at least), and drops the least recently used past its budget', () => {
    const c = new PrefixCache(250);
    c.put(ids(20), new Uint8Array(100));           // A
    c.put(ids(30, 100), new Uint8Array(100));      // B
    expect(c.take([...ids(18), 999])).toMatchObject({ common: 18, position: 20 }); // A, now the most recent
    expect(c.take(ids(15))).toBeNull();            // too short a prefix to be worth a restore
    c.put(ids(40, 500), new Uint8Array(100));      // C: over budget, B (least recently used) goes
    expect(c.size).toBe(2);
    expect(c.bytes).toBe(200);
    expect(c.take(ids(30, 100))).toBeNull();
    expect(c.take(ids(20))).toMatchObject({ common: 20 });
    expect([c.hits, c.misses]).toEqual([2, 2]);
    c.put(ids(20), new Uint8Array(60));            // the same ids: replaced, not added
    expect([c.size, c.bytes]).toEqual([2, 160]);
    c.put(ids(50, 900), new Uint8Array(300));      // larger than the budget: not kept
    expect(c.size).toBe(2);
  });
});
