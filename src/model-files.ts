// The optional files of a model folder beside config.json: tokenizer.json, tokenizer_config.json,
// generation_config.json and chat_template.jinja. Absent files are simply absent; a file that is
// there but unreadable or not JSON is an error naming it. The default model takes this path too.
import { MlaError } from './errors.js';
import { DEFAULT_MODEL_URL, toUrl, type ModelSource } from './source.js';
import type { TokenizerFiles } from './tokenizer.js';

/** Bytes of `url`, or undefined when there is no such file (ENOENT, HTTP 404 and the like). */
async function readOptional(url: URL): Promise<Uint8Array | undefined> {
  if (url.protocol === 'file:') {
    const fs = await import('node:fs/promises');
    try {
      return new Uint8Array(await fs.readFile(url));
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new MlaError('BAD_SOURCE', `cannot read ${decodeURI(url.pathname)}: ${(e as Error).message}`);
    }
  }
  let res: Response;
  try { res = await fetch(url); } catch (e) {
    throw new MlaError('BAD_SOURCE', `cannot fetch ${url}: ${(e as Error).message}`);
  }
  // Hubs answer 401/403/404 for files a repository does not have.
  if (res.status >= 400 && res.status < 500) return undefined;
  if (!res.ok) throw new MlaError('BAD_SOURCE', `cannot fetch ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function readJson(base: URL, name: string): Promise<unknown> {
  const bytes = await readOptional(new URL(name, base));
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new MlaError('BAD_CONFIG', `${name} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The tokenizer and generation files of a source. A folder or URL is read; an in-memory model may
 * carry them as `tokenizerJson`, `tokenizerConfig`, `generationConfig` and `chatTemplate`.
 */
export async function readTokenizerFiles(source: ModelSource | undefined): Promise<TokenizerFiles> {
  if (source === undefined) source = DEFAULT_MODEL_URL;
  if (typeof source === 'object' && source !== null && !(source instanceof URL)) {
    const s = source as unknown as Record<string, unknown>;
    return {
      tokenizerJson: s.tokenizerJson,
      tokenizerConfig: s.tokenizerConfig,
      generationConfig: s.generationConfig,
      chatTemplate: typeof s.chatTemplate === 'string' ? s.chatTemplate : undefined,
    };
  }
  if (typeof source !== 'string' && !(source instanceof URL)) return {};
  const base = new URL(toUrl(source));
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const [tokenizerJson, tokenizerConfig, generationConfig, template] = await Promise.all([
    readJson(base, 'tokenizer.json'),
    readJson(base, 'tokenizer_config.json'),
    readJson(base, 'generation_config.json'),
    readOptional(new URL('chat_template.jinja', base)),
  ]);
  const chatTemplate = template && new TextDecoder().decode(template);
  return { tokenizerJson, tokenizerConfig, generationConfig, chatTemplate };
}
