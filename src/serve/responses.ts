// The JSON a request gets back, in OpenAI's shapes: a whole completion or chat completion, or the
// chunks of its server-sent-event stream; log-probabilities in each endpoint's own format
// (completions: parallel lists; chat: a list of { token, logprob, bytes, top_logprobs }).
import type { Tokenizer } from '../formats/tokenizer.js';
import type { GenerationPiece, GenerationStats, StopReason } from '../generate/generate.js';
import type { RequestKind } from './requests.js';

export type FinishReason = 'stop' | 'length';

export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }

/** OpenAI's reason: the end-of-text token or a stop string is 'stop'; max_tokens or the context, 'length'. */
export const finishReason = (r: StopReason | null): FinishReason => (r === 'length' || r === 'context' ? 'length' : 'stop');

export function usageOf(s: GenerationStats): Usage {
  const prompt = s.promptTokens + s.reusedTokens;
  return { prompt_tokens: prompt, completion_tokens: s.generatedTokens, total_tokens: prompt + s.generatedTokens };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** One response's id, time and model, and how its pieces read as text and log-probabilities. */
export class ResponseShaper {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  private textOffset = 0;

  constructor(readonly kind: RequestKind, readonly model: string, private readonly tok: Tokenizer, private readonly logprobs: number | null) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
  }

  /** The whole answer: every piece, and how and at what cost it ended. */
  complete(pieces: GenerationPiece[], stats: GenerationStats): object {
    const text = pieces.map((p) => p.text).join('');
    const finish_reason = finishReason(stats.stopReason);
    const usage = usageOf(stats);
    if (this.kind === 'completion') {
      return { ...this.head('text_completion'), choices: [{ index: 0, text, logprobs: this.completionLogprobs(pieces), finish_reason }], usage };
    }
    return {
      ...this.head('chat.completion'),
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: this.chatLogprobs(pieces), finish_reason }],
      usage,
    };
  }

  /** Chat streams open with the assistant's role and no text. */
  first(): object | null {
    return this.kind === 'chat' ? this.chunk({ role: 'assistant', content: '' }, null, null) : null;
  }

  /** A piece as a chunk; null when it has nothing to say (no text, no log-probabilities). */
  piece(p: GenerationPiece): object | null {
    if (p.text === '' && this.logprobs === null) return null;
    return this.kind === 'chat'
      ? this.chunk({ content: p.text }, this.chatLogprobs([p]), null)
      : this.chunk(p.text, this.completionLogprobs([p]), null);
  }

  /** The last chunk: no text, the finish reason. */
  last(stats: GenerationStats): object {
    return this.chunk(this.kind === 'chat' ? {} : '', null, finishReason(stats.stopReason));
  }

  /** stream_options.include_usage: a chunk with no choices and the token counts. */
  usage(stats: GenerationStats): object {
    return { ...this.head(this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion'), choices: [], usage: usageOf(stats) };
  }

  private head(object: string) {
    return { id: this.id, object, created: this.created, model: this.model };
  }

  private chunk(delta: object | string, logprobs: object | null, finish_reason: FinishReason | null): object {
    if (this.kind === 'chat') return { ...this.head('chat.completion.chunk'), choices: [{ index: 0, delta, logprobs, finish_reason }] };
    return { ...this.head('text_completion'), choices: [{ index: 0, text: delta, logprobs, finish_reason }] };
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

  private completionLogprobs(pieces: GenerationPiece[]): object | null {
    if (this.logprobs === null) return null;
    const text_offset: number[] = [];
    for (const p of pieces) {
      text_offset.push(this.textOffset);
      this.textOffset += p.text.length;
    }
    return {
      tokens: pieces.map((p) => this.token(p.id)),
      token_logprobs: pieces.map((p) => p.logprob!),
      top_logprobs: pieces.map((p) => Object.fromEntries(p.topLogprobs!.map((t) => [this.token(t.id), t.logprob]))),
      text_offset,
    };
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
