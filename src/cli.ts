#!/usr/bin/env node
// mla-wasm command line (Node):
//   generate    stream a continuation of a prompt, then speed and KV cache size
//   chat        an interactive conversation through the model's chat template
//   info        architecture, parameters, and the KV cache beside MHA/GQA/MQA/MLA equivalents
//   perplexity  loss per token and per byte of a text file
//   quantize    write a model as a GGUF file (F32, F16, BF16, Q8_0, Q4_0) that llama.cpp loads
//   convert     turn an MHA/GQA model into MLA (DeepseekV2ForCausalLM) without training
//   serve       an OpenAI-compatible HTTP server
// Every failure a user can cause ends as one line `mla-wasm: …` on stderr and exit code 1.
import v8 from 'node:v8';
import { availableParallelism } from 'node:os';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import readline from 'node:readline';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { MlaError } from './errors.js';
import { MAX_TOP_LOGPROBS, type ChatOptions, type GenerateOptions, type Generation, type GenerationPiece, type GenerationStats, type StopReason } from './generate/generate.js';
import { cacheEquivalents, parameterCount } from './model/info.js';
import { loadModel, type Model } from './generate/model.js';
import { quantizeToFile } from './formats/gguf-quantize.js';
import { convertToMla, writeConvertedFolder, writeConvertedGguf } from './convert/index.js';
import { formatRate } from './generate/rate.js';
import { loadConversation, saveConversation } from './generate/conversation.js';
import { createServer } from './serve/app.js';
import { listen } from './serve/node.js';
import type { ChatMessage, Tokenizer } from './formats/tokenizer.js';
import type { SimdBuild } from './host/kernels.js';
import type { WeightsOption } from './model/weights.js';
import { CACHE_FORMATS, type CacheFormat } from './model/kv-cache.js';
import type { Session } from './model/session.js';

// Node 20 compiles relaxed SIMD only behind a V8 flag; a CLI may turn it on before the first
// compile. The library itself still chooses the build by validating a tiny module.
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

/** A mistake in what the user asked for, reported as one line. */
class UsageError extends Error {}

const DEFAULT_PROMPT = 'Q: What is the meaning of life?\nA:';

// ---- option parsing helpers ----

const integer = (min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer ≥ ${min} (and below 2^53)`);
  return n;
};
const integerIn = (min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
  return n;
};
const number = (ok: (n: number) => boolean, want: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`expected ${want}`);
  return n;
};
/** `--logit-bias ID=BIAS`, repeatable; the id's range is checked against the model's vocabulary later. */
const logitBias = (v: string, all: Map<number, number> = new Map()): Map<number, number> => {
  const m = /^\s*(\d+)\s*=\s*(\S+)\s*$/.exec(v);
  const id = m ? Number(m[1]) : NaN, bias = m ? Number(m[2]) : NaN;
  if (!Number.isSafeInteger(id) || !Number.isFinite(bias) || bias < -100 || bias > 100) {
    throw new InvalidArgumentError('expected ID=BIAS: a token id and a number in [-100, 100], e.g. 13=-100');
  }
  return new Map(all).set(id, bias);
};

interface ModelFlags { model?: string; simd: 'auto' | SimdBuild; threads?: number; weights: WeightsOption; cache: CacheFormat }
interface SamplingFlags {
  maxNewTokens?: number; maxTokens?: number; temperature?: number; topK?: number; topP?: number;
  minP?: number; repetitionPenalty?: number; presencePenalty?: number; frequencyPenalty?: number;
  logitBias?: Map<number, number>; seed?: number; stop?: string[]; format?: 'json';
}

function modelOptions(cmd: Command, required: boolean): Command {
  const model = new Option('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer files), .gguf file, URL, or hub name (org/name, org/name:Q4_0)' + (required ? '' : '; default: the built-in fortune-mla'));
  if (required) model.makeOptionMandatory();
  return cmd.addOption(model)
    .addOption(new Option('--simd <build>', 'kernel build').choices(['auto', 'simd', 'relaxed']).default('auto'))
    .option('--threads <n>', 'kernel threads (default: the cores, at most 4, or 1 for a model under 48 MiB; 1 = no worker threads; more than the cores warns)', integer(1))
    .addOption(new Option('--weights <format>', 'weights in memory: auto keeps the file\'s types (f32, f16, bf16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; Q3_K, IQ4 and Q5_0 repacked exactly); the others convert at load')
      .choices(['auto', 'f32', 'bf16', 'int8', 'int4']).default('auto'))
    .addOption(new Option('--cache <format>', 'KV cache format: bf16, int8 and int4 narrow an MLA model\'s latent rows').choices([...CACHE_FORMATS]).default('f32'));
}

function samplingOptions(cmd: Command): Command {
  return cmd
    .option('--max-new-tokens <n>', 'tokens to generate at most (default: generation_config.json, else 256)', integer(1))
    .addOption(new Option('--max-tokens <n>').argParser(integer(1)).hideHelp())
    .option('--temperature <t>', '0 = greedy (default: generation_config.json)', number((n) => n >= 0, 'a number ≥ 0'))
    .option('--top-k <k>', 'sample among the k most likely tokens, 0 = all', integer(0))
    .option('--top-p <p>', 'nucleus sampling mass, in (0, 1]', number((n) => n > 0 && n <= 1, 'a number in (0, 1]'))
    .option('--min-p <p>', 'keep tokens at least p times as likely as the most likely, in [0, 1]; 0 = off', number((n) => n >= 0 && n <= 1, 'a number in [0, 1]'))
    .option('--repetition-penalty <r>', '> 1 discourages repeats', number((n) => n > 0, 'a number > 0'))
    .option('--presence-penalty <p>', 'subtracted once from each token already generated, in [-2, 2]', number((n) => n >= -2 && n <= 2, 'a number in [-2, 2]'))
    .option('--frequency-penalty <f>', 'subtracted per time a token was generated, in [-2, 2]', number((n) => n >= -2 && n <= 2, 'a number in [-2, 2]'))
    .option('--logit-bias <id=bias>', 'add bias (in [-100, 100]) to a token id\'s logit; repeat for more', logitBias)
    .option('--seed <n>', 'sampler seed (default: random, printed in the summary)', integer(0))
    .option('--stop <text>', 'a stop string (besides the end-of-text token); repeat for more', (v: string, all: string[] = []) => [...all, v])
    .addOption(new Option('--format <format>', 'json: the answer is a JSON object (constrained decoding), ending where it closes').choices(['json']));
}

function generationOptions(f: SamplingFlags): GenerateOptions & ChatOptions {
  const o: GenerateOptions = {};
  const max = f.maxNewTokens ?? f.maxTokens;
  if (max !== undefined) o.maxNewTokens = max;
  if (f.temperature !== undefined) o.temperature = f.temperature;
  if (f.topK !== undefined) o.topK = f.topK;
  if (f.topP !== undefined) o.topP = f.topP;
  if (f.minP !== undefined) o.minP = f.minP;
  if (f.repetitionPenalty !== undefined) o.repetitionPenalty = f.repetitionPenalty;
  if (f.presencePenalty !== undefined) o.presencePenalty = f.presencePenalty;
  if (f.frequencyPenalty !== undefined) o.frequencyPenalty = f.frequencyPenalty;
  if (f.logitBias) o.logitBias = f.logitBias;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.stop?.length) o.stop = f.stop.map(unescape);
  if (f.format !== undefined) o.format = f.format;
  return o;
}

/** `\n` and `\t` typed on a command line mean newline and tab. */
const unescape = (s: string) => s.replace(/\\n/g, '\n').replace(/\\t/g, '\t');

/** Load with a progress bar on stderr when it is a terminal. */
async function load(flags: ModelFlags): Promise<Model> {
  let bar: cliProgress.SingleBar | null = null;
  const onProgress = (done: number, total: number) => {
    if (!process.stderr.isTTY || total <= 0) return;
    if (!bar) {
      bar = new cliProgress.SingleBar({
        format: 'loading {bar} {percentage}% | {mib} / {totalMib} MiB',
        stream: process.stderr, hideCursor: true, clearOnComplete: true,
      }, cliProgress.Presets.shades_classic);
      bar.start(total, 0, { mib: '0.0', totalMib: (total / 2 ** 20).toFixed(1) });
    }
    bar.update(done, { mib: (done / 2 ** 20).toFixed(1) });
  };
  let model: Model;
  try {
    model = await loadModel(flags.model, { simd: flags.simd, threads: flags.threads, weights: flags.weights, onProgress });
  } finally {
    (bar as cliProgress.SingleBar | null)?.stop();
  }
  // More threads than cores runs, but slower than as many as the cores: say so, do not refuse
  // (a container may report fewer cores than it gets, and it is a way to test the threads).
  const cores = availableParallelism();
  if (flags.threads !== undefined && flags.threads > cores) {
    process.stderr.write(`mla-wasm: warning: --threads ${flags.threads} is more than the ${cores} core${cores > 1 ? 's' : ''} here: ` +
      'the extra threads share cores, which is slower\n');
  }
  return model;
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
const int = (n: number) => n.toLocaleString('en-US');
/** The kernels a model runs: its SIMD build and thread count. */
const kernelsRun = (m: Model) => `${m.simd === 'relaxed' ? 'relaxed' : 'plain'} SIMD, ${m.threads} thread${m.threads > 1 ? 's' : ''}, ` +
  `weights ${m.weightFormat} (${mib(m.weightBytes)})`;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 2 : 1)} MiB`;

/** A generation's prefill and decode: tokens, time and rate. */
const speeds = (s: GenerationStats) =>
  `prefill ${s.promptTokens} tok in ${s.prefillMs.toFixed(1)} ms (${formatRate(s.promptTokens, s.prefillMs)}), ` +
  `decode ${s.decodeSteps} tok in ${s.decodeMs.toFixed(1)} ms (${formatRate(s.decodeSteps, s.decodeMs)})`;

/** Why a generation ended, as the summary says it. */
/** `jsonOnly`: JSON mode without stop strings, where 'stop' can only be the object closing. */
function stoppedAt(reason: StopReason | null, maxNew: number, context: number, jsonOnly = false): string {
  switch (reason) {
    case 'eos': return 'stopped at the end-of-text token';
    case 'stop': return jsonOnly ? 'stopped where the JSON object closed' : 'stopped at a stop string';
    case 'length': return `stopped at --max-new-tokens (${int(maxNew)})`;
    case 'context': return `stopped at the end of the context (${int(context)} positions)`;
    case 'aborted': return 'aborted';
    default: return 'not finished';
  }
}

function samplingSummary(model: Model, g: Generation, o: GenerateOptions): string {
  const gc = model.generationConfig;
  const adjusted: string[] = [];
  const r = o.repetitionPenalty ?? gc?.repetitionPenalty ?? 1;
  if (r !== 1) adjusted.push(`repetition penalty ${r}`);
  if (o.presencePenalty) adjusted.push(`presence penalty ${o.presencePenalty}`);
  if (o.frequencyPenalty) adjusted.push(`frequency penalty ${o.frequencyPenalty}`);
  const biased = o.logitBias instanceof Map ? o.logitBias.size : 0;
  if (biased) adjusted.push(`logit bias on ${biased} token${biased > 1 ? 's' : ''}`);
  if (g.stats.seed === null) return adjusted.length ? `greedy (${adjusted.join(', ')})` : 'greedy';
  const t = o.temperature ?? gc?.temperature ?? 1;
  const parts = [`temperature ${t}`];
  const k = o.topK ?? gc?.topK ?? 50;
  if (k > 0) parts.push(`top-k ${k}`);
  const p = o.topP ?? gc?.topP ?? 1;
  if (p < 1) parts.push(`top-p ${p}`);
  if (o.minP) parts.push(`min-p ${o.minP}`);
  parts.push(...adjusted);
  parts.push(`seed ${g.stats.seed}`);
  return `sampled (${parts.join(', ')})`;
}

// ---- generate ----

async function generateCommand(positional: string | undefined, flags: ModelFlags & SamplingFlags & { prompt?: string; truncatePrompt?: boolean; logprobs?: number }): Promise<void> {
  if (positional !== undefined && flags.prompt !== undefined) {
    throw new UsageError('give the prompt once: as an argument or with --prompt, not both');
  }
  const model = await load(flags);
  if (!model.tokenizer) throw new UsageError(`${flags.model} has no tokenizer.json, so it cannot take a text prompt`);
  const options = generationOptions(flags);
  const tok = model.tokenizer;
  let prompt = unescape(positional ?? flags.prompt ?? DEFAULT_PROMPT);
  let ids = tok.encode(prompt);
  const maxNew = options.maxNewTokens ?? model.generationConfig?.maxNewTokens ?? 256;
  const context = model.config.maxPositions;
  // Checked before anything is printed: a prompt the context cannot hold is refused, or with
  // --truncate-prompt cut to its last tokens, leaving room for max-new-tokens (at most half the context).
  if (ids.length > context) {
    if (!flags.truncatePrompt) {
      throw new UsageError(`the prompt is ${int(ids.length)} tokens, more than the model's context of ${int(context)}; ` +
        '--truncate-prompt keeps its last tokens');
    }
    const bos = tok.bosTokenId !== null && ids[0] === tok.bosTokenId ? [ids[0]] : [];
    const keep = context - Math.min(maxNew, Math.floor(context / 2)) - bos.length;
    process.stderr.write(`(the prompt is ${int(ids.length)} tokens, more than the model's context of ${int(context)}: ` +
      `kept its last ${int(keep)})\n`);
    ids = [...bos, ...ids.slice(ids.length - keep)];
    prompt = tok.decode(ids, { skipSpecialTokens: true });
  }
  const session = model.createSession({ contextLength: Math.min(context, ids.length + maxNew), cache: flags.cache });
  const g = model.generate(ids, { ...options, session, ...(flags.logprobs !== undefined ? { logprobs: flags.logprobs } : {}) });
  process.stdout.write(prompt);
  const pieces: GenerationPiece[] = [];
  for await (const piece of g) {
    process.stdout.write(piece.text);
    pieces.push(piece);
  }
  process.stdout.write('\n\n');
  if (flags.logprobs !== undefined) process.stdout.write(logprobTable(tok, pieces) + '\n');
  const s = g.stats;
  console.log(`${speeds(s)}, ${kernelsRun(model)}, ${samplingSummary(model, g, options)}, ${stoppedAt(s.stopReason, maxNew, session.capacity, options.format === 'json' && !options.stop)}`);
  console.log(
    `KV cache: ${kib(session.kvCacheBytes)} for ${session.position} tokens in ${session.cacheFormat} ` +
    `(${session.kvCacheBytesPerToken} B/token; MHA with the same heads would need ${model.mhaCacheBytesPerToken} B/token in f32, ` +
    `${(model.mhaCacheBytesPerToken / session.kvCacheBytesPerToken).toFixed(1)}× more)`);
  session.dispose();
}

/** --logprobs: a line per token: its text, its log-probability, and the alternatives with theirs. */
function logprobTable(tok: Tokenizer, pieces: GenerationPiece[]): string {
  const show = (id: number) => JSON.stringify(tok.decode([id]));
  const width = Math.max(5, ...pieces.map((p) => show(p.id).length));
  const lines = [`${'token'.padEnd(width)}  logprob   most likely`];
  for (const p of pieces) {
    const alts = (p.topLogprobs ?? []).map((t) => `${show(t.id)} ${t.logprob.toFixed(4)}`).join('  ');
    lines.push(`${show(p.id).padEnd(width)}  ${p.logprob!.toFixed(4).padStart(8)}  ${alts}`.trimEnd());
  }
  return lines.join('\n') + '\n';
}

// ---- chat ----

async function chatCommand(flags: ModelFlags & SamplingFlags & { system?: string; context?: number; session?: string }): Promise<void> {
  const model = await load(flags);
  if (!model.tokenizer?.chatTemplate) {
    throw new UsageError(`${flags.model ?? 'the model'} has no chat template (tokenizer_config.json); use generate`);
  }
  const options = generationOptions(flags);
  if (flags.context !== undefined && flags.context > model.config.maxPositions) {
    throw new UsageError(`--context ${flags.context} is more than the model's context (${model.config.maxPositions})`);
  }
  const file = flags.session;
  let session: Session;
  let messages: ChatMessage[];
  if (file !== undefined && existsSync(file)) {
    // A saved conversation goes on where it stopped: its messages, and its KV cache restored.
    ({ messages, session } = loadConversation(model, readFileSync(file), flags.context === undefined ? {} : { contextLength: flags.context }));
    process.stderr.write(`mla-wasm chat: resumed ${messages.length} message${messages.length > 1 ? 's' : ''} (${int(session.position)} positions) from ${file}\n`);
    if (flags.system !== undefined) process.stderr.write('(--system is ignored: a resumed conversation keeps its own)\n');
  } else {
    session = model.createSession(flags.context === undefined ? { cache: flags.cache } : { contextLength: flags.context, cache: flags.cache });
    messages = flags.system ? [{ role: 'system', content: flags.system }] : [];
  }
  // Written whole to a temporary name, then renamed: a crash mid-write keeps the last good file.
  const save = () => {
    if (file === undefined) return;
    try {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, saveConversation(messages, session));
      renameSync(tmp, file);
    } catch (e) {
      process.stderr.write(`mla-wasm: could not save the conversation to ${file}: ${(e as Error).message}\n`);
    }
  };
  const tty = process.stdin.isTTY === true;
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
  rl.setPrompt('> ');
  process.stderr.write(`mla-wasm chat: ${model.config.architecture}, ${int(session.capacity)} positions of context, ` +
    `${session.cacheFormat} KV cache (${int(session.kvCacheBytesPerToken)} B/token). ` +
    `Ctrl-C stops an answer; Ctrl-C twice at the prompt or Ctrl-D quits.\n`);

  // Lines arrive by event (piped input may all arrive at once); answers are produced one at a time.
  const lines: string[] = [];
  let closed = false;
  let wake: (() => void) | null = null;
  // At the prompt, or answering: `answering` is the answer in progress or about to start. A line
  // makes it so at once, in its event, so a Ctrl-C right behind Enter (a terminal can deliver both
  // in one chunk, before the loop below wakes up) stops that answer instead of counting as at the prompt.
  let answering: AbortController | null = null;
  rl.on('line', (l) => { lines.push(l); answering ??= new AbortController(); wake?.(); });
  rl.on('close', () => { closed = true; wake?.(); });
  const nextLine = async (): Promise<string | null> => {
    while (lines.length === 0 && !closed) await new Promise<void>((r) => { wake = r; });
    wake = null;
    return lines.shift() ?? null;
  };

  let interrupted = false;
  const onInterrupt = () => {
    if (answering) { answering.abort(); return; }
    if (interrupted) { rl.close(); return; }
    interrupted = true;
    process.stdout.write('\n(Ctrl-C again or Ctrl-D to quit)\n');
    rl.prompt();
  };
  rl.on('SIGINT', onInterrupt);       // a terminal: readline turns Ctrl-C into this event
  process.on('SIGINT', onInterrupt);  // otherwise the signal itself

  try {
    for (;;) {
      rl.prompt();
      const line = await nextLine();
      if (line === null) break;
      interrupted = false;
      const signal = (answering ??= new AbortController()).signal;
      if (line.trim() === '') {
        answering = lines.length > 0 ? new AbortController() : null;
        continue;
      }
      messages.push({ role: 'user', content: line });
      let answer = '';
      let g: Generation | null = null;
      try {
        g = model.chat(messages, { ...options, session, signal });
        // chat() leaves out the oldest turns that do not fit the context; forget them here too.
        const dropped = g.stats.droppedMessages;
        if (dropped > 0) {
          const system = messages.findIndex((m) => m.role !== 'system');
          messages.splice(system, dropped);
          process.stderr.write(`(the conversation outgrew the ${int(session.capacity)}-position context: ` +
            `dropped its ${dropped} oldest message${dropped > 1 ? 's' : ''})\n`);
        }
        for await (const piece of g) { answer += piece.text; process.stdout.write(piece.text); }
      } catch (e) {
        if (!(e instanceof MlaError)) throw e;
        if (e.code !== 'ABORTED') {
          // A message the context cannot take (or any refused input) ends that message, not the conversation.
          messages.pop();
          process.stderr.write(`mla-wasm: ${e.message}\n`);
          continue;
        }
        process.stdout.write(' [stopped]');
      } finally {
        // Lines already typed are answers about to start: a Ctrl-C now stops the next one.
        answering = lines.length > 0 ? new AbortController() : null;
      }
      process.stdout.write('\n');
      if (g && g.stats.generatedTokens > 0) process.stderr.write(`${speeds(g.stats)}\n`);
      // As generated, not trimmed: the next turn's rendering then matches the cached tokens, and
      // only the new message runs (a trimmed answer re-ran the whole answer every turn).
      messages.push({ role: 'assistant', content: answer });
      save();
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    rl.close();
    session.dispose();
  }
  if (tty) process.stdout.write('\n');
}

// ---- serve ----

interface ServeFlags extends ModelFlags { port: number; host: string; maxSessions?: number; maxQueued?: number; apiKey?: string; prefixCacheMib?: number }

async function serveCommand(flags: ServeFlags): Promise<void> {
  const model = await load(flags);
  if (!model.tokenizer) throw new UsageError(`${flags.model} has no tokenizer.json, and the server speaks text`);
  // The name clients give as `model`: the folder's, as they would say it.
  const modelId = flags.model ? flags.model.replace(/[\\/]+$/, '').split(/[\\/]/).pop()!.replace(/\.gguf$/i, '') || 'mla-wasm' : 'fortune-mla';
  const server = createServer(model, {
    modelId, apiKey: flags.apiKey, maxSessions: flags.maxSessions, maxQueued: flags.maxQueued, cache: flags.cache,
    prefixCacheBytes: flags.prefixCacheMib === undefined ? undefined : Math.round(flags.prefixCacheMib * 2 ** 20),
  });
  let http;
  try {
    http = await listen(server, { port: flags.port, host: flags.host });
  } catch (e) {
    model.dispose();
    const code = (e as { code?: string }).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EINVAL') {
      throw new UsageError(`cannot listen on ${flags.host}:${flags.port} (${code})`);
    }
    throw e;
  }
  const host = flags.host.includes(':') ? `[${flags.host}]` : flags.host;
  console.log(`serving ${modelId} at http://${host}:${http.port}/v1 (${kernelsRun(model)}, ` +
    `${flags.maxSessions ?? 4} at once${flags.apiKey ? ', API key required' : ''}); Ctrl-C stops`);
  const stop = async () => {
    await http.close();
    model.dispose();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

// ---- info ----

async function infoCommand(flags: ModelFlags): Promise<void> {
  const model = await load(flags);
  const chosen = model.cacheBytesPerToken(flags.cache); // BAD_INPUT before any output, for a format the model cannot keep
  const c = model.config, a = c.attention;
  const rows: [string, string][] = [];
  const kind = a.kind === 'mla' ? 'MLA' : a.kvHeads === a.heads ? 'MHA' : a.kvHeads === 1 ? 'MQA' : 'GQA';
  rows.push(['model', flags.model ?? 'fortune-mla (built in)']);
  rows.push(['architecture', `${c.architecture}: ${kind}, ${c.layers} layers, hidden ${c.hidden}, vocab ${int(c.vocabSize)}, context ${int(c.maxPositions)}`]);
  rows.push(['attention', a.kind === 'mla'
    ? `${a.heads} heads, q_lora_rank ${a.qLoraRank ?? 'none'}, kv_lora_rank ${a.kvLoraRank}, qk_nope ${a.nopeDim}, qk_rope ${a.ropeDim}, v ${a.vDim}`
    : `${a.heads} heads, ${a.kvHeads} KV heads, head_dim ${a.headDim}`]);
  const ffn = c.ffn[0];
  rows.push(['feed-forward', `SwiGLU, intermediate ${ffn.intermediate}`]);
  // Where this model computes differently from its checkpoint's own code (window, LongRoPE set).
  for (const note of c.notes ?? []) rows.push(['note', note]);
  rows.push(['parameters', int(parameterCount(c))]);
  rows.push(['weight bytes', `${int(model.weightBytes)} (${mib(model.weightBytes)}, weights ${model.weightFormat})`]);
  const t = model.tokenizer;
  rows.push(['tokenizer', t ? `${int(t.vocabSize)} tokens, BOS ${t.bosToken ?? 'none'}, EOS ${t.eosToken ?? 'none'}, chat template ${t.chatTemplate ? 'yes' : 'no'}` : 'none (no tokenizer.json)']);
  const gc = model.generationConfig;
  if (gc) {
    const parts = [gc.doSample ? 'sample' : 'greedy'];
    if (gc.doSample && gc.temperature !== undefined) parts.push(`temperature ${gc.temperature}`);
    if (gc.topK !== undefined) parts.push(`top_k ${gc.topK}`);
    if (gc.topP !== undefined) parts.push(`top_p ${gc.topP}`);
    if (gc.maxNewTokens !== undefined) parts.push(`max_new_tokens ${gc.maxNewTokens}`);
    rows.push(['generation', parts.join(', ')]);
  }
  rows.push(['simd', model.simd]);
  const w = Math.max(...rows.map(([k]) => k.length)) + 2;
  for (const [k, v] of rows) console.log(k.padEnd(w) + v);

  console.log('\nWeights in each format (bytes; WebAssembly memory with a chunk\'s cache; fits in 4 GiB?):');
  for (const f of ['auto', 'f32', 'bf16', 'int8', 'int4'] as const) {
    const need = model.memoryFor(f);
    const label = f === 'auto' ? 'loaded' : f;
    console.log(`  ${label.padEnd(6)}${int(need.weights).padStart(16)} B weights ${int(need.total).padStart(16)} B memory  ${need.fits ? 'fits' : 'does not fit'}`);
  }

  console.log(`\nKV cache per token (numbers per layer; bytes over ${c.layers} layers in f32):`);
  const table = cacheEquivalents(c);
  const lw = Math.max(...table.map((r) => r.label.length)) + 2;
  const fw = Math.max(...table.map((r) => r.formula.length)) + 2;
  for (const r of table) {
    console.log(`  ${r.label.padEnd(lw)}${r.formula.padEnd(fw)}${String(r.numbers).padStart(6)} numbers ${int(r.bytesPerToken).padStart(9)} B/token`);
  }
  // This model's own cache in each format it can keep (--cache marks the one asked for).
  const formats = a.kind === 'mla' ? CACHE_FORMATS : ['f32' as const];
  console.log(`\nThis model's KV cache per token by format (--cache ${flags.cache}: ${int(chosen)} B/token):`);
  for (const f of formats) {
    const b = model.cacheBytesPerToken(f);
    console.log(`  ${f.padEnd(6)}${int(b).padStart(9)} B/token${f === flags.cache ? '  <' : ''}`);
  }
  model.dispose();
}

// ---- perplexity ----

async function perplexityCommand(flags: ModelFlags & { file: string; window?: number }): Promise<void> {
  let text: string;
  try {
    text = readFileSync(flags.file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${flags.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const model = await load(flags);
  const tok = model.tokenizer;
  if (!tok) throw new UsageError(`${flags.model ?? 'the model'} has no tokenizer.json`);
  const cacheBytes = model.cacheBytesPerToken(flags.cache); // BAD_INPUT before scoring, for a format the model cannot keep
  const ids = tok.encode(text, { addSpecialTokens: false });
  const bos = tok.bosTokenId ?? model.config.bosTokenId;
  // By default the windows the model was made for (its context), capped as sessions are: a
  // 160k-position window would not fit memory, and 4096 positions score every token well.
  const W = flags.window ?? Math.min(model.config.maxPositions, 4096);
  if (W > model.config.maxPositions) throw new UsageError(`--window ${W} is more than the model's context (${model.config.maxPositions})`);
  if (W < 2) throw new UsageError('--window must be at least 2');
  // Windows of W positions. With a BOS, each window is BOS + W − 1 new tokens and every token is
  // scored; without, windows overlap by one token and all but the file's first token are scored.
  const step = W - 1;
  const minTokens = bos === null ? 2 : 1;
  if (ids.length < minTokens) throw new UsageError(`${flags.file} has too little text to score`);
  const starts: number[] = [];
  for (let s = 0; s < (bos === null ? ids.length - 1 : ids.length); s += step) starts.push(s);
  const V = model.config.vocabSize;

  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'scoring {bar} {value}/{total} windows | {eta_formatted} left', stream: process.stderr, clearOnComplete: true },
      cliProgress.Presets.shades_classic)
    : null;
  bar?.start(starts.length, 0);
  let nll = 0, scored = 0;
  const t0 = performance.now();
  for (const s of starts) {
    const window = bos === null ? ids.slice(s, s + W) : [bos, ...ids.slice(s, s + step)];
    const logits = model.forward(window, { cache: flags.cache });
    for (let t = 0; t + 1 < window.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max);
      nll += max + Math.log(sum) - row[window[t + 1]];
      scored++;
    }
    bar?.increment();
    await new Promise<void>((r) => setImmediate(r));
  }
  bar?.stop();
  const ms = performance.now() - t0;
  let bytes = new TextEncoder().encode(text).length;
  if (bos === null) bytes -= new TextEncoder().encode(tok.decode([ids[0]])).length;
  const perToken = nll / scored, perByte = nll / bytes;
  console.log(`file        ${flags.file}: ${int(bytes)} bytes scored, ${int(scored)} tokens, ${starts.length} window(s) of ${W} positions${bos === null ? '' : ' (BOS first)'}`);
  console.log(`loss        ${perToken.toFixed(4)} nats/token, ${perByte.toFixed(4)} nats/byte (${(perByte / Math.LN2).toFixed(4)} bits/byte)`);
  console.log(`perplexity  ${Math.exp(perToken).toFixed(3)} per token, ${Math.exp(perByte).toFixed(3)} per byte`);
  console.log(`KV cache    ${flags.cache}, ${int(cacheBytes)} B/token`);
  console.log(`time        ${(ms / 1000).toFixed(1)} s (${formatRate(scored, ms)}), ${kernelsRun(model)}`);
  model.dispose();
}

interface QuantizeFlags { model: string; type: string; keep?: string[]; out: string }

async function quantizeCommand(flags: QuantizeFlags): Promise<void> {
  if (!/\.gguf$/i.test(flags.out)) throw new UsageError(`--out ${flags.out}: the file name should end in .gguf`);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'writing {bar} {percentage}% | {eta_formatted} left', stream: process.stderr, clearOnComplete: true },
      cliProgress.Presets.shades_classic)
    : null;
  const t0 = performance.now();
  let total = 0;
  // Ctrl-C stops the writing and removes the partial file.
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  process.once('SIGINT', onInterrupt);
  try {
    await quantizeToFile(flags.model, flags.out, {
      type: flags.type, keep: flags.keep, signal: stop.signal,
      onProgress: (done, all) => {
        if (total === 0) { total = all; bar?.start(all, 0); }
        bar?.update(done);
      },
    });
  } catch (e) {
    if (!(e instanceof MlaError && e.code === 'ABORTED')) throw e;
    bar?.stop();
    console.error(`mla-wasm: stopped; ${flags.out} was not written`);
    process.exitCode = 130;
    return;
  } finally {
    process.off('SIGINT', onInterrupt);
    bar?.stop();
  }
  const mb = (total / 2 ** 20).toFixed(1);
  console.log(`wrote ${flags.out}: ${mb} MiB, ${flags.type.toUpperCase()} matrices, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// ---- convert ----

interface ConvertFlags { model: string; kvRank: number; ropeDim: number; calibration?: string | false; samples?: number; seed?: number; eval?: string; latentNorm?: boolean; gguf?: boolean; type?: string; out: string }

/** Held-out loss in nats/byte, windows of 192 with BOS first, as `perplexity --window 192` scores. */
function lossPerByte(model: Model, text: string, W = 192): number {
  const tok = model.tokenizer;
  if (!tok) throw new UsageError('the model has no tokenizer.json to score --eval');
  const ids = tok.encode(text, { addSpecialTokens: false });
  const bos = tok.bosTokenId ?? model.config.bosTokenId ?? ids[0];
  const V = model.config.vocabSize;
  let nll = 0;
  for (let s = 0; s < ids.length; s += W - 1) {
    const win = [bos, ...ids.slice(s, s + W - 1)];
    const logits = model.forward(win);
    for (let t = 0; t + 1 < win.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity, sum = 0;
      for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
      for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max);
      nll += max + Math.log(sum) - row[win[t + 1]];
    }
  }
  return nll / new TextEncoder().encode(text).length;
}

async function convertCommand(flags: ConvertFlags): Promise<void> {
  const readText = (f: string): string => {
    try { return readFileSync(f, 'utf8'); } catch (e) { throw new UsageError(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
  };
  if (flags.gguf && !flags.latentNorm) throw new UsageError('--gguf needs --latent-norm: llama.cpp\'s deepseek2 always applies the latent RMSNorm');
  if (typeof flags.calibration === 'string' && (flags.samples !== undefined || flags.seed !== undefined)) throw new UsageError('--samples and --seed are for the model\'s own samples, not a --calibration text');
  if (flags.type !== undefined && !flags.gguf) throw new UsageError('--type is for --gguf output');
  const calibration = typeof flags.calibration === 'string' ? readText(flags.calibration) : flags.calibration;
  const evalText = flags.eval === undefined ? undefined : readText(flags.eval);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: '{stage} {bar} {value}/{total} {unit} | {eta_formatted} left', stream: process.stderr, clearOnComplete: true },
      cliProgress.Presets.shades_classic)
    : null;
  let stage = '';
  const t0 = performance.now();
  let mla;
  try {
    mla = await convertToMla(flags.model, {
      kvRank: flags.kvRank, ropeDim: flags.ropeDim, calibration, samples: flags.samples, seed: flags.seed, latentNorm: flags.latentNorm,
      onProgress: (done, all, now) => {
        if (now !== stage) {
          stage = now;
          bar?.stop();
          bar?.start(all, 0, now === 'layers' ? { stage: 'converting ', unit: 'layers' } : { stage: 'calibrating', unit: calibration === undefined ? 'sampled windows' : 'windows' });
        }
        bar?.update(done);
      },
    });
  } finally {
    bar?.stop();
  }
  if (flags.gguf) await writeConvertedGguf(mla, flags.out, { type: flags.type });
  else await writeConvertedFolder(mla, flags.out);
  const s = mla.summary;
  console.log(`wrote ${flags.out} (${flags.gguf ? `deepseek2 GGUF, ${flags.type ?? 'f32'}` : 'DeepseekV2ForCausalLM'}, ${s.method === 'weights' ? 'plain weight SVD' : `calibrated on ${int(s.calibrationTokens)} tokens ${s.method === 'samples' ? 'the model sampled' : 'of --calibration'}`}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`cache       ${s.cacheBefore} → ${s.cacheAfter} numbers per token per layer (${(s.cacheBefore / s.cacheAfter).toFixed(2)}× smaller): kv_rank ${flags.kvRank} + rope ${flags.ropeDim}`);
  console.log(`rope        ${s.ropeSpacing} rungs per source frequency step (rope_theta ${Number(s.ropeTheta.toPrecision(6))})`);
  s.layers.forEach((l, i) => console.log(`layer ${String(i).padEnd(5)} ${l.rotaryPairs}/${l.sourcePairs} key pairs keep a rotation, carrying ${(100 * l.rotaryEnergy).toFixed(1)}% of the key energy; latent keeps ${(100 * l.latentEnergy).toFixed(1)}% of K/V energy`));
  if (evalText !== undefined) {
    const before = await loadModel(flags.model);
    const a = lossPerByte(before, evalText);
    before.dispose();
    const after = await loadModel(flags.out);
    const b = lossPerByte(after, evalText);
    after.dispose();
    console.log(`held-out    ${a.toFixed(4)} → ${b.toFixed(4)} nats/byte (${b >= a ? '+' : ''}${((b / a - 1) * 100).toFixed(1)}%)`);
  }
}

// ---- main ----

/** The version in package.json, beside dist/ (and src/) in the package. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function program(): Command {
  const p = new Command('mla-wasm')
    .description('Run DeepSeek-style MLA (and Llama-layout) language models on WebAssembly SIMD kernels.')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .version(packageVersion(), '-V, --version', 'print the version');
  samplingOptions(modelOptions(p.command('generate'), false))
    .description('stream a continuation of a prompt, then speed and KV cache size')
    .argument('[prompt]', `the prompt (\\n for a newline; default: ${JSON.stringify(DEFAULT_PROMPT)})`)
    .option('-p, --prompt <text>', 'the prompt, as a flag')
    .option('--truncate-prompt', 'a prompt longer than the model\'s context keeps its last tokens (leaving room for --max-new-tokens, at most half the context) instead of an error')
    .option('--logprobs <n>', `after the text, each token's log-probability and its n most likely alternatives (0 to ${MAX_TOP_LOGPROBS})`, integerIn(0, MAX_TOP_LOGPROBS))
    .action(generateCommand);
  samplingOptions(modelOptions(p.command('chat'), false))
    .description('talk to the model through its chat template (history stays in the KV cache)')
    .option('--system <text>', 'a system message first')
    .option('--context <n>', 'positions the conversation keeps (default: the model\'s context, at most 4096); past it, its oldest turns are dropped', integer(1))
    .option('--session <file>', 'keep the conversation (messages and KV cache) in this file: taken up again when it exists, saved after every answer')
    .action(chatCommand);
  modelOptions(p.command('serve'), false)
    .description('an OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health')
    .option('--port <n>', 'port (0: any free one)', integerIn(0, 65535), 8080)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--max-sessions <n>', 'generations at once, each with its own KV cache (default 4)', integer(1))
    .option('--max-queued <n>', 'requests that wait for a free session; more get 429 (default 4 × --max-sessions)', integer(0))
    .option('--api-key <key>', 'require Authorization: Bearer KEY on /v1/ requests')
    .option('--prefix-cache-mib <n>', 'MiB of finished conversations kept as snapshots, so a request extending one runs only what is new (default 128; 0 = off)', number((n) => n >= 0, 'a number ≥ 0'))
    .action(serveCommand);
  modelOptions(p.command('info'), false)
    .description('architecture, parameters, weight bytes, KV cache per token beside MHA/GQA/MQA/MLA')
    .action(infoCommand);
  modelOptions(p.command('perplexity'), false)
    .description('loss per token and per byte, and perplexity, over a text file')
    .requiredOption('--file <path>', 'UTF-8 text to score')
    .option('--window <n>', 'positions per window (default: the model\'s context, max_position_embeddings, at most 4096)', integer(2))
    .action(perplexityCommand);
  p.command('quantize')
    .description('write a model as a GGUF file (llama.cpp\'s format): vectors F32, matrices in --type')
    .requiredOption('--model <dir|file>', 'model folder, .gguf file or URL to convert')
    .addOption(new Option('--type <type>', 'type of the matrices').choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0']).default('q8_0'))
    .option('--keep <name...>', 'tensors (Hugging Face names) kept F32')
    .requiredOption('--out <file.gguf>', 'the file to write (written under a temporary name, renamed when complete)')
    .action(quantizeCommand);
  p.command('convert')
    .description('convert an MHA/GQA (Llama-layout) model to MLA without training: a DeepseekV2ForCausalLM folder')
    .requiredOption('--model <dir>', 'the source model folder')
    .requiredOption('--kv-rank <n>', 'latent rank (kv_lora_rank)', integer(1))
    .requiredOption('--rope-dim <n>', 'shared rotary key dims (qk_rope_head_dim, even)', integer(2))
    .option('--calibration <file>', 'text whose activations weight the PCA (default: text the model samples itself)')
    .option('--no-calibration', 'no calibration: a plain weight SVD (worse on every model measured)')
    .option('--samples <n>', 'tokens the model samples for its own calibration (default: max(2048, 4 × hidden_size))', integer(2))
    .option('--seed <n>', 'seed of that sampling (default 0)', integer(0))
    .option('--eval <file>', 'text to score source and result on (nats/byte, windows of 192)')
    .option('--latent-norm', 'keep DeepSeek\'s RMSNorm on the latent, its weight fitted on the calibration')
    .option('--gguf', 'write a deepseek2 GGUF file (llama.cpp) instead of a folder; needs --latent-norm')
    .addOption(new Option('--type <type>', 'with --gguf: type of the matrices (default f32)').choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0']))
    .requiredOption('--out <dir|file.gguf>', 'the folder (or with --gguf the file) to write, under a temporary name renamed when complete')
    .action(convertCommand);
  for (const c of p.commands) c.exitOverride().configureOutput({ outputError: () => {} });
  return p;
}

function oneLine(e: unknown): string | null {
  if (e instanceof MlaError || e instanceof UsageError) return e.message.split('\n')[0];
  if (e instanceof CommanderError) return e.message.replace(/^error: /, '').split('\n')[0];
  return null;
}

async function main(): Promise<void> {
  // A reader that stops early (`| head`) closes the pipe: stop quietly, as other command-line tools do.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  try {
    await program().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')) {
      process.exitCode = e.exitCode;
      return;
    }
    const line = oneLine(e);
    if (line !== null) {
      console.error(`mla-wasm: ${line}`);
      process.exitCode = 1;
      return;
    }
    // Not something a user did: say so in one line too; MLA_WASM_DEBUG=1 shows the stack.
    if (process.env.MLA_WASM_DEBUG) console.error(e);
    else console.error(`mla-wasm: internal error: ${(e as Error)?.message ?? String(e)} (MLA_WASM_DEBUG=1 shows the stack)`);
    process.exitCode = 2;
  }
}

await main();
