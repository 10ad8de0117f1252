// The same server app under Deno and Bun (test/runtimes/serve.mjs, from a project that installed the
// packed package) and under Node through `mla-wasm serve`: the openai client gets the same greedy
// completion as the library gives in Node, a streamed chat, and typed errors.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { binary, root, type Runtime } from './runtimes/helpers.js';

const PROMPT = 'Q: What is the meaning of life?\nA:';
const children: ChildProcess[] = [];
let greedy: string;

/** Start a server process; resolves to the port from the first line it prints. */
function start(file: string, args: string[], cwd: string, portOf: (line: string) => number | null): Promise<number> {
  const child = spawn(file, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        const port = portOf(line);
        if (port === null) reject(new Error(`unexpected first line: ${line}`));
        else resolve(port);
      }
    });
    child.stderr!.on('data', (d) => { err += d; });
    child.on('exit', (code) => reject(new Error(`${path.basename(file)} exited with ${code}: ${err}`)));
  });
}

beforeAll(async () => {
  const model = await loadModel(undefined, { threads: 1 });
  greedy = '';
  for await (const p of model.generate(PROMPT, { temperature: 0, maxNewTokens: 24 })) greedy += p.text;
  model.dispose();
  copyFileSync(path.join(root, 'test/runtimes/serve.mjs'), path.join(inject('consumerDir'), 'serve.mjs'));
});
afterAll(() => {
  for (const c of children) c.kill('SIGTERM');
});

async function exercise(port: number): Promise<void> {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'runtime-key', maxRetries: 0 });
  const r = await client.completions.create({ model: 'fortune-mla', prompt: PROMPT, max_tokens: 24, temperature: 0 });
  expect(r.choices[0].text).toBe(greedy);
  const stream = await client.chat.completions.create({
    model: 'fortune-mla', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, temperature: 0, stream: true,
  });
  let n = 0;
  for await (const ch of stream) if (ch.choices[0]?.delta.content) n++;
  expect(n).toBeGreaterThan(0);
  await expect(client.completions.create({ model: 'other', prompt: 'x' })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  const keyless = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await expect(keyless.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
}

describe('serve under every runtime', () => {
  it.each(['deno', 'bun'] as Runtime[])('%s: Deno.serve / Bun.serve with createServer().fetch', async (runtime) => {
    const args = runtime === 'deno' ? ['run', '--allow-read', '--allow-net=127.0.0.1', 'serve.mjs'] : ['serve.mjs'];
    const port = await start(binary(runtime), args, inject('consumerDir'), (line) => JSON.parse(line).port ?? null);
    await exercise(port);
  });

  it('node: mla-wasm serve --port 0 --api-key', async () => {
    const port = await start(process.execPath, [path.join(root, 'dist/cli.js'), 'serve', '--port', '0', '--api-key', 'runtime-key', '--threads', '1'], root,
      (line) => { const m = /^serving fortune-mla at http:\/\/127\.0\.0\.1:(\d+)\/v1 /.exec(line); return m ? Number(m[1]) : null; });
    await exercise(port);
    // SIGTERM: it stops serving, frees the model and exits 0.
    const child = children[children.length - 1];
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
