// Reading the body of /v1/completions and /v1/chat/completions: every field checked for its type
// and range, an unknown field refused by name (a misspelt option would otherwise be ignored), and
// the prompt measured against the context before anything runs. Each mistake is a 400 naming the
// field, as OpenAI's API does; an unknown model is a 404.
import type { ChatMessage } from '../formats/tokenizer.js';
import type { GenerateOptions } from '../generate/generate.js';
import { MAX_TOP_LOGPROBS } from '../generate/generate.js';
import type { Model } from '../generate/model.js';
import { ApiError, badParam } from './api-error.js';

export type RequestKind = 'completion' | 'chat';

export interface ParsedRequest {
  kind: RequestKind;
  /**
   * The prompts' token ids: what a completion runs (one or more: a prompt array), or the rendered
   * conversation of a chat (one).
   */
  prompts: number[][];
  /** Choices per prompt (`n`). The choices of a request are prompts × n, prompt by prompt. */
  n: number;
  /** Completions: the answer's text and logprobs start with the prompt's. */
  echo: boolean;
  /** Chat: the conversation, rendered again by Model.chat. */
  messages: ChatMessage[] | null;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the token counts. */
  includeUsage: boolean;
  /** Alternatives per token when log-probabilities were asked for, else null. */
  logprobs: number | null;
  /** What Model.generate / Model.chat get (no signal or session: the server adds those). */
  options: GenerateOptions & { maxNewTokens: number };
}

/** OpenAI's limit on `n`. */
const MAX_N = 128;

/** The completion length when a request names none: OpenAI's 16 for completions; chat: what the context leaves. */
const DEFAULT_COMPLETION_TOKENS = 16;
/**
 * A chat answer without max_tokens may run to the end of the context, but of at most this many
 * positions (a session's default capacity): each request's cache is allocated up front, and a
 * 128k-context model would otherwise take gigabytes for "Hi".
 */
const DEFAULT_CHAT_CONTEXT = 4096;
const MAX_STOPS = 4;

const COMMON = ['model', 'max_tokens', 'temperature', 'top_p', 'stop', 'seed', 'stream', 'stream_options', 'n', 'user',
  'presence_penalty', 'frequency_penalty', 'logit_bias', 'top_k', 'min_p', 'repetition_penalty', 'response_format'];
const FIELDS: Record<RequestKind, Set<string>> = {
  completion: new Set([...COMMON, 'prompt', 'logprobs', 'echo']),
  chat: new Set([...COMMON, 'messages', 'logprobs', 'top_logprobs', 'max_completion_tokens']),
};
const ROLES = new Set(['system', 'developer', 'user', 'assistant']);

type Body = Record<string, unknown>;
const isObject = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/** The JSON text of a request as an object; 400 when it is not JSON or not an object. */
export function parseJson(text: string): Body {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, 'invalid_request_error', null, 'invalid_json');
  }
  if (!isObject(body)) throw new ApiError(400, `the request body must be a JSON object, got ${typeName(body)}`, 'invalid_request_error', null, 'invalid_json');
  return body;
}

/** A field's value, with null taken as not given (as OpenAI does). */
function field(body: Body, name: string): unknown {
  const v = body[name];
  return v === null ? undefined : v;
}

function number(body: Body, name: string, ok: (v: number) => boolean, want: string, integer = false): number | undefined {
  const v = field(body, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v)) || !ok(v)) {
    throw badParam(name, `'${name}' must be ${want}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function boolean(body: Body, name: string): boolean | undefined {
  const v = field(body, name);
  if (v !== undefined && typeof v !== 'boolean') throw badParam(name, `'${name}' must be a boolean, got ${typeName(v)}`);
  return v as boolean | undefined;
}

/** Check a request body for `model`; throws ApiError. */
export function parseRequest(kind: RequestKind, body: Body, model: Model, modelId: string): ParsedRequest {
  for (const key of Object.keys(body)) {
    if (!FIELDS[kind].has(key)) {
      throw badParam(key, `unknown field '${key}' for ${kind === 'chat' ? '/v1/chat/completions' : '/v1/completions'}; ` +
        `known: ${[...FIELDS[kind]].join(', ')}`, 'unknown_parameter');
    }
  }
  const name = field(body, 'model');
  if (name === undefined) throw badParam('model', "'model' is required", 'missing_required_parameter');
  if (typeof name !== 'string') throw badParam('model', `'model' must be a string, got ${typeName(name)}`);
  if (name !== modelId) {
    throw new ApiError(404, `the model '${name}' does not exist; this server has '${modelId}'`, 'invalid_request_error', 'model', 'model_not_found');
  }
  const tok = model.tokenizer!;

  let prompts: number[][];
  let messages: ChatMessage[] | null = null;
  if (kind === 'completion') {
    prompts = parsePrompts(field(body, 'prompt'), model);
  } else {
    messages = parseMessages(field(body, 'messages'));
    if (tok.chatTemplate === null) throw badParam('messages', 'this model has no chat template; use /v1/completions', 'no_chat_template');
    prompts = [tok.encodeChat(messages, { addGenerationPrompt: true })];
  }
  const echo = kind === 'completion' && (boolean(body, 'echo') ?? false);
  const n = number(body, 'n', (v) => v >= 1 && v <= MAX_N, `an integer in [1, ${MAX_N}]`, true) ?? 1;

  // A request runs with the longest of its prompts in mind: every choice gets the same max_tokens.
  const longest = Math.max(...prompts.map((ids) => ids.length));
  const context = model.config.maxPositions;
  const maxField = kind === 'chat' && field(body, 'max_completion_tokens') !== undefined ? 'max_completion_tokens' : 'max_tokens';
  // With echo, max_tokens 0 returns the prompt alone (how its log-probabilities are asked for).
  const least = echo ? 0 : 1;
  const asked = number(body, maxField, (v) => v >= least, `an integer ≥ ${least}`, true);
  const chatEnd = Math.min(context, Math.max(DEFAULT_CHAT_CONTEXT, longest + DEFAULT_COMPLETION_TOKENS));
  const maxTokens = asked ?? (kind === 'completion' ? Math.min(DEFAULT_COMPLETION_TOKENS, context - longest) : chatEnd - longest);
  if (longest + Math.max(maxTokens, least) > context) {
    throw new ApiError(400, `this model's context is ${context} tokens; the request needs ${longest} for the prompt ` +
      `and ${asked ?? least} for the completion`, 'invalid_request_error', asked !== undefined ? maxField : kind === 'chat' ? 'messages' : 'prompt',
    'context_length_exceeded');
  }

  // OpenAI's defaults (temperature 1, top-p 1, no top-k), not generation_config.json's: a client
  // that names no option gets what it would get from OpenAI.
  const options: ParsedRequest['options'] = {
    maxNewTokens: maxTokens,
    temperature: number(body, 'temperature', (v) => v >= 0 && v <= 2, 'a number in [0, 2]') ?? 1,
    topP: number(body, 'top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]') ?? 1,
    topK: number(body, 'top_k', (v) => v >= 0, 'an integer ≥ 0 (0 = no limit)', true) ?? 0,
    minP: number(body, 'min_p', (v) => v >= 0 && v <= 1, 'a number in [0, 1]') ?? 0,
    repetitionPenalty: number(body, 'repetition_penalty', (v) => v > 0, 'a number > 0 (1 = none)') ?? 1,
    presencePenalty: number(body, 'presence_penalty', (v) => v >= -2 && v <= 2, 'a number in [-2, 2]') ?? 0,
    frequencyPenalty: number(body, 'frequency_penalty', (v) => v >= -2 && v <= 2, 'a number in [-2, 2]') ?? 0,
  };
  const bias = parseLogitBias(field(body, 'logit_bias'), model.config.vocabSize);
  if (bias.size) options.logitBias = bias;
  const seed = number(body, 'seed', () => true, 'an integer', true);
  if (seed !== undefined) options.seed = seed;
  const stop = field(body, 'stop');
  if (stop !== undefined) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.length > MAX_STOPS || !list.every((s) => typeof s === 'string' && s.length > 0)) {
      throw badParam('stop', `'stop' must be a non-empty string or an array of at most ${MAX_STOPS} of them`);
    }
    if (list.length) options.stop = list;
  }
  if (field(body, 'user') !== undefined && typeof body.user !== 'string') throw badParam('user', `'user' must be a string`);

  const stream = boolean(body, 'stream') ?? false;
  const streamOptions = field(body, 'stream_options');
  let includeUsage = false;
  if (streamOptions !== undefined) {
    if (!stream) throw badParam('stream_options', "'stream_options' is only allowed with 'stream': true");
    if (!isObject(streamOptions) || Object.keys(streamOptions).some((k) => k !== 'include_usage')) {
      throw badParam('stream_options', "'stream_options' must be { include_usage?: boolean }");
    }
    includeUsage = boolean(streamOptions, 'include_usage') ?? false;
  }

  let logprobs: number | null = null;
  if (kind === 'completion') {
    logprobs = number(body, 'logprobs', (v) => v >= 0 && v <= MAX_TOP_LOGPROBS, `an integer in [0, ${MAX_TOP_LOGPROBS}]`, true) ?? null;
  } else {
    const want = boolean(body, 'logprobs') ?? false;
    const top = number(body, 'top_logprobs', (v) => v >= 0 && v <= MAX_TOP_LOGPROBS, `an integer in [0, ${MAX_TOP_LOGPROBS}]`, true);
    if (top !== undefined && !want) throw badParam('top_logprobs', "'top_logprobs' needs 'logprobs': true");
    logprobs = want ? top ?? 0 : null;
  }
  if (logprobs !== null) options.logprobs = logprobs;
  if (parseResponseFormat(field(body, 'response_format'))) options.format = 'json';
  return { kind, prompts, n, echo, messages, stream, includeUsage, logprobs, options };
}

/** A completion's prompt: a string, token ids, or a non-empty array of either (one choice each). */
function parsePrompts(prompt: unknown, model: Model): number[][] {
  if (prompt === undefined) throw badParam('prompt', "'prompt' is required", 'missing_required_parameter');
  const want = `'prompt' must be a non-empty string, an array of token ids, or a non-empty array of either, got ${typeName(prompt)}`;
  if (!Array.isArray(prompt) || prompt.length === 0) {
    if (typeof prompt !== 'string') throw badParam('prompt', want);
    return [promptIds(prompt, model, 'prompt')];
  }
  if (prompt.every((x) => typeof x === 'number')) return [promptIds(prompt, model, 'prompt')];
  return prompt.map((p, i) => {
    if (typeof p !== 'string' && !(Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number'))) throw badParam('prompt', want);
    return promptIds(p, model, `prompt[${i}]`);
  });
}

function promptIds(prompt: string | number[], model: Model, where: string): number[] {
  if (typeof prompt === 'string') {
    if (prompt.length === 0) throw badParam('prompt', `'${where}' is empty`);
    return model.tokenizer!.encode(prompt);
  }
  const V = model.config.vocabSize;
  const bad = prompt.findIndex((x) => !Number.isInteger(x) || x < 0 || x >= V);
  if (bad >= 0) throw badParam('prompt', `'${where}' token ${bad} is ${prompt[bad]}, not an integer in [0, ${V})`);
  return prompt;
}

/** OpenAI's logit_bias: an object of token ids (as JSON keys) to biases in [-100, 100]. */
function parseLogitBias(v: unknown, V: number): Map<number, number> {
  const bias = new Map<number, number>();
  if (v === undefined) return bias;
  if (!isObject(v)) throw badParam('logit_bias', `'logit_bias' must be an object of token ids to numbers, got ${typeName(v)}`);
  for (const [key, b] of Object.entries(v)) {
    const id = /^(0|[1-9]\d*)$/.test(key) ? Number(key) : NaN;
    if (!(id < V)) throw badParam('logit_bias', `'logit_bias' key ${JSON.stringify(key)} is not a token id in [0, ${V})`);
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) {
      throw badParam('logit_bias', `'logit_bias' value for token ${id} must be a number in [-100, 100], got ${JSON.stringify(b)}`);
    }
    if (b !== 0) bias.set(id, b);
  }
  return bias;
}

/**
 * response_format: { type: 'text' } (the default) or { type: 'json_object' } (JSON mode); true
 * for JSON mode. 'json_schema' is OpenAI's too, but this server does not take schemas.
 */
function parseResponseFormat(v: unknown): boolean {
  if (v === undefined) return false;
  if (!isObject(v)) throw badParam('response_format', `'response_format' must be an object { type: 'text' | 'json_object' }, got ${typeName(v)}`);
  const type = v.type;
  if (type === undefined) throw badParam('response_format.type', "'response_format.type' is required", 'missing_required_parameter');
  if (type === 'json_schema') {
    throw badParam('response_format.type', "'response_format.type' 'json_schema' is not supported; 'json_object' (any JSON object) is", 'unsupported_value');
  }
  if (type !== 'text' && type !== 'json_object') {
    throw badParam('response_format.type', `'response_format.type' must be 'text' or 'json_object', got ${JSON.stringify(type)}`);
  }
  for (const k of Object.keys(v)) {
    if (k !== 'type') throw badParam(`response_format.${k}`, `unknown field '${k}' in 'response_format'`, 'unknown_parameter');
  }
  return type === 'json_object';
}

/** OpenAI's messages: a role and a content that is a string or a list of text parts. */
function parseMessages(v: unknown): ChatMessage[] {
  if (v === undefined) throw badParam('messages', "'messages' is required", 'missing_required_parameter');
  if (!Array.isArray(v) || v.length === 0) throw badParam('messages', `'messages' must be a non-empty array, got ${typeName(v)}`);
  return v.map((m, i) => {
    const where = `messages[${i}]`;
    if (!isObject(m)) throw badParam(where, `'${where}' must be an object, got ${typeName(m)}`);
    for (const k of Object.keys(m)) {
      if (k !== 'role' && k !== 'content' && k !== 'name') throw badParam(`${where}.${k}`, `unknown field '${k}' in '${where}'`, 'unknown_parameter');
    }
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw badParam(`${where}.role`, `'${where}.role' must be one of ${[...ROLES].join(', ')}, got ${JSON.stringify(m.role)}`);
    }
    let content = m.content;
    if (Array.isArray(content) && content.every((p) => isObject(p) && p.type === 'text' && typeof p.text === 'string')) {
      content = content.map((p) => (p as { text: string }).text).join('');
    }
    if (typeof content !== 'string') throw badParam(`${where}.content`, `'${where}.content' must be a string or text parts, got ${typeName(m.content)}`);
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}
