// Streaming generation over a session: prefill the prompt (in slices), then sample, yield and step
// one token at a time, giving the event loop a turn between slices and tokens so that an
// AbortSignal (or anything else the program has to do) gets in. Model.generate and Model.chat are
// thin wrappers around this.
import { checkOptions, MlaError, showValue } from '../errors.js';
import type { TokenModel } from '../model/model.js';
import { createRng, LogitAdjuster, sampleToken, tokenLogprobs, type SamplingOptions } from './sampling.js';
import { JsonConstraint, tokenTrie } from './json-mode.js';
import { checkIds, type Session } from '../model/session.js';
import { checkCacheFormat, type CacheFormat } from '../model/kv-cache.js';
import { CHUNK } from '../model/decoder.js';
import { checkMessages, type ChatMessage } from '../formats/tokenizer.js';

export interface GenerateOptions {
  /** Tokens to generate at most (default: generation_config's max_new_tokens, else 256). */
  maxNewTokens?: number;
  /** 0 = greedy (deterministic). Default: generation_config's when it says do_sample, else 0. */
  temperature?: number;
  /** Sample among the k most likely tokens; 0 = all (default: generation_config's, else 50 as in transformers). */
  topK?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches p (default generation_config's, else 1). */
  topP?: number;
  /** Min-p sampling: keep the tokens at least minP times as likely as the most likely one; 0 = off (the default). */
  minP?: number;
  /** > 1 discourages tokens already in the context (default generation_config's, else 1). */
  repetitionPenalty?: number;
  /** OpenAI's, in [-2, 2]: subtracted once from the logit of every token already generated (default 0). */
  presencePenalty?: number;
  /** OpenAI's, in [-2, 2]: subtracted from a token's logit once per time it was generated (default 0). */
  frequencyPenalty?: number;
  /**
   * Added to the logits of the token ids given, each in [-100, 100] (OpenAI's logit_bias): -100
   * all but bans a token, 100 all but forces it. A Map or an object keyed by id.
   */
  logitBias?: ReadonlyMap<number, number> | Readonly<Record<number, number>>;
  /**
   * Give every piece its token's log-probability and this many most likely alternatives (0 to 20):
   * the model's own distribution (log-softmax of the logits), before penalty, temperature and
   * truncation. Default: none.
   */
  logprobs?: number;
  /** Seed of the sampler's generator: the same seed, prompt and options give the same tokens. */
  seed?: number;
  /** Strings and token ids that end the generation, besides the model's EOS ids. Stop strings are not part of the text. */
  stop?: string | number | ReadonlyArray<string | number>;
  /** Stops the generation between two tokens; the stream then throws MlaError ABORTED. */
  signal?: AbortSignal;
  /**
   * Continue in this session (of this model): generate() appends the prompt after what the session
   * holds; chat() keeps the longest common prefix of the cached conversation and runs only the rest.
   * Without it, a session is made for the call and freed at the end.
   */
  session?: Session;
  /** Text prompts: add the tokenizer's special tokens (BOS). Default: when the session starts empty. */
  addSpecialTokens?: boolean;
  /**
   * The cache format of the session made for the call (default 'f32'; see SessionOptions.cache).
   * With `session`, that session's format runs, and a different `cache` is BAD_INPUT.
   */
  cache?: CacheFormat;
  /**
   * 'json': JSON mode. Only tokens that keep the text a valid prefix of a JSON object are sampled
   * (from the model's distribution after penalty, temperature and truncation, restricted to them),
   * and the generation ends as soon as the object closes (stop reason 'stop'). Cut short by
   * maxNewTokens or the context, the text is only a valid prefix (stop reason 'length' or
   * 'context'). Whitespace runs of at most 20 bytes and nesting of at most 32 levels; logprobs
   * stay the model's own. Needs a tokenizer.
   */
  format?: 'json';
}

export type ChatOptions = Omit<GenerateOptions, 'addSpecialTokens'>;

/** One generated token and the text it completes ('' while a character is incomplete). */
export interface GenerationPiece {
  id: number;
  text: string;
  /** With the logprobs option: ln p(id) under the model's distribution at this step. */
  logprob?: number;
  /** With the logprobs option: the most likely ids at this step, most likely first. */
  topLogprobs?: Array<{ id: number; logprob: number }>;
}

export type StopReason = 'eos' | 'stop' | 'length' | 'context' | 'aborted';

export interface GenerationStats {
  /** Tokens run through prefill (the prompt, less a reused prefix). */
  promptTokens: number;
  /** Tokens of the prompt already in the session's cache (chat with a session). */
  reusedTokens: number;
  /**
   * chat(): messages left out from the start of the conversation (the oldest turns; a system
   * message is kept) so that it fits the context with room for the answer. 0 for generate().
   */
  droppedMessages: number;
  /** Tokens sampled (each yielded once). */
  generatedTokens: number;
  /** Single-token decode steps run. */
  decodeSteps: number;
  prefillMs: number;
  /** Time in decode steps and sampling, not counting the consumer or the event loop's turns. */
  decodeMs: number;
  stopReason: StopReason | null;
  /** The seed used (drawn at random when none was given and sampling is on), or null when greedy. */
  seed: number | null;
}

/** The stream Model.generate and Model.chat return; `stats` fills in as it runs. */
export type Generation = AsyncGenerator<GenerationPiece, void, undefined> & { readonly stats: GenerationStats };

interface Resolved extends SamplingOptions {
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias: Map<number, number>;
  maxNewTokens: number;
  logprobs: number | null;
  seed: number | null;
  stopIds: Set<number>;
  stopStrings: string[];
  signal: AbortSignal | undefined;
  session: Session | undefined;
  addSpecialTokens: boolean | undefined;
  cache: CacheFormat;
  json: boolean;
}

/** What a session holds, when generation put it there: ids in the cache, and sampled ids not yet fed. */
interface History { cached: number[]; pending: number[] }
const histories = new WeakMap<Session, History>();

/** The most alternatives a piece can carry (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

const KNOWN = new Set(['maxNewTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'logprobs', 'seed', 'stop', 'signal', 'session', 'addSpecialTokens', 'cache', 'format']);

function badOption(name: string, want: string, got: unknown): never {
  throw new MlaError('BAD_INPUT', `option ${name} must be ${want}, got ${showValue(got)}`);
}

/** Check every option and fill in the defaults (generation_config.json, then ours). */
function resolveOptions(model: TokenModel, options: GenerateOptions, allowed: Set<string>): Resolved {
  checkOptions(options, allowed, allowed === KNOWN ? 'generate() options' : 'chat() options');
  const o = options as Record<string, unknown>;
  const gc = model.generationConfig;
  const number = (name: string, ok: (v: number) => boolean, want: string): number | undefined => {
    const v = o[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) badOption(name, want, v);
    return v as number;
  };
  const maxNewTokens = number('maxNewTokens', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1') ?? gc?.maxNewTokens ?? 256;
  const sampleByDefault = gc?.doSample === true;
  const temperature = number('temperature', (v) => v >= 0, 'a finite number ≥ 0 (0 = greedy)')
    ?? (sampleByDefault ? gc?.temperature ?? 1 : 0);
  const topK = number('topK', (v) => Number.isInteger(v) && v >= 0, 'an integer ≥ 0 (0 = no limit)') ?? gc?.topK ?? 50;
  const topP = number('topP', (v) => v > 0 && v <= 1, 'a number in (0, 1]') ?? gc?.topP ?? 1;
  const minP = number('minP', (v) => v >= 0 && v <= 1, 'a number in [0, 1] (0 = off)') ?? 0;
  const logprobs = number('logprobs', (v) => Number.isInteger(v) && v >= 0 && v <= MAX_TOP_LOGPROBS,
    `an integer in [0, ${MAX_TOP_LOGPROBS}] (the alternatives per token)`) ?? null;
  const repetitionPenalty = number('repetitionPenalty', (v) => v > 0, 'a number > 0 (1 = none)') ?? gc?.repetitionPenalty ?? 1;
  const presencePenalty = number('presencePenalty', (v) => v >= -2 && v <= 2, 'a number in [-2, 2] (0 = none)') ?? 0;
  const frequencyPenalty = number('frequencyPenalty', (v) => v >= -2 && v <= 2, 'a number in [-2, 2] (0 = none)') ?? 0;
  let seed = number('seed', (v) => Number.isSafeInteger(v), 'a safe integer') ?? null;
  const greedy = temperature === 0 || topK === 1;
  if (greedy) seed = null;
  else if (seed === null) seed = Math.floor(Math.random() * 2 ** 32);

  const V = model.config.vocabSize;
  const logitBias = resolveLogitBias(o.logitBias, V);
  const stopIds = new Set<number>([...model.config.eosTokenIds, ...(gc?.eosTokenIds ?? [])]);
  if (stopIds.size === 0 && model.tokenizer?.eosTokenId != null) stopIds.add(model.tokenizer.eosTokenId);
  const stopStrings: string[] = [];
  if (o.stop !== undefined) {
    const list = Array.isArray(o.stop) ? o.stop : [o.stop];
    for (const s of list) {
      if (typeof s === 'string' && s.length > 0) stopStrings.push(s);
      else if (typeof s === 'number' && Number.isInteger(s) && s >= 0 && s < V) stopIds.add(s);
      else badOption('stop', `non-empty strings or token ids in [0, ${V})`, s);
    }
    if (stopStrings.length && !model.tokenizer) throw new MlaError('BAD_INPUT', 'option stop: stop strings need a tokenizer, and this model has none');
  }
  const signal = o.signal;
  if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof (signal as AbortSignal).aborted !== 'boolean')) {
    badOption('signal', 'an AbortSignal', signal);
  }
  const session = o.session;
  if (session !== undefined && model.ownsSession(session as Session) && (session as Session).busy) {
    throw new MlaError('BUSY', 'option session: this session is in use by a generate() or chat() stream that has not ended: ' +
      'wait for it to finish (or stop it) first, or use another session');
  }
  if (session !== undefined && !model.ownsSession(session as Session)) {
    const what = typeof session === 'object' && session !== null && typeof (session as Session).prefill === 'function'
      ? ((session as Session).disposed ? 'a disposed session' : 'a session of another model') : showValue(session);
    throw new MlaError('BAD_INPUT', `option session must be a live session made by this model's createSession(), got ${what}`);
  }
  const addSpecialTokens = o.addSpecialTokens;
  if (addSpecialTokens !== undefined && typeof addSpecialTokens !== 'boolean') badOption('addSpecialTokens', 'a boolean', addSpecialTokens);
  const cache = o.cache ?? (session as Session | undefined)?.cacheFormat ?? 'f32';
  checkCacheFormat(model.config, cache);
  if (session !== undefined && cache !== (session as Session).cacheFormat) {
    throw new MlaError('BAD_INPUT', `option cache is '${cache}', but the session given keeps a '${(session as Session).cacheFormat}' cache`);
  }
  if (o.format !== undefined && o.format !== 'json') badOption('format', "'json' (or left out)", o.format);
  if (o.format === 'json' && !model.tokenizer) throw new MlaError('BAD_INPUT', 'option format: JSON mode needs a tokenizer, and this model has none');
  return {
    json: o.format === 'json', maxNewTokens, logprobs, temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, logitBias,
    seed, stopIds, stopStrings,
    signal: signal as AbortSignal | undefined, session: session as Session | undefined, addSpecialTokens: addSpecialTokens as boolean | undefined, cache,
  };
}

/** Option logitBias as a Map of valid ids to finite biases in [-100, 100]. */
function resolveLogitBias(v: unknown, V: number): Map<number, number> {
  const bias = new Map<number, number>();
  if (v === undefined) return bias;
  const want = `a Map or object of token ids in [0, ${V}) to numbers in [-100, 100]`;
  let entries: Array<[unknown, unknown]>;
  if (v instanceof Map) entries = [...v.entries()];
  else if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype) entries = Object.entries(v);
  else badOption('logitBias', want, v);
  for (const [key, b] of entries) {
    const id = typeof key === 'string' && /^(0|[1-9]\d*)$/.test(key) ? Number(key) : key;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= V) {
      throw new MlaError('BAD_INPUT', `option logitBias: the key ${showValue(key)} is not a token id in [0, ${V})`);
    }
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) badOption(`logitBias[${id}]`, 'a number in [-100, 100]', b);
    if (b !== 0) bias.set(id, b);
  }
  return bias;
}

/** Model.generate: a text (encoded with the model's tokenizer) or token ids. */
export function generate(model: TokenModel, prompt: string | ArrayLike<number>, options: GenerateOptions = {}, stepper = stepAlone): Generation {
  const o = resolveOptions(model, options, KNOWN);
  let ids: number[];
  if (typeof prompt === 'string') {
    const tok = model.tokenizer;
    if (!tok) throw new MlaError('BAD_INPUT', 'this model has no tokenizer (tokenizer.json): give the prompt as token ids');
    const fresh = !o.session || (o.session.position === 0 && !histories.get(o.session)?.pending.length);
    ids = tok.encode(prompt, { addSpecialTokens: o.addSpecialTokens ?? fresh });
  } else {
    checkIds(prompt, model.config.vocabSize);
    ids = Array.from(prompt);
  }
  if (ids.length === 0 && !(o.session && histories.get(o.session)?.pending.length)) {
    throw new MlaError('BAD_INPUT', 'the prompt is empty (no tokens to start from)');
  }
  return run(model, ids, o, stepper, false);
}

const CHAT_KEYS = new Set([...KNOWN].filter((k) => k !== 'addSpecialTokens'));

/** Model.chat: the conversation through the tokenizer's chat template, answered as the assistant. */
export function chat(model: TokenModel, messages: ChatMessage[], options: ChatOptions = {}, stepper = stepAlone): Generation {
  checkMessages(messages);
  const o = resolveOptions(model, options, CHAT_KEYS);
  const tok = model.tokenizer;
  if (!tok) throw new MlaError('BAD_INPUT', 'this model has no tokenizer (tokenizer.json), so it cannot chat');
  if (tok.chatTemplate === null) throw new MlaError('BAD_INPUT', 'this model\'s tokenizer_config.json has no chat template; use generate()');
  // A conversation longer than the context loses its oldest turns (the model never saw positions
  // past it): the rendered prompt leaves room for maxNewTokens, or half the context if that is less.
  const capacity = o.session?.capacity ?? model.config.maxPositions;
  const room = Math.min(o.maxNewTokens, Math.floor(capacity / 2));
  let kept = messages;
  let ids = tok.encodeChat(kept, { addGenerationPrompt: true });
  for (let fewer = withoutOldestTurn(kept); ids.length + room > capacity && fewer; fewer = withoutOldestTurn(kept)) {
    kept = fewer;
    ids = tok.encodeChat(kept, { addGenerationPrompt: true });
  }
  if (ids.length === 0) throw new MlaError('BAD_INPUT', 'the chat template rendered these messages as no tokens');
  if (ids.length > capacity) {
    throw new MlaError('CACHE_FULL', `the last message${kept.length > 1 ? ' (with the system message)' : ''} takes ${ids.length} tokens, ` +
      `more than the ${capacity} positions of the ${o.session ? 'session' : 'model\'s context'}`);
  }
  return run(model, ids, o, stepper, true, messages.length - kept.length);
}

/**
 * The conversation without its oldest turn: the first message after any system messages goes, and
 * with it any assistant messages that would then come first. Null when only the last is left.
 */
function withoutOldestTurn(messages: ChatMessage[]): ChatMessage[] | null {
  let first = 0;
  while (first < messages.length && messages[first].role === 'system') first++;
  if (messages.length - first <= 1) return null;
  let from = first + 1;
  while (from < messages.length - 1 && messages[from].role !== 'user') from++;
  return [...messages.slice(0, first), ...messages.slice(from)];
}

/** Give the event loop a turn (timers, I/O, abort events), in Node, Deno, Bun and browsers alike. */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  if (typeof g.setImmediate === 'function') return new Promise((r) => g.setImmediate!(r));
  if (typeof MessageChannel === 'function') {
    return new Promise((r) => {
      const c = new MessageChannel();
      c.port1.onmessage = () => { c.port1.close(); r(); };
      c.port2.postMessage(null);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

const commonPrefix = (a: number[], b: number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};

/**
 * A prompt runs in slices of this many tokens, each a step of its own, so that a long prompt in the
 * server does not hold up the other generations' tokens. The decoder's chunk: slicing changes no bits.
 */
export const PROMPT_SLICE = CHUNK;

/**
 * @internal One step a generation asks for: feed `ids` (one sampled token, or a slice of the prompt)
 * to `session` and write the logits after the last into `out`. The generation holds the session:
 * calls on it go through `use`.
 */
export interface StepRequest {
  session: Session;
  ids: readonly number[];
  out: Float32Array;
  use<T>(f: () => T): T;
  /** Throws (ABORTED) when the generation is to stop instead: called right before the step. */
  check(): void;
}

/**
 * @internal How a generation runs its steps: alone (generate(), chat()) or with others' (the
 * server's scheduler batches decode steps). Resolves with the step's milliseconds (a batch's, for
 * each in it) once `out` holds the logits.
 */
export type Stepper = (request: StepRequest) => Promise<number>;

/** Run one step on its own: a token by Session.step, a prompt slice by Session.prefill. */
export function runStep(r: StepRequest): number {
  const t0 = performance.now();
  r.use(() => (r.ids.length === 1 ? r.session.step(r.ids[0], { out: r.out }) : r.session.prefill(r.ids, { out: r.out })));
  return performance.now() - t0;
}

/** One session's step on its own, after a turn of the event loop (where an abort gets in). */
export const stepAlone: Stepper = async (r) => {
  await yieldToEventLoop();
  r.check();
  return runStep(r);
};

function run(model: TokenModel, promptIds: number[], o: Resolved, stepper: Stepper, reuse: boolean, dropped = 0): Generation {
  const stats: GenerationStats = {
    promptTokens: 0, reusedTokens: 0, droppedMessages: dropped, generatedTokens: 0, decodeSteps: 0, prefillMs: 0, decodeMs: 0, stopReason: null, seed: o.seed,
  };
  async function* stream(): AsyncGenerator<GenerationPiece, void, undefined> {
    const owned = !o.session;
    const session = o.session ?? model.createSession({
      contextLength: Math.min(model.config.maxPositions, Math.max(1, promptIds.length + o.maxNewTokens)), cache: o.cache,
    });
    // Held from the first token to the end (done, thrown, or return() as a for-await break calls):
    // another stream, prefill, step, reset or truncate on it meanwhile throws BUSY.
    const key = session.hold();
    const use = <T>(f: () => T): T => session.asHolder(key, f);
    const check = () => {
      if (!o.signal?.aborted) return;
      stats.stopReason = 'aborted';
      throw new MlaError('ABORTED', 'generation aborted');
    };
    try {
      // What the session holds (when we know), and what to run now.
      // A session no stream has run (restored from a snapshot, or fed by prefill/step) still knows its ids.
      const own = session.tokenIds;
      const known = session.position === 0 ? { cached: [], pending: [] } : histories.get(session) ?? (own ? { cached: [...own], pending: [] } : undefined);
      const history = known && known.cached.length === session.position ? known : null;
      let cached: number[];
      let feed: number[];
      let keep = session.position; // where the feed goes
      if (reuse) {
        const all = history ? [...history.cached, ...history.pending] : [];
        keep = Math.min(commonPrefix(all, promptIds), history?.cached.length ?? 0);
        if (keep === promptIds.length) keep--; // run at least one token, for the logits
        cached = promptIds.slice(0, keep);
        feed = promptIds.slice(keep);
      } else {
        cached = history ? history.cached : [];
        feed = [...(history?.pending ?? []), ...promptIds];
      }
      // Checked whole before anything runs: a prompt past a slice would otherwise fail halfway and
      // leave the session half-prefilled.
      if (keep + feed.length > session.capacity) {
        const pending = reuse ? 0 : history?.pending.length ?? 0;
        throw new MlaError('CACHE_FULL', `the prompt's ${promptIds.length} tokens` +
          `${pending ? ` (after ${pending} sampled token${pending > 1 ? 's' : ''} not yet run)` : ''} do not fit at position ${keep} ` +
          `of the ${owned ? 'model\'s context' : 'session'}: it holds ${session.capacity} positions`);
      }
      if (reuse) use(() => session.truncate(keep));
      histories.set(session, { cached, pending: [] });
      stats.reusedTokens = cached.length;
      stats.promptTokens = feed.length;
      check();
      // One logits buffer for the whole generation: nothing allocated per token.
      const out = new Float32Array(model.config.vocabSize);
      for (let i = 0; i < feed.length; i += PROMPT_SLICE) {
        const slice = feed.slice(i, i + PROMPT_SLICE);
        stats.prefillMs += await stepper({ session, ids: slice, out, use, check });
        cached = [...cached, ...slice];
        histories.set(session, { cached, pending: [] });
      }
      const logits = out;

      const adjust = new LogitAdjuster(o, cached);
      const rng = createRng(o.seed ?? 0);
      const detok = model.tokenizer?.createStreamDecoder({ skipSpecialTokens: true });
      const stops = new StopStrings(o.stopStrings);
      const json = o.json ? new JsonConstraint(tokenTrie(model.tokenizer!, model.config.vocabSize), o.stopIds) : undefined;
      for (let n = 0; ; n++) {
        const t0 = performance.now();
        // The penalties change the logits in place: logprobs are of the model's own, so kept aside.
        const raw = o.logprobs !== null && adjust.active ? logits.slice() : logits;
        adjust.apply(logits);
        const id = sampleToken(logits, o, rng, [], json); // no context: the adjuster applied the repetition penalty
        json?.accept(id);
        const lp = o.logprobs === null ? null : tokenLogprobs(raw, id, o.logprobs);
        const scored = lp ? { logprob: lp.logprob, topLogprobs: lp.top } : {};
        stats.decodeMs += performance.now() - t0;
        stats.generatedTokens++;
        histories.set(session, { cached, pending: [id] });
        if (o.stopIds.has(id)) {
          stats.stopReason = model.config.eosTokenIds.includes(id) || model.generationConfig?.eosTokenIds.includes(id) ? 'eos' : 'stop';
          // The stop token's own text is left out; what was held back comes out with it.
          const tail = stops.push(detok ? detok.flush() : '');
          yield { id, text: tail.stopped ? tail.text : tail.text + stops.flush(), ...scored };
          return;
        }
        const closed = json?.complete === true;
        const last = closed || n + 1 >= o.maxNewTokens || session.position >= session.capacity;
        let piece = detok ? detok.push(id) : '';
        if (last && detok) piece += detok.flush();
        const { text, stopped } = stops.push(piece);
        if (stopped) {
          stats.stopReason = 'stop';
          yield { id, text, ...scored };
          return;
        }
        if (last) {
          stats.stopReason = closed ? 'stop' : n + 1 >= o.maxNewTokens ? 'length' : 'context';
          yield { id, text: text + stops.flush(), ...scored };
          return;
        }
        yield { id, text, ...scored };
        adjust.accept(id);
        // The step writes the next logits into `out`, which `logits` views.
        stats.decodeMs += await stepper({ session, ids: [id], out, use, check });
        stats.decodeSteps++;
        cached.push(id);
        histories.set(session, { cached, pending: [] });
      }
    } finally {
      session.release(key);
      if (owned) session.dispose();
    }
  }
  return Object.assign(stream(), { stats });
}

/**
 * Stop strings over streamed text: text that could be the start of a stop string is held back
 * until it either completes one (generation ends, the stop string is dropped) or cannot.
 */
class StopStrings {
  private held = '';
  constructor(private readonly stops: string[]) {}

  push(text: string): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text, stopped: false };
    const all = this.held + text;
    let first = -1;
    for (const s of this.stops) {
      const i = all.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      this.held = '';
      return { text: all.slice(0, first), stopped: true };
    }
    // Hold the longest tail that is a proper prefix of a stop string.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, all.length); k > hold; k--) {
        if (all.endsWith(s.slice(0, k))) { hold = k; break; }
      }
    }
    this.held = all.slice(all.length - hold);
    return { text: all.slice(0, all.length - hold), stopped: false };
  }

  flush(): string {
    const t = this.held;
    this.held = '';
    return t;
  }
}
