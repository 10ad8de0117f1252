// Load test of the OpenAI-compatible server, on 127.0.0.1 only, bounded in count and time:
// N concurrent streaming completions (the openai client), every 8th hung up after 5 chunks.
// Reports aggregate tokens/s, p50/p99 time to first token and per-token latency, memory before
// and after, and how the decode steps were batched (stepBatch calls and their mean size); and
// checks that nothing is lost: every request not hung up gets its whole completion,
// the same text a lone request with its seed gets, and every session is freed.
//   node scripts/run-ts.mjs bench/serve-load.ts [--requests 64] [--max-sessions 8] [--tokens 64] [--prefix-cache-mib 128] [--model DIR]
import { loadavg } from 'node:os';
import OpenAI from 'openai';
import { createServer, listen, loadModel } from '../src/internal.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const REQUESTS = Number(arg('requests', '64'));
const SESSIONS = Number(arg('max-sessions', '8'));
const TOKENS = Number(arg('tokens', '64'));
const MODEL = arg('model', '');
const PREFIX_MIB = Number(arg('prefix-cache-mib', '128'));
const HANG_UP_EVERY = 8;
const DEADLINE_MS = 300_000;
const PROMPT = 'Q: What is the meaning of life?\nA:';

const model = await loadModel(MODEL || undefined, { threads: 1 });
// Seen from outside: how many stepBatch calls the server made, over how many sessions in all.
let batches = 0, batchedSteps = 0;
const stepBatch = model.stepBatch.bind(model);
model.stepBatch = (steps) => {
  batches++;
  batchedSteps += steps.length;
  return stepBatch(steps);
};
const server = createServer(model, { maxSessions: SESSIONS, maxQueued: REQUESTS, prefixCacheBytes: PREFIX_MIB * 2 ** 20 });
const http = await listen(server, { port: 0, host: '127.0.0.1' });
const client = new OpenAI({ baseURL: `http://127.0.0.1:${http.port}/v1`, apiKey: 'unused', maxRetries: 0, timeout: DEADLINE_MS });
const wasmBefore = model.memoryBytes, rssBefore = process.memoryUsage().rss;

interface Outcome { seed: number; text: string; chunks: number; ttft: number; gaps: number[]; hungUp: boolean; finish: string | null }

async function one(i: number): Promise<Outcome> {
  const seed = i % 4, hangUp = i % HANG_UP_EVERY === HANG_UP_EVERY - 1;
  const abort = new AbortController();
  const t0 = performance.now();
  const stream = await client.completions.create(
    { model: 'mla-wasm', prompt: PROMPT, max_tokens: TOKENS, temperature: 0.8, seed, stream: true }, { signal: abort.signal });
  const out: Outcome = { seed, text: '', chunks: 0, ttft: 0, gaps: [], hungUp: hangUp, finish: null };
  let last = t0;
  for await (const ch of stream) {
    const now = performance.now();
    if (ch.choices[0]?.finish_reason) { out.finish = ch.choices[0].finish_reason; continue; }
    if (out.chunks === 0) out.ttft = now - t0; else out.gaps.push(now - last);
    last = now;
    out.text += ch.choices[0]?.text ?? '';
    if (++out.chunks === 5 && hangUp) { abort.abort(); break; }
  }
  return out;
}

const deadline = setTimeout(() => { console.error(`serve-load: not done in ${DEADLINE_MS / 1000} s, stopping`); process.exit(2); }, DEADLINE_MS);
const start = performance.now();
const outcomes = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => one(i)));
const wall = performance.now() - start;
while (server.active + server.queued > 0) await new Promise((r) => setTimeout(r, 10));
const wasmAfter = model.memoryBytes, rssAfter = process.memoryUsage().rss;

// Nothing lost: each finished request's text is what a lone request with its seed gets.
const lone = new Map<number, string>();
for (const seed of new Set(outcomes.map((o) => o.seed))) {
  let t = '';
  for await (const p of model.generate(PROMPT, { temperature: 0.8, topP: 1, topK: 0, seed, maxNewTokens: TOKENS })) t += p.text;
  lone.set(seed, t);
}
const finished = outcomes.filter((o) => !o.hungUp);
const wrong = finished.filter((o) => o.text !== lone.get(o.seed) || o.finish === null);
await http.close();
clearTimeout(deadline);

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const chunks = outcomes.reduce((a, o) => a + o.chunks, 0);
const gaps = outcomes.flatMap((o) => o.gaps), ttfts = outcomes.map((o) => o.ttft);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const lines = [
  `| requests | hung up | max sessions | prefix cache | tokens each | wall | chunks/s (all streams) | TTFT p50 / p99 | per-token p50 / p99 | ` +
  `stepBatch calls, mean size | wasm memory before → after | RSS before → after | complete and equal to a lone run | load average |`,
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  `| ${REQUESTS} | ${outcomes.length - finished.length} | ${SESSIONS} | ${PREFIX_MIB} MiB | ${TOKENS} | ${(wall / 1000).toFixed(2)} s | ${(chunks / (wall / 1000)).toFixed(0)} | ` +
  `${pct(ttfts, 0.5).toFixed(0)} / ${pct(ttfts, 0.99).toFixed(0)} ms | ${pct(gaps, 0.5).toFixed(1)} / ${pct(gaps, 0.99).toFixed(1)} ms | ` +
  `${batches}, ${batches ? (batchedSteps / batches).toFixed(1) : '—'} | ` +
  `${mib(wasmBefore)} → ${mib(wasmAfter)} | ${mib(rssBefore)} → ${mib(rssAfter)} | ${finished.length - wrong.length} / ${finished.length} | ${loadavg()[0].toFixed(1)} |`,
];
console.log(lines.join('\n'));
model.dispose();
if (wrong.length || wasmAfter !== wasmBefore) {
  console.error(`serve-load: ${wrong.length} request(s) lost or wrong; wasm memory ${wasmBefore} → ${wasmAfter}`);
  process.exit(1);
}
