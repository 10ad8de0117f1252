// Errors as an OpenAI-compatible server returns them: an HTTP status and a body
// { error: { message, type, param, code } }, which the official clients turn into typed errors.
import { MlaError } from '../errors.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request field that is wrong: 400 naming it. */
export const badParam = (param: string, message: string, code = 'invalid_value') =>
  new ApiError(400, message, 'invalid_request_error', param, code);

/**
 * What an error becomes on the wire. The library's own errors keep their code (lower-cased):
 * the caller's mistakes are 400, a full server 429 or 503; anything else is a 500 that says no
 * more than that, since its message may hold internals.
 */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof MlaError) {
    switch (e.code) {
      case 'BAD_INPUT': case 'BAD_TOKEN':
        return new ApiError(400, e.message, 'invalid_request_error', null, e.code.toLowerCase());
      case 'CACHE_FULL':
        return new ApiError(400, e.message, 'invalid_request_error', null, 'context_length_exceeded');
      case 'BUSY':
        return new ApiError(429, e.message, 'rate_limit_error', null, 'busy');
      case 'OUT_OF_MEMORY':
        return new ApiError(503, e.message, 'server_error', null, 'out_of_memory');
      case 'DISPOSED':
        return new ApiError(503, 'the server is shutting down', 'server_error', null, 'disposed');
      default:
        return new ApiError(500, `generation failed: ${e.message}`, 'server_error', null, e.code.toLowerCase());
    }
  }
  return new ApiError(500, 'internal server error', 'server_error', null, 'internal_error');
}
