// The JSON a request gets back, in OpenAI's shapes: a whole completion or chat completion, or the
// chunks of its server-sent-event stream, one choice or several (prompt arrays, n); log-probabilities
// in each endpoint's own format (completions: parallel lists, null for an echoed prompt's first
// token; chat: a list of { token, logprob, bytes, top_logprobs }).
import type { Tokenizer } from '../formats/tokenizer.js';
import type { GenerationPiece, GenerationStats, StopReason } from '../generate/generate.js';
import type { RequestKind } from './requests.js';

export type FinishReason = 'stop' | 'length';

export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }

/** OpenAI's reason: the end-of-text token or a stop string is 'stop'; max_tokens or the context, 'length'. */
export const finishReason = (r: StopReason | null): FinishReason => (r === 'length' || r === 'context' ? 'length' : 'stop');

/** The tokens a generation ran as its prompt (reused ones included). */
export const promptTokensOf = (s: GenerationStats): number => s.promptTokens + s.reusedTokens;

export const usageOf = (prompt: number, completion: number): Usage => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });

/** One choice of a whole answer: what it generated and why it ended, after the prompt pieces when echoed. */
export interface Choice { pieces: GenerationPiece[]; reason: StopReason | null; echoed?: GenerationPiece[] }

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** An object whose keys keep their order in responseJson, integer-like ones ("0") included. */
class OrderedObject {
  constructor(readonly entries: ReadonlyArray<readonly [string, unknown]>) {}
  toJSON(): object { return Object.fromEntries(this.entries); }
}

/**
 * A response as JSON text: JSON.stringify's, except that completions' top_logprobs list their
 * alternatives most likely first even when a token's text is integer-like, which a JavaScript
 * object would list first.
 */
export function responseJson(v: unknown): string {
  const members = (entries: Iterable<readonly [string, unknown]>) =>
    '{' + [...entries].filter(([, x]) => x !== undefined).map(([k, x]) => `${JSON.stringify(k)}:${responseJson(x)}`).join(',') + '}';
  if (v instanceof OrderedObject) return members(v.entries);
  if (Array.isArray(v)) return '[' + v.map((x) => (x === undefined ? 'null' : responseJson(x))).join(',') + ']';
  if (v !== null && typeof v === 'object') return members(Object.entries(v));
  return JSON.stringify(v) ?? 'null';
}

/** One response's id, time and model, and how its pieces read as text and log-probabilities. */
export class ResponseShaper {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  /** Completions' text_offset: where each choice's text has got to. */
  private readonly textOffsets = new Map<number, number>();

  constructor(readonly kind: RequestKind, readonly model: string, private readonly tok: Tokenizer, private readonly logprobs: number | null) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
  }

  /** The whole answer: every choice's pieces, how each ended, and the request's token counts. */
  complete(choices: Choice[], usage: Usage): object {
    if (this.kind === 'completion') {
      return {
        ...this.head('text_completion'),
        choices: choices.map((c, index) => {
          const pieces = [...(c.echoed ?? []), ...c.pieces];
          return { index, text: pieces.map((p) => p.text).join(''), logprobs: this.completionLogprobs(index, pieces), finish_reason: finishReason(c.reason) };
        }),
        usage,
      };
    }
    return {
      ...this.head('chat.completion'),
      choices: choices.map((c, index) => ({
        index, message: { role: 'assistant', content: c.pieces.map((p) => p.text).join(''), refusal: null },
        logprobs: this.chatLogprobs(c.pieces), finish_reason: finishReason(c.reason),
      })),
      usage,
    };
  }

  /** Chat streams open each choice with the assistant's role and no text; an echoed completion, with its prompt. */
  first(index: number, echoed?: GenerationPiece[]): object | null {
    if (this.kind === 'chat') return this.chunk(index, { role: 'assistant', content: '' }, null, null);
    return echoed?.length ? this.chunk(index, echoed.map((p) => p.text).join(''), this.completionLogprobs(index, echoed), null) : null;
  }

  /** A piece as a chunk; null when it has nothing to say (no text, no log-probabilities). */
  piece(index: number, p: GenerationPiece): object | null {
    if (p.text === '' && this.logprobs === null) return null;
    return this.kind === 'chat'
      ? this.chunk(index, { content: p.text }, this.chatLogprobs([p]), null)
      : this.chunk(index, p.text, this.completionLogprobs(index, [p]), null);
  }

  /** A choice's last chunk: no text, the finish reason. */
  last(index: number, reason: StopReason | null): object {
    return this.chunk(index, this.kind === 'chat' ? {} : '', null, finishReason(reason));
  }

  /** stream_options.include_usage: a chunk with no choices and the token counts. */
  usage(usage: Usage): object {
    return { ...this.head(this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion'), choices: [], usage };
  }

  private head(object: string) {
    return { id: this.id, object, created: this.created, model: this.model };
  }

  private chunk(index: number, delta: object | string, logprobs: object | null, finish_reason: FinishReason | null): object {
    if (this.kind === 'chat') return { ...this.head('chat.completion.chunk'), choices: [{ index, delta, logprobs, finish_reason }] };
    return { ...this.head('text_completion'), choices: [{ index, text: delta, logprobs, finish_reason }] };
  }

  /**
   * How logprobs name a token: special tokens by name, others by their bytes as text (leading
   * space included), or, when a token is part of a character, by its bytes as OpenAI writes them
   * (bytes:\xe2\x80), so that such tokens keep apart (as text they would all be U+FFFD).
   */
  private token(id: number): string {
    if (this.tok.isSpecial(id)) return this.tok.decode([id]);
    const bytes = this.tok.tokenBytes(id);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return 'bytes:' + Array.from(bytes, (b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
    }
  }

  private completionLogprobs(index: number, pieces: GenerationPiece[]): object | null {
    if (this.logprobs === null) return null;
    const text_offset: number[] = [];
    let offset = this.textOffsets.get(index) ?? 0;
    for (const p of pieces) {
      text_offset.push(offset);
      offset += p.text.length;
    }
    this.textOffsets.set(index, offset);
    return {
      tokens: pieces.map((p) => this.token(p.id)),
      // An echoed prompt's first token has no log-probability: nothing came before it.
      token_logprobs: pieces.map((p) => p.logprob ?? null),
      top_logprobs: pieces.map((p) => (p.topLogprobs ? this.alternatives(p.topLogprobs) : null)),
      text_offset,
    };
  }

  /** Token → logprob, most likely first; two tokens of the same text keep the likelier one. */
  private alternatives(top: ReadonlyArray<{ id: number; logprob: number }>): OrderedObject {
    const seen = new Map<string, number>();
    for (const t of top) {
      const name = this.token(t.id);
      if (!seen.has(name)) seen.set(name, t.logprob);
    }
    return new OrderedObject([...seen]);
  }

  private chatLogprobs(pieces: GenerationPiece[]): object | null {
    if (this.logprobs === null) return null;
    const entry = (id: number, logprob: number) => ({ token: this.token(id), logprob, bytes: Array.from(this.tok.tokenBytes(id)) });
    return {
      content: pieces.map((p) => ({ ...entry(p.id, p.logprob!), top_logprobs: p.topLogprobs!.map((t) => entry(t.id, t.logprob)) })),
      refusal: null,
    };
  }
}
