// The OpenAI-compatible server as one fetch handler, `(Request) => Promise<Response>`, built on
// Hono: Node (through node.ts), Deno.serve, Bun.serve and edge platforms all run it as it is.
//   POST /v1/completions, POST /v1/chat/completions   (stream: true → server-sent events)
//   GET  /v1/models, /v1/models/:id, /health
// Bodies are checked before anything runs (requests.ts); generations go through the scheduler;
// every failure is an OpenAI-style error body with its status, and touches only its own request.
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { streamSSE } from 'hono/streaming';
import { checkOptions, MlaError, showValue } from '../errors.js';
import { chat, generate, type Generation, type GenerationPiece, type Stepper, type StopReason } from '../generate/generate.js';
import { scorePrompt } from '../generate/score.js';
import type { Model } from '../generate/model.js';
import type { CacheFormat } from '../model/kv-cache.js';
import { ApiError, badParam, toApiError } from './api-error.js';
import { PrefixCache } from './prefix-cache.js';
import { parseJson, parseRequest, type ParsedRequest, type RequestKind } from './requests.js';
import { promptTokensOf, ResponseShaper, responseJson, usageOf, type Choice } from './responses.js';
import { Scheduler, type Job } from './scheduler.js';

export interface ServerOptions {
  /** The model's name: what /v1/models lists and what requests must give as `model` (default 'mla-wasm'). */
  modelId?: string;
  /** When set, /v1/ requests need `Authorization: Bearer <apiKey>` (else 401). /health stays open. */
  apiKey?: string;
  /** Generations running at once, each with its own KV cache (default 4). */
  maxSessions?: number;
  /** Requests that wait for a running one to end; past that, 429 (default 4 × maxSessions). */
  maxQueued?: number;
  /** The largest request body taken, in bytes; larger is 413 (default 1 MiB). */
  maxBodyBytes?: number;
  /**
   * Bytes of finished conversations' snapshots kept, so that a request extending one runs only
   * what is new (default 128 MiB; 0 = none). Kept outside the model's memory, least recently used dropped first.
   */
  prefixCacheBytes?: number;
  /** Every session's KV cache format (default 'f32'; bf16, int8, int4 for MLA models). */
  cache?: CacheFormat;
}

export interface Server {
  /** Answer one HTTP request: hand it to Deno.serve, Bun.serve, a worker's fetch, or serveNode(). */
  fetch: (request: Request) => Promise<Response>;
  /** Generations running now, and requests waiting. */
  readonly active: number;
  readonly queued: number;
  /** Stop every generation (their streams end) and refuse new ones. The model is not disposed. */
  close(): Promise<void>;
}

const OPTIONS = Object.keys({ modelId: 1, apiKey: 1, maxSessions: 1, maxQueued: 1, maxBodyBytes: 1, prefixCacheBytes: 1, cache: 1 } satisfies Record<keyof ServerOptions, 1>);

/** An OpenAI-compatible server over `model` (which needs a tokenizer). */
export function createServer(model: Model, options: ServerOptions = {}): Server {
  checkOptions(options, OPTIONS, 'createServer() options');
  const int = (name: keyof ServerOptions, fallback: number, min: number): number => {
    const v = options[name] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) < min) throw new MlaError('BAD_INPUT', `option ${name} must be an integer ≥ ${min}, got ${showValue(v)}`);
    return v as number;
  };
  const str = (name: 'modelId' | 'apiKey'): string | undefined => {
    const v = options[name];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0)) throw new MlaError('BAD_INPUT', `option ${name} must be a non-empty string, got ${showValue(v)}`);
    return v;
  };
  const modelId = str('modelId') ?? 'mla-wasm';
  const apiKey = str('apiKey');
  const maxSessions = int('maxSessions', 4, 1);
  const maxQueued = int('maxQueued', 4 * maxSessions, 0);
  const maxBodyBytes = int('maxBodyBytes', 1 << 20, 1);
  const prefixCacheBytes = int('prefixCacheBytes', 128 << 20, 0);
  const prefix = prefixCacheBytes > 0 ? new PrefixCache(prefixCacheBytes) : null;
  const cache = options.cache ?? 'f32';
  model.cacheBytesPerToken(cache); // BAD_INPUT for a format unknown or one the model cannot keep
  const tok = model.tokenizer;
  if (!tok) throw new MlaError('BAD_INPUT', 'createServer: this model has no tokenizer (tokenizer.json), and the API speaks text');

  const scheduler = new Scheduler({ maxActive: maxSessions, maxQueued, stepBatch: (steps) => model.stepBatch(steps) });
  const created = Math.floor(Date.now() / 1000);
  const modelCard = { id: modelId, object: 'model', created, owned_by: 'mla-wasm' };
  const app = new Hono();

  app.onError((e, c) => {
    const api = toApiError(e);
    // A full server: when to try again (the openai client honours Retry-After).
    if (api.status === 429) c.header('Retry-After', '1');
    return c.json(api.body, api.status as 400);
  });
  app.notFound((c) => {
    const api = new ApiError(404, `no route ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found_error', null, 'unknown_url');
    return c.json(api.body, 404);
  });

  app.get('/health', (c) => c.json({
    status: 'ok', model: modelId, active: scheduler.active, queued: scheduler.queued, max_sessions: maxSessions,
    prefix_cache: prefix && { entries: prefix.size, bytes: prefix.bytes, budget: prefix.budgetBytes, hits: prefix.hits, misses: prefix.misses },
  }));

  // Browser pages on any origin may call it, as llama.cpp's server and vLLM allow by default; a
  // preflight carries no key, so this comes before the key check.
  app.use('*', cors({ origin: '*', allowMethods: ['GET', 'HEAD', 'POST', 'OPTIONS'], allowHeaders: ['Authorization', 'Content-Type', 'X-Api-Key'], maxAge: 600 }));
  app.use('/v1/*', async (c, next) => {
    if (apiKey !== undefined) {
      // Authorization: Bearer, or X-Api-Key as llama.cpp's server also takes it.
      const header = c.req.header('authorization') ?? c.req.header('x-api-key') ?? '';
      const given = c.req.header('authorization') === undefined ? header : /^Bearer\s+(.+)$/i.exec(header)?.[1] ?? '';
      if (!sameKey(given, apiKey)) {
        throw new ApiError(401, header ? 'incorrect API key' : 'missing API key: send Authorization: Bearer <key>', 'invalid_request_error', null, 'invalid_api_key');
      }
    }
    await next();
  });
  app.use('/v1/*', bodyLimit({
    maxSize: maxBodyBytes,
    onError: () => { throw new ApiError(413, `the request body is larger than ${maxBodyBytes} bytes`, 'invalid_request_error', null, 'request_too_large'); },
  }));

  app.get('/v1/models', (c) => c.json({ object: 'list', data: [modelCard] }));
  app.get('/v1/models/:id', (c) => {
    if (c.req.param('id') !== modelId) throw new ApiError(404, `the model '${c.req.param('id')}' does not exist`, 'invalid_request_error', 'model', 'model_not_found');
    return c.json(modelCard);
  });
  app.post('/v1/completions', (c) => answer(c, 'completion'));
  app.post('/v1/chat/completions', (c) => answer(c, 'chat'));

  async function answer(c: Context, kind: RequestKind): Promise<Response> {
    const req = parseRequest(kind, parseJson(await c.req.text()), model, modelId);
    const count = req.prompts.length * req.n;
    if (count > maxSessions + maxQueued) {
      throw badParam(req.n > 1 ? 'n' : 'prompt', `this server runs at most ${maxSessions + maxQueued} choices a request ` +
        `(its sessions and queue), and this one asks for ${count}`);
    }
    const signal = c.req.raw.signal;
    // echo: each prompt's own pieces, scored when logprobs are asked for, before its answers.
    const echoed: GenerationPiece[][] | null = req.echo ? [] : null;
    for (const ids of req.echo ? req.prompts : []) echoed!.push(await scorePrompt(model, ids, req.logprobs, signal));
    // Choices prompt by prompt, n of each; with a seed, choice j of a prompt draws with seed + j.
    const jobs: Job[] = [];
    const cancel = () => { for (const job of jobs) job.cancel(); };
    if (req.options.maxNewTokens > 0) {
      try {
        for (const ids of req.prompts) {
          for (let j = 0; j < req.n; j++) {
            const seed = req.options.seed;
            const options = seed === undefined || j === 0 ? req.options : { ...req.options, seed: Number.isSafeInteger(seed + j) ? seed + j : seed - j };
            jobs.push(scheduler.submit((sig, step) => start(req, ids, options, sig, step)));
          }
        }
      } catch (e) {
        cancel(); // all or nothing: a request past the queue leaves none of its choices behind
        throw e;
      }
    }
    // A client that goes away stops its generations (queued: they leave the queue).
    signal.addEventListener('abort', cancel);
    const shaper = new ResponseShaper(kind, modelId, tok!, req.logprobs);
    const streams = jobs.map((job) => job.pieces());
    const release = () => {
      signal.removeEventListener('abort', cancel);
      cancel(); // a no-op once the generations have ended
    };
    const promptOf = (i: number) => Math.floor(i / req.n);
    const usage = () => {
      // Each prompt counts once, as OpenAI counts it with n > 1.
      let prompt = 0, completion = 0;
      for (let p = 0; p < req.prompts.length; p++) prompt += jobs.length ? promptTokensOf(jobs[p * req.n].stats!) : req.prompts[p].length;
      for (const job of jobs) completion += job.stats!.generatedTokens;
      return usageOf(prompt, completion);
    };
    const reasonOf = (i: number): StopReason | null => (jobs.length ? jobs[i].stats!.stopReason : 'length');
    let streaming = false;
    try {
      // The first piece (or the failure) of every choice before any byte is sent: an error at the
      // start still gets its own status.
      const firsts = await Promise.all(streams.map((s) => s.next()));
      if (!req.stream) {
        const choices: Choice[] = [];
        for (let i = 0; i < count; i++) {
          const pieces: GenerationPiece[] = [];
          if (jobs.length) {
            if (!firsts[i].done) pieces.push(firsts[i].value as GenerationPiece);
            for await (const p of streams[i]) pieces.push(p);
          }
          choices.push({ pieces, reason: reasonOf(i), echoed: echoed?.[promptOf(i)] });
        }
        return c.body(responseJson(shaper.complete(choices, usage())), 200, { 'content-type': 'application/json' });
      }
      streaming = true;
      return streamSSE(c, async (sse) => {
        sse.onAbort(cancel);
        const send = (x: object | null) => (x === null ? Promise.resolve() : sse.writeSSE({ data: responseJson(x) }));
        try {
          for (let i = 0; i < count; i++) {
            await send(shaper.first(i, echoed?.[promptOf(i)]));
            if (jobs.length && !firsts[i].done) await send(shaper.piece(i, firsts[i].value as GenerationPiece));
          }
          // The choices' pieces as they come, each choice's in order.
          const next = (i: number) => streams[i].next().then((r) => ({ i, r }));
          const waiting = new Map<number, ReturnType<typeof next>>();
          for (let i = 0; i < count; i++) {
            if (jobs.length && !firsts[i].done) waiting.set(i, next(i));
            else await send(shaper.last(i, reasonOf(i)));
          }
          while (waiting.size) {
            const { i, r } = await Promise.race(waiting.values());
            if (r.done) {
              waiting.delete(i);
              await send(shaper.last(i, reasonOf(i)));
            } else {
              waiting.set(i, next(i));
              await send(shaper.piece(i, r.value));
            }
          }
          if (req.includeUsage) await send(shaper.usage(usage()));
          await sse.writeSSE({ data: '[DONE]' });
        } catch (e) {
          // Mid-stream the status is sent: the error goes as an event, and the stream ends.
          if (!sse.aborted) await send(toApiError(e).body);
        } finally {
          release();
        }
      });
    } finally {
      if (!streaming) release();
    }
  }

  /**
   * A request's generation, in a session of its own: restored from the prefix cache when a kept
   * conversation shares the prompt's start (only the rest is run), else new. At the end its
   * snapshot is kept for the next request, and the session freed. Its decode steps go through
   * `step`, the scheduler's, which batches them with the other generations'.
   */
  function start(req: ParsedRequest, promptIds: number[], options: ParsedRequest['options'], signal: AbortSignal, step: Stepper): Generation {
    const need = Math.min(model.config.maxPositions, promptIds.length + options.maxNewTokens);
    const hit = prefix?.take(promptIds) ?? null;
    const session = hit ? model.restoreSession(hit.bytes, { contextLength: Math.max(need, hit.position) }) : model.createSession({ contextLength: need, cache });
    let generation: Generation;
    try {
      if (req.kind === 'chat') {
        // chat() keeps the longest common prefix of the session's conversation itself.
        generation = chat(model, req.messages!, { ...options, signal, session }, step);
      } else {
        const keep = Math.min(hit?.common ?? 0, promptIds.length - 1); // run at least one token, for the logits
        session.truncate(keep);
        generation = generate(model, promptIds.slice(keep), { ...options, signal, session }, step);
      }
    } catch (e) {
      session.dispose();
      throw e;
    }
    async function* run(): AsyncGenerator<GenerationPiece, void, undefined> {
      let finished = false;
      try {
        for await (const piece of generation) yield piece;
        finished = true;
      } finally {
        if (finished && prefix && session.tokenIds) prefix.put(session.tokenIds, session.snapshot());
        session.dispose();
      }
    }
    return Object.assign(run(), { stats: generation.stats });
  }

  return {
    fetch: async (request: Request) => app.fetch(request),
    get active() { return scheduler.active; },
    get queued() { return scheduler.queued; },
    close: () => scheduler.close(),
  };
}

/** Compare keys in time that does not depend on where they differ. */
function sameKey(given: string, key: string): boolean {
  let diff = given.length ^ key.length;
  for (let i = 0; i < key.length; i++) diff |= (given.charCodeAt(i) | 0) ^ key.charCodeAt(i);
  return diff === 0;
}
