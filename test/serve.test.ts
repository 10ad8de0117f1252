// The OpenAI-compatible server (src/serve) on 127.0.0.1, driven by the official `openai` client as
// a user would: completions and chat, streamed and not, stop strings, seeds, log-probabilities;
// then every kind of bad request, each a typed OpenAI-style error with its 4xx status while the
// server keeps answering; concurrent streams are decoded together, one stepBatch a token; a client
// that hangs up mid-stream frees its session; a full server says 429.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, loadModel, type GenerateOptions, type Model, type Server } from '../src/index.js';
import { listen, type Listening } from '../src/serve/node.js';
import { parseRequest } from '../src/serve/requests.js';
import { ResponseShaper, responseJson, usageOf } from '../src/serve/responses.js';
import { makeRandomCheckpoint, tinyLlamaConfig } from './reference/model.js';

const KEY = 'test-key';
const PROMPT = 'Q: What is the meaning of life?\nA:';
let model: Model;
let server: Server;
let http: Listening;
let base: string;
let client: OpenAI;
/** WebAssembly memory in use with no session alive. */
let idleBytes: number;

beforeAll(async () => {
  model = await loadModel();
  idleBytes = model.memoryBytes;
  server = createServer(model, { modelId: 'fortune-mla', apiKey: KEY, maxSessions: 2, maxQueued: 2, maxBodyBytes: 64 * 1024 });
  http = await listen(server, { port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${http.port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await http?.close();
  model?.dispose();
});

/** What the library itself gives for the same request (OpenAI's defaults: temperature 1, top-p 1, no top-k). */
async function lone(prompt: string | number[], o: GenerateOptions): Promise<{ text: string; ids: number[]; logprobs: number[] }> {
  const out = { text: '', ids: [] as number[], logprobs: [] as number[] };
  for await (const p of model.generate(prompt, { temperature: 1, topP: 1, topK: 0, ...o })) {
    out.text += p.text;
    out.ids.push(p.id);
    if (p.logprob !== undefined) out.logprobs.push(p.logprob);
  }
  return out;
}

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('serve: the openai client against the server', () => {
  it('lists the model; /health answers without the key', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['fortune-mla']);
    const health = await (await fetch(`${base}/health`)).json();
    expect(health).toMatchObject({ status: 'ok', model: 'fortune-mla', active: 0, queued: 0, max_sessions: 2 });
  });

  it('a completion: the text and usage a lone generate() gives, finish_reason length', async () => {
    const r = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 24, temperature: 0 });
    const ref = await lone(PROMPT, { temperature: 0, maxNewTokens: 24 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe(ref.text);
    expect(r.choices[0].finish_reason).toBe(ref.ids.length === 24 ? 'length' : 'stop');
    expect(r.usage).toEqual({ prompt_tokens: model.tokenizer!.encode(PROMPT).length, completion_tokens: ref.ids.length,
      total_tokens: model.tokenizer!.encode(PROMPT).length + ref.ids.length });
  });

  it('a seed gives the same sampled text every time, and the same as the library', async () => {
    const ask = () => client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 30, temperature: 0.9, seed: 11 });
    const [a, b] = await Promise.all([ask(), ask()]);
    expect(a.choices[0].text).toBe(b.choices[0].text);
    expect(a.choices[0].text).toBe((await lone(PROMPT, { temperature: 0.9, seed: 11, maxNewTokens: 30 })).text);
  });

  it('presence and frequency penalties and logit_bias reach the sampler: the text the library gives with them', async () => {
    const bias = { [model.tokenizer!.encode(' the')[0]]: -100, 32: 2.5 };
    const r = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 30, temperature: 0.8, seed: 4,
      presence_penalty: 1.2, frequency_penalty: 0.6, logit_bias: bias });
    const ref = await lone(PROMPT, { temperature: 0.8, seed: 4, maxNewTokens: 30, presencePenalty: 1.2, frequencyPenalty: 0.6, logitBias: bias });
    expect(r.choices[0].text).toBe(ref.text);
    expect(r.choices[0].text).not.toBe((await lone(PROMPT, { temperature: 0.8, seed: 4, maxNewTokens: 30 })).text);
  });

  it('two streams at once are decoded together, one stepBatch a token for both, each with its lone text', async () => {
    const spy = vi.spyOn(model, 'stepBatch');
    try {
      const stream = async (seed: number) => {
        let t = '';
        const s = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 30, temperature: 0.9, seed, stream: true });
        for await (const ch of s) t += ch.choices[0]?.text ?? '';
        return t;
      };
      const [a, b] = await Promise.all([stream(21), stream(22)]);
      expect(a).toBe((await lone(PROMPT, { temperature: 0.9, seed: 21, maxNewTokens: 30 })).text);
      expect(b).toBe((await lone(PROMPT, { temperature: 0.9, seed: 22, maxNewTokens: 30 })).text);
      // lone() runs one session and never batches: every call was the server's, with both streams in it.
      expect(spy.mock.calls.length).toBeGreaterThan(3);
      for (const [steps] of spy.mock.calls) expect(steps).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('a streamed chat: the role first, then text equal to the whole answer, finish_reason last, usage on request', async () => {
    const messages = [{ role: 'user' as const, content: 'Why is the sky blue?' }];
    const whole = await client.chat.completions.create({ model: 'fortune-mla', messages, max_tokens: 40, temperature: 0 });
    const stream = await client.chat.completions.create({ model: 'fortune-mla', messages, max_tokens: 40, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const ch of stream) chunks.push(ch);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((ch) => ch.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0].message.content);
    let ref = '';
    for await (const p of model.chat(messages, { temperature: 0, maxNewTokens: 40 })) ref += p.text;
    expect(text).toBe(ref);
    const finishes = chunks.filter((ch) => ch.choices[0]?.finish_reason);
    expect(finishes).toHaveLength(1);
    expect(finishes[0].choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    expect(chunks[chunks.length - 1].choices).toEqual([]);
    expect(chunks[chunks.length - 1].usage).toEqual(whole.usage);
    expect(new Set(chunks.map((ch) => ch.id)).size).toBe(1);
  });

  it('stop: the text ends before the stop string, finish_reason stop', async () => {
    const free = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 60, temperature: 0 });
    const text = free.choices[0].text;
    const cut = text.indexOf(' ', 3);
    expect(cut).toBeGreaterThan(0); // the greedy answer has a space to stop at
    const r = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 60, temperature: 0, stop: [' '] });
    expect(r.choices[0].text).toBe(text.slice(0, text.indexOf(' ')));
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  it('logprobs: completions and chat carry the library\'s log-probabilities and the top alternatives', async () => {
    const r = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3 });
    const ref = await lone(PROMPT, { temperature: 0, maxNewTokens: 8, logprobs: 3 });
    const lp = r.choices[0].logprobs!;
    // The same prompt ran before, so the prefix cache served its rows and only the last token ran
    // again, on the one-token path: equal to float rounding, not bit for bit.
    expect(lp.token_logprobs).toHaveLength(ref.logprobs.length);
    lp.token_logprobs!.forEach((x, i) => expect(Math.abs(x - ref.logprobs[i])).toBeLessThan(1e-5));
    expect(lp.tokens).toEqual(ref.ids.map((id) => model.tokenizer!.decode([id])));
    for (const [i, top] of lp.top_logprobs!.entries()) {
      const entries = Object.entries(top);
      expect(entries.length).toBeGreaterThanOrEqual(1);
      expect(entries.length).toBeLessThanOrEqual(3);
      expect(Math.max(...entries.map(([, v]) => v))).toBe(lp.token_logprobs![i]); // greedy took the likeliest
    }
    expect(lp.text_offset![0]).toBe(0);

    const stream = await client.chat.completions.create({
      model: 'fortune-mla', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2, stream: true,
    });
    const content: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] = [];
    for await (const ch of stream) content.push(...(ch.choices[0]?.logprobs?.content ?? []));
    expect(content).toHaveLength(6);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(2);
      expect(t.top_logprobs[0]).toEqual({ token: t.token, logprob: t.logprob, bytes: t.bytes });
      expect(t.top_logprobs[0].logprob).toBeGreaterThanOrEqual(t.top_logprobs[1].logprob);
    }
  });
});

const argmaxRow = (logits: Float32Array, t: number, V: number) => {
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[t * V + i] > logits[t * V + best]) best = i;
  return best;
};

describe('serve: several choices (prompt arrays, n) and echo', () => {
  it('prompt arrays and n: prompts × n choices in order, choice j of a prompt sampled with seed + j; streamed the same by index', async () => {
    const prompts = [PROMPT, 'Q: Why is the sky blue?\nA:'];
    const ask = { model: 'fortune-mla', prompt: prompts, n: 2, max_tokens: 12, temperature: 0.9, seed: 7 };
    const r = await client.completions.create(ask);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    const want = [];
    for (const p of prompts) for (const j of [0, 1]) want.push(await lone(p, { temperature: 0.9, seed: 7 + j, maxNewTokens: 12 }));
    expect(r.choices.map((c) => c.text)).toEqual(want.map((w) => w.text));
    expect(r.choices[0].text).not.toBe(r.choices[1].text);
    const promptTokens = prompts.reduce((a, p) => a + model.tokenizer!.encode(p).length, 0);
    const completionTokens = want.reduce((a, w) => a + w.ids.length, 0);
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens });
    const texts = ['', '', '', ''], finished = [0, 0, 0, 0];
    for await (const ch of await client.completions.create({ ...ask, stream: true })) {
      for (const c of ch.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finished[c.index]++;
      }
    }
    expect(texts).toEqual(want.map((w) => w.text));
    expect(finished).toEqual([1, 1, 1, 1]);
    // A chat with n: the same answers as two lone chats.
    const messages = [{ role: 'user' as const, content: 'Tell me a fortune.' }];
    const c = await client.chat.completions.create({ model: 'fortune-mla', messages, n: 2, max_tokens: 10, temperature: 1, seed: 3 });
    for (const j of [0, 1]) {
      let text = '';
      for await (const p of model.chat(messages, { temperature: 1, topP: 1, topK: 0, seed: 3 + j, maxNewTokens: 10 })) text += p.text;
      expect(c.choices[j].message.content).toBe(text);
    }
  });

  it('echo with max_tokens 0 and logprobs scores the prompt (as lm-evaluation-harness asks): the model\'s own log-probabilities', async () => {
    const ids = model.tokenizer!.encode(PROMPT);
    const r = await client.completions.create({ model: 'fortune-mla', prompt: [ids], max_tokens: 0, echo: true, logprobs: 2, temperature: 0 });
    const lp = r.choices[0].logprobs!;
    expect(r.choices[0].text).toBe(model.tokenizer!.decode(ids, { skipSpecialTokens: true }));
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
    expect(lp.tokens).toHaveLength(ids.length);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    // Against the whole prompt's logits from forward(), in float64.
    const logits = model.forward(ids), V = model.config.vocabSize;
    for (let t = 1; t < ids.length; t++) {
      const row = Array.from(logits.subarray((t - 1) * V, t * V), Number), m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      expect(Math.abs(lp.token_logprobs![t]! - (row[ids[t]] - lse))).toBeLessThan(1e-9);
      expect(Object.values(lp.top_logprobs![t]!)).toHaveLength(2);
    }
    // Offsets index the echoed text; with max_tokens, the completion follows the prompt.
    const text = r.choices[0].text;
    expect(lp.text_offset!.map((o, t) => text.slice(o, lp.text_offset![t + 1] ?? text.length)).join('')).toBe(text);
    const more = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 5, echo: true, logprobs: 0, temperature: 0 });
    const ref = await lone(PROMPT, { temperature: 0, maxNewTokens: 5, logprobs: 0 });
    expect(more.choices[0].text).toBe(PROMPT + ref.text);
    expect(more.choices[0].logprobs!.tokens).toHaveLength(ids.length + 5);
    // The prefix cache served the prompt's rows: equal to float rounding, as in the logprobs test above.
    more.choices[0].logprobs!.token_logprobs!.slice(ids.length).forEach((x, i) => expect(Math.abs(x! - ref.logprobs[i])).toBeLessThan(1e-5));
    expect(more.choices[0].logprobs!.token_logprobs!.slice(0, ids.length)).toEqual(lp.token_logprobs);
    // lm-evaluation-harness's loglikelihood request: the continuation's log-probability is the sum
    // of token_logprobs[ctxlen:-1], and it is greedy when each token is the top alternative.
    const ctxlen = 4;
    const harness = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fortune-mla', prompt: [ids], max_tokens: 1, logprobs: 1, echo: true, temperature: 0, seed: 1234 }),
    });
    const h = (await harness.json()).choices[0].logprobs;
    expect(h.token_logprobs).toHaveLength(ids.length + 1);
    const sum = h.token_logprobs.slice(ctxlen, -1).reduce((a: number, b: number) => a + b, 0);
    const want = lp.token_logprobs!.slice(ctxlen).reduce((a, b) => a! + b!, 0)!;
    expect(Math.abs(sum - want)).toBeLessThan(1e-9);
    const greedy = h.tokens.slice(ctxlen, -1).every((t: string, i: number) => {
      const top = h.top_logprobs[ctxlen + i] as Record<string, number>;
      return t === Object.keys(top).reduce((a, b) => (top[a] >= top[b] ? a : b));
    });
    expect(greedy).toBe(ids.slice(ctxlen).every((id, i) => id === argmaxRow(logits, ctxlen + i - 1, V)));
    // Streamed: the prompt comes first, then the completion.
    let streamed = '';
    for await (const ch of await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 5, echo: true, temperature: 0, stream: true })) {
      streamed += ch.choices[0]?.text ?? '';
    }
    expect(streamed).toBe(PROMPT + ref.text);
  });
});

describe('serve: the prefix cache', () => {
  it('a chat that goes on, and a prompt that extends an earlier one, restore the kept rows and run only what is new', async () => {
    const health = async () => (await (await fetch(`${base}/health`)).json()).prefix_cache;
    const before = await health();
    const turn1 = [{ role: 'user' as const, content: 'What is a prefix cache for?' }];
    const a = await client.chat.completions.create({ model: 'fortune-mla', messages: turn1, max_tokens: 20, temperature: 0 });
    const turn2 = [...turn1, { role: 'assistant' as const, content: a.choices[0].message.content! }, { role: 'user' as const, content: 'And why?' }];
    const b = await client.chat.completions.create({ model: 'fortune-mla', messages: turn2, max_tokens: 20, temperature: 0 });
    const after = await health();
    expect(after.hits).toBe(before.hits + 1);
    expect(after.entries).toBeGreaterThan(before.entries);
    expect(after.bytes).toBeLessThanOrEqual(after.budget);
    // Greedy text as a fresh run of the whole conversation gives it.
    let fresh = '';
    for await (const p of model.chat(turn2, { temperature: 0, maxNewTokens: 20 })) fresh += p.text;
    expect(b.choices[0].message.content).toBe(fresh);
    expect(b.usage!.prompt_tokens).toBe(model.tokenizer!.encodeChat(turn2, { addGenerationPrompt: true }).length);

    const c1 = await client.completions.create({ model: 'fortune-mla', prompt: 'Q: Why do cats purr?\nA:', max_tokens: 12, temperature: 0 });
    const longer = `Q: Why do cats purr?\nA:${c1.choices[0].text}\nQ: And dogs?\nA:`;
    const hits = (await health()).hits;
    const c2 = await client.completions.create({ model: 'fortune-mla', prompt: longer, max_tokens: 12, temperature: 0 });
    expect((await health()).hits).toBe(hits + 1);
    expect(c2.choices[0].text).toBe((await lone(longer, { temperature: 0, maxNewTokens: 12 })).text);
    expect(model.memoryBytes).toBe(idleBytes); // snapshots live outside the model's memory
  });
});

describe('serve: bad requests are OpenAI-style errors with a 4xx, and the server keeps working', () => {
  const raw = (path: string, body: string | object, headers: Record<string, string> = {}) => fetch(`${base}${path}`, {
    method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
  });
  async function expectError(res: Response, status: number, code: string | null, param?: string): Promise<void> {
    expect(res.status).toBe(status);
    const body = await res.json();
    expect(body.error, JSON.stringify(body)).toMatchObject({ code, type: expect.any(String), message: expect.any(String) });
    if (param !== undefined) expect(body.error.param).toBe(param);
  }
  const ok = { model: 'fortune-mla', prompt: 'Q: Hi\nA:', max_tokens: 4, temperature: 0 };

  it('each mistake gets its status and code, and a good request right after still works', async () => {
    // A stream in flight all along: the errors must not disturb it.
    const inFlight = client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 50, temperature: 0.7, seed: 3, stream: true });
    const cases: Array<[string, () => Promise<Response>, number, string | null, string?]> = [
      ['not JSON', () => raw('/v1/completions', '{"model": "fortune-mla", '), 400, 'invalid_json'],
      ['not an object', () => raw('/v1/completions', '[1, 2]'), 400, 'invalid_json'],
      ['a wrong type', () => raw('/v1/completions', { ...ok, temperature: 'hot' }), 400, 'invalid_value', 'temperature'],
      ['max_tokens 0', () => raw('/v1/completions', { ...ok, max_tokens: 0 }), 400, 'invalid_value', 'max_tokens'],
      ['max_tokens not an integer', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }], max_tokens: 2.5 }), 400, 'invalid_value', 'max_tokens'],
      ['no prompt', () => raw('/v1/completions', { model: 'fortune-mla' }), 400, 'missing_required_parameter', 'prompt'],
      ['no messages', () => raw('/v1/chat/completions', { model: 'fortune-mla' }), 400, 'missing_required_parameter', 'messages'],
      ['a bad message', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'robot', content: 'x' }] }), 400, 'invalid_value', 'messages[0].role'],
      ['an unknown field', () => raw('/v1/completions', { ...ok, temprature: 0.5 }), 400, 'unknown_parameter', 'temprature'],
      ['an unknown model', () => raw('/v1/completions', { ...ok, model: 'gpt-4' }), 404, 'model_not_found', 'model'],
      ['too many tokens', () => raw('/v1/completions', { ...ok, max_tokens: 500 }), 400, 'context_length_exceeded', 'max_tokens'],
      ['a prompt past the context', () => raw('/v1/completions', { ...ok, prompt: 'x'.repeat(400), max_tokens: undefined }), 400, 'context_length_exceeded', 'prompt'],
      ['presence_penalty past 2', () => raw('/v1/completions', { ...ok, presence_penalty: 2.5 }), 400, 'invalid_value', 'presence_penalty'],
      ['logit_bias not an object', () => raw('/v1/completions', { ...ok, logit_bias: [1] }), 400, 'invalid_value', 'logit_bias'],
      ['logit_bias past the vocabulary', () => raw('/v1/completions', { ...ok, logit_bias: { 100000: 1 } }), 400, 'invalid_value', 'logit_bias'],
      ['logit_bias past 100', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }], logit_bias: { 5: -101 } }), 400, 'invalid_value', 'logit_bias'],
      ['n 0', () => raw('/v1/completions', { ...ok, n: 0 }), 400, 'invalid_value', 'n'],
      ['more choices than sessions and queue', () => raw('/v1/completions', { ...ok, n: 5 }), 400, 'invalid_value', 'n'],
      ['a prompt array with a bad entry', () => raw('/v1/completions', { ...ok, prompt: ['a', 5] }), 400, 'invalid_value', 'prompt'],
      ['an empty prompt in an array', () => raw('/v1/completions', { ...ok, prompt: ['a', ''] }), 400, 'invalid_value', 'prompt'],
      ['max_tokens 0 without echo', () => raw('/v1/completions', { ...ok, max_tokens: 0 }), 400, 'invalid_value', 'max_tokens'],
      ['echo in a chat', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }], echo: true }), 400, 'unknown_parameter', 'echo'],
      ['logprobs past 20', () => raw('/v1/completions', { ...ok, logprobs: 21 }), 400, 'invalid_value', 'logprobs'],
      ['top_logprobs without logprobs', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }), 400, 'invalid_value', 'top_logprobs'],
      ['response_format json_schema', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }), 400, 'unsupported_value', 'response_format.type'],
      ['response_format of an unknown type', () => raw('/v1/completions', { ...ok, response_format: { type: 'xml' } }), 400, 'invalid_value', 'response_format.type'],
      ['response_format without a type', () => raw('/v1/completions', { ...ok, response_format: {} }), 400, 'missing_required_parameter', 'response_format.type'],
      ['response_format not an object', () => raw('/v1/chat/completions', { model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }], response_format: 'json' }), 400, 'invalid_value', 'response_format'],
      ['response_format with an unknown field', () => raw('/v1/completions', { ...ok, response_format: { type: 'json_object', schema: {} } }), 400, 'unknown_parameter', 'response_format.schema'],
      ['no API key', () => raw('/v1/completions', ok, { authorization: '' }), 401, 'invalid_api_key'],
      ['a wrong API key', () => raw('/v1/completions', ok, { authorization: 'Bearer nope' }), 401, 'invalid_api_key'],
      ['an oversized body', () => raw('/v1/completions', { ...ok, prompt: 'x'.repeat(70 * 1024) }), 413, 'request_too_large'],
      ['an unknown route', () => raw('/v1/embeddings', ok), 404, 'unknown_url'],
    ];
    for (const [what, send, status, code, param] of cases) {
      await expectError(await send(), status, code, param).catch((e) => { throw new Error(`${what}: ${(e as Error).message}`); });
      const good = await raw('/v1/completions', ok);
      expect(good.status, `after ${what}`).toBe(200);
    }
    let streamed = '';
    for await (const ch of await inFlight) streamed += ch.choices[0]?.text ?? '';
    expect(streamed).toBe((await lone(PROMPT, { temperature: 0.7, seed: 3, maxNewTokens: 50 })).text);
  });

  it('the openai client raises its typed errors for them', async () => {
    await expect(client.completions.create({ ...ok, model: 'nope' })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.completions.create({ ...ok, max_tokens: 0 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const schema = client.chat.completions.create({ model: 'fortune-mla', messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' } } } });
    await expect(schema).rejects.toMatchObject({ status: 400, code: 'unsupported_value', param: 'response_format.type', message: expect.stringContaining('json_schema') });
    const keyless = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(keyless.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

/**
 * A random model with the built-in model's tokenizer, big enough that a long answer takes a good
 * fraction of a second (the built-in one finishes 150 tokens in tens of milliseconds): long enough
 * to see requests running and waiting.
 */
async function slowModel(): Promise<Model> {
  const json = (name: string) => JSON.parse(readFileSync(new URL(`../models/fortune-mla/${name}`, import.meta.url), 'utf8'));
  const config = tinyLlamaConfig({
    vocab_size: 264, hidden_size: 512, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 64,
    intermediate_size: 2048, max_position_embeddings: 256, bos_token_id: 256, eos_token_id: 257,
  });
  return loadModel({ config, tensors: makeRandomCheckpoint(config, 5), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') } as Parameters<typeof loadModel>[0], { threads: 1 });
}

describe('serve: sessions', () => {
  let slow: Model;
  let slowServer: Server;
  let slowHttp: Listening;
  let slowClient: OpenAI;
  let slowIdle: number;
  beforeAll(async () => {
    slow = await slowModel();
    slowIdle = slow.memoryBytes;
    slowServer = createServer(slow, { maxSessions: 2, maxQueued: 2 });
    slowHttp = await listen(slowServer, { port: 0, host: '127.0.0.1' });
    slowClient = new OpenAI({ baseURL: `http://127.0.0.1:${slowHttp.port}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await slowHttp?.close();
    slow?.dispose();
  });
  const long = (seed: number, signal?: AbortSignal) => slowClient.completions.create(
    { model: 'mla-wasm', prompt: PROMPT, max_tokens: 100, temperature: 0.8, seed, stream: true }, { signal });

  it('a client that disconnects mid-stream stops its generation and frees its session', async () => {
    const abort = new AbortController();
    const stream = await long(1, abort.signal);
    let n = 0;
    for await (const _ of stream) {
      if (++n < 3) continue;
      abort.abort(); // hang up after three chunks
      break;
    }
    expect(slowServer.active).toBe(1); // 100 tokens take far longer than three
    await waitFor('the generation to stop', () => slowServer.active === 0);
    expect(slow.memoryBytes).toBe(slowIdle);
    const after = await slowClient.completions.create({ model: 'mla-wasm', prompt: PROMPT, max_tokens: 5, temperature: 0 });
    expect(after.choices[0].text.length).toBeGreaterThan(0);
  });

  it('past the sessions and the queue, a request is 429; queued ones run when a slot frees, with the text a lone request gets', async () => {
    const texts = (seed: number) => long(seed).then(async (s) => {
      let t = '';
      for await (const ch of s) t += ch.choices[0]?.text ?? '';
      return t;
    });
    const four = [texts(1), texts(2), texts(1), texts(2)];
    await waitFor('two running and two queued', () => slowServer.active === 2 && slowServer.queued === 2);
    const refused = slowClient.completions.create({ model: 'mla-wasm', prompt: PROMPT, max_tokens: 5 });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    await expect(refused).rejects.toMatchObject({ status: 429, code: 'busy' });
    const raw = await fetch(`http://127.0.0.1:${slowHttp.port}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'mla-wasm', prompt: PROMPT, max_tokens: 5 }) });
    expect([raw.status, raw.headers.get('retry-after')]).toEqual([429, '1']);
    const spy = vi.spyOn(slow, 'stepBatch');
    const got = await Promise.all(four);
    const batches = spy.mock.calls.map(([steps]) => steps.length);
    spy.mockRestore();
    // Two at a time, stepped together: the 4 × 99 decode steps in about 2 × 99 batches of two.
    expect(batches.every((n) => n === 2)).toBe(true);
    expect(batches.length).toBeGreaterThan(150);
    const lone = async (seed: number) => {
      let t = '';
      for await (const p of slow.generate(PROMPT, { temperature: 0.8, topP: 1, topK: 0, seed, maxNewTokens: 100 })) t += p.text;
      return t;
    };
    const [one, two] = [await lone(1), await lone(2)];
    expect(got).toEqual([one, two, one, two]);
    expect(slowServer.active + slowServer.queued).toBe(0);
    expect(slow.memoryBytes).toBe(slowIdle);
  }, 60_000);
});

describe('serve: request defaults', () => {
  it('a chat without max_tokens may fill the context up to 4096 positions, not a long-context model\'s whole window', async () => {
    const json = (name: string) => JSON.parse(readFileSync(new URL(`../models/fortune-mla/${name}`, import.meta.url), 'utf8'));
    const config = tinyLlamaConfig({ vocab_size: 264, max_position_embeddings: 131072, bos_token_id: 256, eos_token_id: 257 });
    const model = await loadModel({ config, tensors: makeRandomCheckpoint(config, 5), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') } as Parameters<typeof loadModel>[0], { threads: 1 });
    try {
      const body = { model: 'm', messages: [{ role: 'user', content: 'Hi' }] };
      const r = parseRequest('chat', body, model, 'm');
      expect(r.prompts[0].length + r.options.maxNewTokens).toBe(4096);
      // max_tokens named: up to the model's own context.
      expect(parseRequest('chat', { ...body, max_tokens: 100_000 }, model, 'm').options.maxNewTokens).toBe(100_000);
      // A prompt past 4096 still gets room to answer.
      const long = parseRequest('completion', { model: 'm', prompt: Array(5000).fill(65) }, model, 'm');
      expect(long.options.maxNewTokens).toBe(16);
      const chatLong = parseRequest('chat', { model: 'm', messages: [{ role: 'user', content: 'a'.repeat(5000) }] }, model, 'm');
      expect(chatLong.options.maxNewTokens).toBe(16);
    } finally {
      model.dispose();
    }
  });
});

describe('serve: a narrow KV cache', () => {
  it('cache: every session keeps its cache in that format, with the text model.generate gives with it; bad formats refused', async () => {
    const narrow = createServer(model, { modelId: 'fortune-mla', cache: 'int4' });
    const ask = (prompt: string) => narrow.fetch(new Request('http://x/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fortune-mla', prompt, max_tokens: 20, temperature: 0, logprobs: 1 }),
    })).then((r) => r.json());
    const r = await ask(PROMPT);
    const f32 = await lone(PROMPT, { maxNewTokens: 20, temperature: 0, logprobs: 1 });
    const int4 = await lone(PROMPT, { maxNewTokens: 20, temperature: 0, logprobs: 1, cache: 'int4' });
    expect(int4.logprobs).not.toEqual(f32.logprobs); // so that the check below tells the formats apart
    expect(r.choices[0].text).toBe(int4.text);
    expect(r.choices[0].logprobs.token_logprobs).toEqual(int4.logprobs);
    await narrow.close();
    expect(() => createServer(model, { cache: 'int9' as never })).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });
});

describe('serve: browsers on other origins (CORS)', () => {
  it('a preflight is answered without the key; answers carry Access-Control-Allow-Origin', async () => {
    const pre = await fetch(`${base}/v1/chat/completions`, {
      method: 'OPTIONS', headers: { origin: 'http://page.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    const res = await fetch(`${base}/v1/models`, { headers: { origin: 'http://page.example', authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    // The key is still needed for the request itself; X-Api-Key carries it too, as for llama.cpp's server.
    expect((await fetch(`${base}/v1/models`, { headers: { origin: 'http://page.example' } })).status).toBe(401);
    expect((await fetch(`${base}/v1/models`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await fetch(`${base}/v1/models`, { headers: { 'x-api-key': 'nope' } })).status).toBe(401);
  });
});

describe('serve: completions\' alternatives keep their order', () => {
  it('most likely first, even when a token\'s text is integer-like ("0"), which a JavaScript object would list first', async () => {
    const tok = model.tokenizer!;
    const [zero, a, seven] = tok.encode('0A7', { addSpecialTokens: false });
    const pieces = [{ id: a, text: 'A', logprob: -0.1, topLogprobs: [{ id: a, logprob: -0.1 }, { id: zero, logprob: -2 }, { id: seven, logprob: -3 }] }];
    const body = new ResponseShaper('completion', 'm', tok, 3).complete([{ pieces, reason: 'length' }], usageOf(1, 1));
    const text = responseJson(body);
    expect(text).toContain('"top_logprobs":[{"A":-0.1,"0":-2,"7":-3}]');
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(body))); // the same values as JSON.stringify's
    // Through the server too: the alternatives as the library ranks them.
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fortune-mla', prompt: 'Count: 1, 2, 3,', max_tokens: 4, logprobs: 5, temperature: 0 }),
    });
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    // Read from the text: JSON.parse would put integer-like keys first again.
    const raw = await r.text();
    const region = raw.slice(raw.indexOf('"top_logprobs":['), raw.indexOf('"text_offset"'));
    const objects = [...region.matchAll(/\{((?:"(?:[^"\\]|\\.)*":-?[0-9.e+-]+,?)*)\}/g)];
    expect(objects).toHaveLength(4);
    for (const [, members] of objects) {
      const values = [...members.matchAll(/"(?:[^"\\]|\\.)*":(-?[0-9.e+-]+)/g)].map((m) => Number(m[1]));
      expect(values.length).toBeGreaterThanOrEqual(1);
      expect(values).toEqual([...values].sort((x, y) => y - x));
    }
  });
});

describe('serve: log-probabilities of tokens that are part of a character', () => {
  it('bytes are the token\'s own; such tokens are named bytes:\\xNN and keep apart among the alternatives', () => {
    const tok = model.tokenizer!;
    const [c3, a9] = tok.encode('é', { addSpecialTokens: false });
    const pieces = [{ id: c3, text: '', logprob: -0.5, topLogprobs: [{ id: c3, logprob: -0.5 }, { id: a9, logprob: -1.5 }, { id: 65, logprob: -2 }] }];
    const choice = { pieces, reason: 'length' as const }, usage = usageOf(1, 1);
    const chat = new ResponseShaper('chat', 'm', tok, 3).complete([choice], usage) as { choices: { logprobs: { content: { token: string; bytes: number[]; top_logprobs: { token: string; bytes: number[] }[] }[] } }[] };
    const entry = chat.choices[0].logprobs.content[0];
    expect([entry.token, entry.bytes]).toEqual(['bytes:\\xc3', [0xc3]]);
    expect(entry.top_logprobs.map((t) => [t.token, t.bytes])).toEqual([['bytes:\\xc3', [0xc3]], ['bytes:\\xa9', [0xa9]], [tok.decode([65]), [tok.tokenBytes(65)[0]]]]);
    const completion = JSON.parse(responseJson(new ResponseShaper('completion', 'm', tok, 3).complete([choice], usage))) as { choices: { logprobs: { tokens: string[]; top_logprobs: Record<string, number>[] } }[] };
    expect(completion.choices[0].logprobs.tokens).toEqual(['bytes:\\xc3']);
    expect(Object.keys(completion.choices[0].logprobs.top_logprobs[0])).toHaveLength(3);
  });
});
