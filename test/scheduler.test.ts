// The server's scheduler (and its prefix cache) over stand-in generations: one token for every running generation per
// round, in turn; joining and leaving only between rounds; a queue in front, BUSY past it; a
// cancelled job leaves the queue or stops before its next token.
import { describe, expect, it } from 'vitest';
import type { Generation, GenerationPiece, GenerationStats } from '../src/generate/generate.js';
import { MlaError } from '../src/errors.js';
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

const textOf = async (pieces: AsyncIterable<GenerationPiece>) => {
  let t = '';
  for await (const p of pieces) t += p.text;
  return t;
};

describe('scheduler', () => {
  it('steps the running generations one token each in turn; a queued one joins when a slot frees', async () => {
    const log: string[] = [];
    const s = new Scheduler({ maxActive: 2, maxQueued: 1 });
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
    const s = new Scheduler({ maxActive: 1, maxQueued: 2 });
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
    const s = new Scheduler({ maxActive: 2, maxQueued: 2 });
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
    const s = new Scheduler({ maxActive: 1, maxQueued: 1 });
    const a = s.submit((sig) => fake('a', 1000, [], sig));
    const b = s.submit((sig) => fake('b', 1, [], sig));
    await s.close();
    await expect(textOf(a.pieces())).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(textOf(b.pieces())).rejects.toMatchObject({ code: 'ABORTED' });
    expect(() => s.submit((sig) => fake('c', 1, [], sig))).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
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
