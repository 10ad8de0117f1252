// Streaming generation: greedy against a hand-written prefill + step argmax loop, seeds, stop
// strings and ids, AbortSignal, sessions that carry a conversation, UTF-8 split across tokens.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModel, MlaError, type ChatMessage, type GenerateOptions, type Generation, type GenerationPiece, type Model } from '../src/index.js';
import { argmax } from '../src/generate/sampling.js';
import { PROMPT_SLICE } from '../src/generate/generate.js';
import { makeRandomCheckpoint, tinyLlamaConfig } from './reference/model.js';

const fortuneDir = new URL('../models/fortune-mla/', import.meta.url);
const json = (name: string) => JSON.parse(readFileSync(new URL(name, fortuneDir), 'utf8'));

async function collect(g: Generation): Promise<GenerationPiece[]> {
  const out: GenerationPiece[] = [];
  for await (const p of g) out.push(p);
  return out;
}
const textOf = (pieces: GenerationPiece[]) => pieces.map((p) => p.text).join('');

async function expectCode(f: () => unknown, code: string, mention?: string): Promise<void> {
  let err: unknown;
  try { await f(); } catch (e) { err = e; }
  expect(err, `expected MlaError ${code}`).toBeInstanceOf(MlaError);
  expect((err as MlaError).code, (err as Error).message).toBe(code);
  if (mention) expect((err as Error).message).toContain(mention);
}

/**
 * A designed 1-layer model over the default model's byte vocabulary whose greedy continuation of a
 * token is fixed: its attention and MLP write nothing, so the logits are lm_head · norm(embedding),
 * and lm_head maps each byte of SEQUENCE to the next. Its text has 2-, 3- and 4-byte characters.
 */
const SEQUENCE_TEXT = 'Aé🎉日Z';
async function successorModel(): Promise<Model> {
  const V = 264, d = 264;
  const config = tinyLlamaConfig({
    vocab_size: V, hidden_size: d, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    intermediate_size: 32, max_position_embeddings: 64, bos_token_id: 256, eos_token_id: 257,
  });
  const t = makeRandomCheckpoint(config, 3);
  const set = (name: string, f: (i: number) => number) => { const x = t[name].data; for (let i = 0; i < x.length; i++) x[i] = f(i); };
  set('model.embed_tokens.weight', (i) => (Math.floor(i / d) === i % d ? 1 : 0)); // one-hot rows
  set('model.layers.0.self_attn.o_proj.weight', () => 0);
  set('model.layers.0.mlp.down_proj.weight', () => 0);
  set('model.norm.weight', () => 1);
  const seq = [256, ...new TextEncoder().encode(SEQUENCE_TEXT), 257];
  const next = new Map(seq.slice(0, -1).map((id, k) => [id, seq[k + 1]]));
  set('lm_head.weight', (i) => (next.get(i % d) === Math.floor(i / d) ? 1 : 0)); // row = output id
  return loadModel({
    config, tensors: t,
    tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json'),
  } as Parameters<typeof loadModel>[0]);
}

let model: Model;
beforeAll(async () => { model = await loadModel(); });

describe('the default model has its tokenizer and generation defaults (the same path as any folder)', () => {
  it('tokenizer, chat template and generation_config', () => {
    expect(model.tokenizer?.encode('Hi')).toEqual([256, 72, 105]);
    expect(model.tokenizer?.chatTemplate).toContain('Q: ');
    expect(model.generationConfig).toMatchObject({ doSample: true, temperature: 0.8, topP: 0.95, maxNewTokens: 256 });
  });

  it('a model without tokenizer files has none, and takes token ids', async () => {
    const config = tinyLlamaConfig({});
    const m = await loadModel({ config, tensors: makeRandomCheckpoint(config, 1) });
    expect(m.tokenizer).toBeNull();
    expect(m.generationConfig).toBeNull();
    const pieces = await collect(m.generate([0, 5, 7], { maxNewTokens: 4, temperature: 0 }));
    expect(pieces.length).toBeGreaterThan(0);
    expect(pieces.every((p) => p.text === '')).toBe(true);
    await expectCode(() => m.generate('text'), 'BAD_INPUT', 'tokenizer');
  });
});

describe('greedy', () => {
  const prompt = 'Q: What is the meaning of life?\nA:';

  it('equals a manual prefill + step argmax loop, and is deterministic', async () => {
    const N = 60;
    const g = model.generate(prompt, { temperature: 0, maxNewTokens: N });
    const pieces = await collect(g);
    const ids = model.tokenizer!.encode(prompt);
    const s = model.createSession();
    let logits = s.prefill(ids);
    const manual: number[] = [];
    for (let i = 0; i < N; i++) {
      const id = argmax(logits);
      manual.push(id);
      if (id === 257) break;
      logits = s.step(id);
    }
    s.dispose();
    expect(pieces.map((p) => p.id)).toEqual(manual);
    expect(textOf(pieces)).toBe(model.tokenizer!.decode(manual, { skipSpecialTokens: true }));
    expect(g.stats).toMatchObject({ promptTokens: ids.length, generatedTokens: manual.length, seed: null });
    const again = await collect(model.generate(prompt, { temperature: 0, maxNewTokens: N }));
    expect(again).toEqual(pieces);
  });

  it('logprobs: each piece carries ln p of its token and the top alternatives, from the model\'s logits in float64', async () => {
    const N = 12, TOP = 3;
    // Sampled with a penalty and min-p: the log-probabilities are the model's own all the same.
    const pieces = await collect(model.generate(prompt, { temperature: 0.8, minP: 0.05, repetitionPenalty: 1.3, seed: 5, maxNewTokens: N, logprobs: TOP }));
    const s = model.createSession();
    let logits = s.prefill(model.tokenizer!.encode(prompt));
    for (const p of pieces) {
      const x = Array.from(logits, Number), m = Math.max(...x);
      const lse = m + Math.log(x.reduce((a, v) => a + Math.exp(v - m), 0));
      expect(Math.abs(p.logprob! - (x[p.id] - lse))).toBeLessThan(1e-9);
      const order = Array.from(x.keys()).sort((a, b) => x[b] - x[a] || a - b).slice(0, TOP);
      expect(p.topLogprobs!.map((t) => t.id)).toEqual(order);
      for (const t of p.topLogprobs!) expect(Math.abs(t.logprob - (x[t.id] - lse))).toBeLessThan(1e-9);
      if (p !== pieces[pieces.length - 1]) logits = s.step(p.id);
    }
    s.dispose();
    // Without the option, pieces are { id, text } only; logprobs 0 gives the token's alone.
    const plain = await collect(model.generate(prompt, { temperature: 0, maxNewTokens: 2 }));
    expect(Object.keys(plain[0]).sort()).toEqual(['id', 'text']);
    const bare = await collect(model.generate(prompt, { temperature: 0, maxNewTokens: 2, logprobs: 0 }));
    expect(bare[0].topLogprobs).toEqual([]);
    expect(bare[0].logprob).toBeLessThanOrEqual(0);
  });

  it('presence and frequency penalties and logit bias: a manual loop that applies them by hand picks the same tokens', async () => {
    const N = 40;
    const ids = model.tokenizer!.encode(prompt);
    const bias = new Map([[ids[ids.length - 1], 3], [argmax(model.createSession().prefill(ids)), -100]]);
    const options = { temperature: 0, maxNewTokens: N, presencePenalty: 1.5, frequencyPenalty: 0.7, logitBias: bias, logprobs: 0 };
    const pieces = await collect(model.generate(prompt, options));
    const s = model.createSession();
    let logits = s.prefill(ids);
    const counts = new Map<number, number>();
    for (const p of pieces) {
      const x = Float64Array.from(logits);
      // logprobs stay the model's own, before the penalties
      const m = Math.max(...x), lse = m + Math.log(x.reduce((a, v) => a + Math.exp(v - m), 0));
      expect(Math.abs(p.logprob! - (x[p.id] - lse))).toBeLessThan(1e-9);
      for (const [id, n] of counts) x[id] -= 1.5 + 0.7 * n; // output only: the prompt is not counted
      for (const [id, b] of bias) x[id] += b;
      expect(p.id).toBe(argmax(x));
      counts.set(p.id, (counts.get(p.id) ?? 0) + 1);
      if (p !== pieces[pieces.length - 1]) logits = s.step(p.id);
    }
    s.dispose();
    // The penalties change the text: without them greedy repeats more.
    const plain = await collect(model.generate(prompt, { temperature: 0, maxNewTokens: N }));
    expect(pieces.map((p) => p.id)).not.toEqual(plain.map((p) => p.id));
    expect(new Set(pieces.map((p) => p.id)).size).toBeGreaterThan(new Set(plain.map((p) => p.id)).size);
    // A bias of 100 all but forces a token, a plain object keyed by id works as a Map does.
    const forced = await collect(model.generate(prompt, { temperature: 0.9, seed: 3, maxNewTokens: 5, logitBias: { 65: 100 } }));
    expect(forced.map((p) => p.id)).toEqual([65, 65, 65, 65, 65]);
  });

  it('bad minP and logprobs are BAD_INPUT naming the option', async () => {
    await expectCode(() => model.generate(prompt, { minP: 1.5 }), 'BAD_INPUT', 'minP');
    await expectCode(() => model.generate(prompt, { minP: -0.1 }), 'BAD_INPUT', 'minP');
    await expectCode(() => model.generate(prompt, { logprobs: 21 }), 'BAD_INPUT', 'logprobs');
    await expectCode(() => model.generate(prompt, { logprobs: 1.5 }), 'BAD_INPUT', 'logprobs');
  });

  it('maxNewTokens bounds the stream; the model\'s EOS ends it', async () => {
    const g = model.generate(prompt, { temperature: 0, maxNewTokens: 7 });
    expect(await collect(g)).toHaveLength(7);
    expect(g.stats.stopReason).toBe('length');
    const s = await successorModel();
    const h = s.generate('', { temperature: 0 });
    const pieces = await collect(h);
    expect(pieces[pieces.length - 1]).toEqual({ id: 257, text: '' });
    expect(h.stats.stopReason).toBe('eos');
  });
});

describe('sampling', () => {
  const prompt = 'Q: Why did the chicken cross the road?\nA:';
  it('a seed reproduces the stream; another seed gives another', async () => {
    const run = (seed: number) => collect(model.generate(prompt, { seed, maxNewTokens: 80 }));
    const a = await run(11), b = await run(11), c = await run(12);
    expect(a).toEqual(b);
    expect(a.map((p) => p.id)).not.toEqual(c.map((p) => p.id));
  });

  it('defaults come from generation_config.json (sampling, with the seed reported)', async () => {
    const g = model.generate(prompt, { maxNewTokens: 5 });
    await collect(g);
    expect(g.stats.seed).not.toBeNull();
    const greedy = model.generate(prompt, { maxNewTokens: 5, temperature: 0 });
    await collect(greedy);
    expect(greedy.stats.seed).toBeNull();
  });
});

describe('UTF-8 split across tokens', () => {
  it('2-, 3- and 4-byte characters come out whole, each with the token that completes it', async () => {
    const m = await successorModel();
    const pieces = await collect(m.generate('', { temperature: 0 }));
    expect(textOf(pieces)).toBe(SEQUENCE_TEXT);
    expect(pieces.map((p) => p.text)).toEqual(['A', '', 'é', '', '', '', '🎉', '', '', '日', 'Z', '']);
  });

  it('on the default model, streamed pieces never hold a broken character', async () => {
    const g = model.generate('Q: Où est le café? — «Ça va»\nA:', { seed: 5, temperature: 1.5, topK: 0, maxNewTokens: 150 });
    const pieces = await collect(g);
    const ids = pieces.map((p) => p.id).filter((id) => id < 256);
    expect(textOf(pieces)).toBe(model.tokenizer!.decode(ids));
  });
});

describe('stop', () => {
  it('a stop string ends the stream and is not in the text, even across tokens', async () => {
    const m = await successorModel();
    const g = m.generate('', { temperature: 0, stop: ['日Z', 'never'] });
    const pieces = await collect(g);
    expect(textOf(pieces)).toBe('Aé🎉');
    expect(g.stats.stopReason).toBe('stop');
    // A held-back prefix of a stop string that never completes comes out in the end.
    const h = m.generate('', { temperature: 0, stop: 'Z!' });
    expect(textOf(await collect(h))).toBe(SEQUENCE_TEXT);
    expect(h.stats.stopReason).toBe('eos');
  });

  it('a stop id ends the stream (the id is the last piece, without its text)', async () => {
    const m = await successorModel();
    const g = m.generate('', { temperature: 0, stop: 0xc3 });
    const pieces = await collect(g);
    expect(textOf(pieces)).toBe('A');
    expect(pieces[pieces.length - 1].id).toBe(0xc3);
    expect(g.stats.stopReason).toBe('stop');
  });

  it('on the default model: greedy text up to the first newline', async () => {
    const full = textOf(await collect(model.generate('Q: What is a computer?\nA:', { temperature: 0, maxNewTokens: 120 })));
    const cut = full.indexOf('\n');
    expect(cut).toBeGreaterThan(0);
    const stopped = textOf(await collect(model.generate('Q: What is a computer?\nA:', { temperature: 0, maxNewTokens: 120, stop: '\n' })));
    expect(stopped).toBe(full.slice(0, cut));
  });
});

describe('abort', () => {
  const prompt = 'Q: What is the answer?\nA:';

  it('stops at once when aborted between tokens; the session stays usable and consistent', async () => {
    const session = model.createSession({ contextLength: 160 });
    const ctrl = new AbortController();
    const got: GenerationPiece[] = [];
    await expectCode(async () => {
      for await (const p of model.generate(prompt, { temperature: 0, maxNewTokens: 100, signal: ctrl.signal, session })) {
        got.push(p);
        if (got.length === 5) ctrl.abort();
      }
    }, 'ABORTED');
    expect(got).toHaveLength(5);
    const promptIds = model.tokenizer!.encode(prompt);
    // The last token was yielded but not yet fed: the next call feeds it first.
    expect(session.position).toBe(promptIds.length + 4);
    const more = ' and more';
    const next = await collect(model.generate(more, { temperature: 0, maxNewTokens: 20, session }));
    const all = [...promptIds, ...got.map((p) => p.id), ...model.tokenizer!.encode(more, { addSpecialTokens: false })];
    const fresh = await collect(model.generate(all, { temperature: 0, maxNewTokens: 20 }));
    expect(next.map((p) => p.id)).toEqual(fresh.map((p) => p.id));
    session.dispose();
  });

  it('an abort from a timer gets in between tokens (the stream yields to the event loop)', async () => {
    const ctrl = new AbortController();
    let count = 0, countAtAbort = -1;
    ctrl.signal.addEventListener('abort', () => { countAtAbort = count; });
    setTimeout(() => ctrl.abort(), 5);
    await expectCode(async () => {
      // A consumer that never awaits anything itself.
      for await (const _ of model.generate(prompt, { temperature: 0, maxNewTokens: 1000, signal: ctrl.signal })) count++;
    }, 'ABORTED');
    expect(countAtAbort).toBeGreaterThanOrEqual(0);
    expect(count - countAtAbort).toBeLessThanOrEqual(1);
    expect(count).toBeLessThan(1000);
  });

  it('an abort gets in between the slices of a long prompt; the session keeps what ran', async () => {
    const long = 'Q: ' + 'Why do cats sit on keyboards, and why do dogs bark at the mail? '.repeat(2) + '\nA:';
    const ids = model.tokenizer!.encode(long);
    expect(ids.length).toBeGreaterThan(PROMPT_SLICE);
    const session = model.createSession({ contextLength: 190 });
    const ctrl = new AbortController();
    const stream = model.generate(long, { temperature: 0, maxNewTokens: 8, signal: ctrl.signal, session });
    const first = stream.next();
    // The stream's first turn of the event loop comes before this one: the first slice runs, then the abort.
    setImmediate(() => ctrl.abort());
    await expectCode(() => first, 'ABORTED');
    expect(session.position).toBe(PROMPT_SLICE);
    // The rest of the prompt then runs after what the session holds, as if never cut.
    const rest = await collect(model.generate(ids.slice(PROMPT_SLICE), { temperature: 0, maxNewTokens: 8, session }));
    const whole = await collect(model.generate(long, { temperature: 0, maxNewTokens: 8 }));
    expect(rest.map((p) => p.id)).toEqual(whole.map((p) => p.id));
    session.dispose();
  });

  it('an already aborted signal runs nothing', async () => {
    const ctrl = new AbortController();
    ctrl.abort();
    const session = model.createSession({ contextLength: 64 });
    await expectCode(() => collect(model.generate(prompt, { signal: ctrl.signal, session })), 'ABORTED');
    expect(session.position).toBe(0);
    session.dispose();
  });
});

describe('chat', () => {
  it('renders through the chat template; a session keeps the history and reruns only what is new', async () => {
    const opts: GenerateOptions = { temperature: 0, maxNewTokens: 40 };
    const session = model.createSession();
    const messages = [{ role: 'user', content: 'What is a computer?' }];
    const first = model.chat(messages, { ...opts, session });
    const a1 = textOf(await collect(first));
    expect(first.stats.reusedTokens).toBe(0);
    expect(first.stats.promptTokens).toBe(model.tokenizer!.encodeChat(messages).length);
    // Without a session, the same answer (greedy).
    expect(textOf(await collect(model.chat(messages, opts)))).toBe(a1);

    messages.push({ role: 'assistant', content: a1.trim() }, { role: 'user', content: 'Why?' });
    const second = model.chat(messages, { ...opts, session });
    const a2 = await collect(second);
    // The cache holds turn one's prompt and answer; the template renders the answer as ' ' + content,
    // the model wrote it after a tab, so the common prefix is the first prompt: only the rest reruns.
    const cached = model.tokenizer!.encodeChat(messages.slice(0, 1));
    const all = model.tokenizer!.encodeChat(messages);
    expect(second.stats.reusedTokens).toBe(cached.length);
    expect(second.stats.promptTokens).toBe(all.length - cached.length);
    // Same tokens as running the whole conversation in a fresh session.
    const fresh = await collect(model.chat(messages, opts));
    expect(a2.map((p) => p.id)).toEqual(fresh.map((p) => p.id));
    session.dispose();
  });

  it('a model without a chat template refuses chat (BAD_INPUT)', async () => {
    const config = tinyLlamaConfig({});
    const m = await loadModel({ config, tensors: makeRandomCheckpoint(config, 1) });
    await expectCode(() => m.chat([{ role: 'user', content: 'hi' }]), 'BAD_INPUT');
    await expectCode(() => model.chat([]), 'BAD_INPUT');
  });
});

describe('Session.truncate', () => {
  it('rewinds to a prefix: the next steps give the logits of a fresh run', () => {
    const ids = model.tokenizer!.encode('Q: What is a dog?\nA:');
    const s = model.createSession({ contextLength: 64 });
    s.prefill(ids);
    s.truncate(10);
    expect(s.position).toBe(10);
    const rewound = s.prefill(ids.slice(10, 20));
    const fresh = model.forward(ids.slice(0, 20));
    const V = model.config.vocabSize;
    const last = fresh.subarray(19 * V, 20 * V);
    for (let i = 0; i < V; i++) expect(Math.abs(rewound[i] - last[i])).toBeLessThan(1e-3);
    expect(() => s.truncate(21)).toThrow(MlaError);
    expect(() => s.truncate(-1)).toThrow(MlaError);
    s.dispose();
  });
});

describe('invalid options are BAD_INPUT naming the option', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['maxNewTokens', { maxNewTokens: 0 }],
    ['maxNewTokens', { maxNewTokens: 2.5 }],
    ['temperature', { temperature: -1 }],
    ['temperature', { temperature: NaN }],
    ['topK', { topK: 1.5 }],
    ['topP', { topP: 0 }],
    ['topP', { topP: 1.5 }],
    ['repetitionPenalty', { repetitionPenalty: 0 }],
    ['presencePenalty', { presencePenalty: 2.5 }],
    ['frequencyPenalty', { frequencyPenalty: -3 }],
    ['frequencyPenalty', { frequencyPenalty: '1' }],
    ['logitBias', { logitBias: [[1, 2]] }],
    ['logitBias', { logitBias: { 99999: 1 } }],
    ['logitBias', { logitBias: { '-1': 1 } }],
    ['logitBias', { logitBias: { x: 1 } }],
    ['logitBias', { logitBias: new Map([[1.5, 1]]) }],
    ['logitBias[5]', { logitBias: { 5: 101 } }],
    ['logitBias[5]', { logitBias: new Map([[5, NaN]]) }],
    ['seed', { seed: 0.5 }],
    ['stop', { stop: [''] }],
    ['stop', { stop: [999] }],
    ['stop', { stop: [{}] }],
    ['signal', { signal: {} }],
    ['session', { session: {} }],
    ['maxTokens', { maxTokens: 5 }],
  ];
  it.each(cases)('%s: %j', async (name, options) => {
    await expectCode(() => model.generate('Q:', options as GenerateOptions), 'BAD_INPUT', name);
    if (name !== 'maxTokens') await expectCode(() => model.chat([{ role: 'user', content: 'x' }], options as GenerateOptions), 'BAD_INPUT', name);
  });

  it('a session of another model, a disposed session, bad prompts', async () => {
    const other = await loadModel();
    const s = other.createSession({ contextLength: 16 });
    await expectCode(() => model.generate('Q:', { session: s }), 'BAD_INPUT', 'session');
    const mine = model.createSession({ contextLength: 16 });
    mine.dispose();
    await expectCode(() => model.generate('Q:', { session: mine }), 'BAD_INPUT', 'session');
    await expectCode(() => model.generate([]), 'BAD_INPUT');
    await expectCode(() => model.generate([1, 999]), 'BAD_TOKEN');
    other.dispose();
  });

  it('a prompt longer than the session is CACHE_FULL, and the session is left as it was', async () => {
    const s = model.createSession({ contextLength: 8 });
    await expectCode(() => collect(model.generate('Q: this prompt is too long', { session: s })), 'CACHE_FULL');
    expect(s.position).toBe(0);
    expect((await collect(model.generate('Q:', { session: s, temperature: 0 }))).length).toBeGreaterThan(0);
    s.dispose();
  });

  it('a prompt past a prefill slice that does not fit: CACHE_FULL before anything runs, naming its length, the position and the capacity', async () => {
    const long = [256, ...Array(199).fill(65)];
    expect(long.length).toBeGreaterThan(PROMPT_SLICE); // the first slice would fit
    const s = model.createSession();
    expect(s.capacity).toBe(192);
    await expectCode(() => collect(model.generate(long, { session: s, maxNewTokens: 3 })), 'CACHE_FULL',
      'the prompt\'s 200 tokens do not fit at position 0 of the session: it holds 192 positions');
    expect(s.position).toBe(0);
    // With tokens already held: position and history unchanged, and the session goes on.
    const first = await collect(model.generate('Q:', { session: s, temperature: 0, maxNewTokens: 2 }));
    const at = s.position;
    const fits = 192 - at;
    await expectCode(() => collect(model.generate(Array(fits).fill(65), { session: s, maxNewTokens: 3 })), 'CACHE_FULL',
      `the prompt's ${fits} tokens (after 1 sampled token not yet run) do not fit at position ${at} of the session: it holds 192 positions`);
    expect(s.position).toBe(at);
    const alone = model.createSession();
    const again = await collect(model.generate('Q:', { session: alone, temperature: 0, maxNewTokens: 2 }));
    expect(again.map((p) => p.id)).toEqual(first.map((p) => p.id));
    // The sampled token still waits to run: both sessions continue alike.
    const next = await collect(model.generate([65], { session: s, temperature: 0, maxNewTokens: 3 }));
    expect(next.map((p) => p.id)).toEqual((await collect(model.generate([65], { session: alone, temperature: 0, maxNewTokens: 3 }))).map((p) => p.id));
    expect(s.position).toBe(alone.position);
    // Without a session: a prompt past the model's context.
    await expectCode(() => collect(model.generate(Array(193).fill(65))), 'CACHE_FULL',
      'the prompt\'s 193 tokens do not fit at position 0 of the model\'s context: it holds 192 positions');
    s.dispose();
    alone.dispose();
  });
});

describe('one stream at a time per session (BUSY)', () => {
  const prompt = 'Q: What is the answer?\nA:';
  const opts = { temperature: 0, maxNewTokens: 30 };

  it('two streams at once on one session: the second gets BUSY, the first is right, the session works afterwards', async () => {
    const want = await collect(model.generate(prompt, opts));
    const session = model.createSession({ contextLength: 128 });
    const a = model.generate(prompt, { ...opts, session });
    const b = model.generate('Q: Why?\nA:', { ...opts, session });
    const [ra, rb] = await Promise.allSettled([collect(a), collect(b)]);
    expect(rb.status).toBe('rejected');
    expect((rb as PromiseRejectedResult).reason).toBeInstanceOf(MlaError);
    expect((rb as PromiseRejectedResult).reason.code).toBe('BUSY');
    expect(ra.status).toBe('fulfilled');
    expect((ra as PromiseFulfilledResult<GenerationPiece[]>).value).toEqual(want);
    expect(session.busy).toBe(false);
    // Afterwards the session goes on: the same text again after a reset, as on a fresh session.
    session.reset();
    expect(await collect(model.generate(prompt, { ...opts, session }))).toEqual(want);
    session.dispose();
  });

  it('while a stream runs: generate, chat, prefill, step, reset and truncate on its session throw BUSY; break releases it', async () => {
    const want = await collect(model.generate(prompt, opts));
    const session = model.createSession({ contextLength: 128 });
    const got: GenerationPiece[] = [];
    for await (const p of model.generate(prompt, { ...opts, session })) {
      got.push(p);
      if (got.length !== 3) continue;
      expect(session.busy).toBe(true);
      const at = session.position;
      await expectCode(() => model.generate('x', { session }), 'BUSY');
      await expectCode(() => model.chat([{ role: 'user', content: 'hi' }], { session }), 'BUSY');
      await expectCode(() => session.prefill([65]), 'BUSY');
      await expectCode(() => session.step(65), 'BUSY');
      await expectCode(() => session.reset(), 'BUSY');
      await expectCode(() => session.truncate(0), 'BUSY');
      expect(session.position).toBe(at);
      // Other sessions of the model are not held.
      model.createSession({ contextLength: 8 }).prefill([65]);
    }
    expect(got).toEqual(want);
    // Leaving a stream early (for-await break calls return()) lets go of the session too.
    for await (const _ of model.generate(prompt, { ...opts, session })) break;
    expect(session.busy).toBe(false);
    session.prefill([65]);
    session.dispose();
  });
});

describe('chat keeps a conversation inside the context', () => {
  it('the built-in model\'s context is the 192 positions it was trained on', () => {
    expect(model.config.maxPositions).toBe(192);
  });

  it('drops the oldest turns (never the system message) so the prompt leaves room for the answer, and says how many', async () => {
    const opts = { temperature: 0, maxNewTokens: 60 };
    const session = model.createSession();
    expect(session.capacity).toBe(192);
    const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }];
    for (let i = 0; i < 4; i++) {
      messages.push({ role: 'user', content: `Question number ${i}: what is the meaning of it all?` },
        { role: 'assistant', content: `Answer number ${i}: nobody knows, and nobody will.` });
    }
    messages.push({ role: 'user', content: 'And why?' });
    expect(model.tokenizer!.encodeChat(messages, { addGenerationPrompt: true }).length).toBeGreaterThan(192);
    const g = model.chat(messages, { ...opts, session });
    const answer = await collect(g);
    const dropped = g.stats.droppedMessages;
    expect(dropped).toBeGreaterThan(0);
    const kept = [messages[0], ...messages.slice(1 + dropped)];
    // No more than needed: with the turn before them, the prompt would leave no room for 60 tokens.
    const oneMore = [messages[0], ...messages.slice(1 + dropped - 2)];
    expect(model.tokenizer!.encodeChat(oneMore, { addGenerationPrompt: true }).length + opts.maxNewTokens).toBeGreaterThan(192);
    expect(kept[1].role).toBe('user');
    const keptIds = model.tokenizer!.encodeChat(kept, { addGenerationPrompt: true });
    expect(keptIds.length + opts.maxNewTokens).toBeLessThanOrEqual(192);
    expect(g.stats.promptTokens).toBe(keptIds.length);
    // The same answer as chatting over just the kept messages.
    expect(answer).toEqual(await collect(model.chat(kept, opts)));
    // A conversation that fits loses nothing.
    const short = model.chat(messages.slice(-1), opts);
    await collect(short);
    expect(short.stats.droppedMessages).toBe(0);
    session.dispose();
  });

  it('a last message that alone exceeds the context: CACHE_FULL saying so, the session unchanged', async () => {
    const session = model.createSession({ contextLength: 64 });
    session.prefill([256, 65]);
    await expectCode(() => model.chat([{ role: 'user', content: 'x'.repeat(100) }], { session }), 'CACHE_FULL', 'the last message takes 107 tokens, more than the 64 positions of the session');
    expect(session.position).toBe(2);
    // Past a prefill slice too: refused whole, before any slice runs.
    const wide = model.createSession();
    wide.prefill([256, 65]);
    await expectCode(() => model.chat([{ role: 'user', content: 'x'.repeat(300) }], { session: wide }), 'CACHE_FULL', 'the last message takes 307 tokens, more than the 192 positions of the session');
    expect(wide.position).toBe(2);
    wide.dispose();
    session.dispose();
  });
});
