// The built CLI (dist/cli.js) run as a user runs it. `npm test` builds the JavaScript first
// (pretest); run directly, this file rebuilds dist/ when it is older than src/.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { JsonAcceptor } from '../src/generate/json-acceptor.js';
import { BUILD_TIMEOUT_MS, buildDistIfStale } from './build-dist.js';
import { longRopeScaling, makeRandomCheckpoint, tinyPhi3Config } from './reference/model.js';
import { writeSafetensors } from './reference/safetensors-writer.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'cli.js');
const mla = join(root, 'models', 'fortune-mla');
const gqa = join(root, 'models', 'fortune-gqa');

interface Result { code: number | null; stdout: string; stderr: string }

function run(args: string[], input?: string): Result {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let textFile: string;

beforeAll(() => {
  buildDistIfStale();
  // Held-out fortunes (never trained on), as one text.
  const records: string[] = JSON.parse(readFileSync(join(mla, 'val_records.json'), 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-cli-'));
  textFile = join(dir, 'held-out.txt');
  writeFileSync(textFile, records.slice(0, 60).join('\n\n') + '\n');
}, BUILD_TIMEOUT_MS);

describe('--weights', () => {
  it('generate and perplexity say which weights ran and their bytes; info lists every format', () => {
    const g = run(['generate', '--prompt', 'Q: Why?\\nA:', '--max-new-tokens', '5', '--seed', '3', '--weights', 'int8']);
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/weights int8 \(1\.91 MiB\)/);
    const p = run(['perplexity', '--file', textFile, '--weights', 'int4']);
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/weights int4 \(1\.22 MiB\)/);
    const i = run(['info', '--weights', 'bf16']);
    expect(i.stdout).toMatch(/weight bytes +3,333,120 \(3\.18 MiB, weights bf16\)/);
    for (const f of ['f32', 'bf16', 'int8', 'int4']) expect(i.stdout).toMatch(new RegExp(`  ${f} +[\\d,]+ B weights +[\\d,]+ B memory  fits`));
  });

  it('an unknown format is a usage error naming the choices', () => {
    const r = run(['generate', 'hi', '--weights', 'int3']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("'--weights <format>' argument 'int3' is invalid");
  });
});

describe('generate', () => {
  it('streams the prompt and its continuation, then the speed and cache summary', () => {
    const r = run(['generate', '--prompt', 'Q: Why?\\nA:', '--max-new-tokens', '30', '--seed', '3']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('Q: Why?\nA:')).toBe(true);
    expect(r.stdout).toMatch(/prefill \d+ tok in [\d.]+ ms \(\d+ tok\/s\), decode \d+ tok in [\d.]+ ms \(\d+ tok\/s\), (relaxed|plain) SIMD, \d+ threads?, weights auto \(6.07 MiB\), sampled \(temperature 0.8, top-k 50, top-p 0.95, seed 3\), stopped at --max-new-tokens \(30\)\n/);
    expect(r.stdout).toMatch(/KV cache: [\d.]+ KiB for \d+ tokens in f32 \(1024 B\/token; MHA with the same heads would need 7680 B\/token in f32, 7.5× more\)/);
  });

  it('--cache int8 keeps the latent rows in int8: the summary says so, with its bytes', () => {
    const r = run(['generate', '--prompt', 'Q: Why?\\nA:', '--max-new-tokens', '10', '--seed', '3', '--cache', 'int8']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // 4 layers × (64 int8 codes, a scale and 16 bf16 of k^R, in 16-byte rows) = 4 × 112.
    expect(r.stdout).toMatch(/KV cache: [\d.]+ KiB for \d+ tokens in int8 \(448 B\/token; MHA with the same heads would need 7680 B\/token in f32, 17.1× more\)/);
  });

  it('takes the prompt as an argument, with -p or with --prompt: the same text', () => {
    const body = (r: Result) => r.stdout.split('\n\nprefill')[0];
    const args = ['--max-new-tokens', '20', '--seed', '5'];
    const positional = run(['generate', 'Q: Why?\\nA:', ...args]);
    expect(positional.stderr).toBe('');
    expect(positional.code).toBe(0);
    expect(positional.stdout.startsWith('Q: Why?\nA:')).toBe(true);
    expect(body(run(['generate', '-p', 'Q: Why?\\nA:', ...args]))).toBe(body(positional));
    expect(body(run(['generate', '--prompt', 'Q: Why?\\nA:', ...args]))).toBe(body(positional));
    const both = run(['generate', 'Q: Why?', '--prompt', 'Q: How?']);
    expect(both.code).toBe(1);
    expect(both.stderr).toBe('mla-wasm: give the prompt once: as an argument or with --prompt, not both\n');
  });

  it('a prompt longer than the context: an error before anything is printed, or its tail with --truncate-prompt', () => {
    const long = 'Q: ' + 'abcdefghij'.repeat(30) + ' Why?\\nA:';
    const r = run(['generate', long]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("mla-wasm: the prompt is 312 tokens, more than the model's context of 192; --truncate-prompt keeps its last tokens\n");
    const t = run(['generate', long, '--truncate-prompt', '--max-new-tokens', '20', '--seed', '1']);
    expect(t.code).toBe(0);
    expect(t.stderr).toBe("(the prompt is 312 tokens, more than the model's context of 192: kept its last 171)\n");
    // BOS and the prompt's last 171 bytes, echoed as such, then the continuation.
    expect(t.stdout.startsWith(long.replace('\\n', '\n').slice(-171))).toBe(true);
    expect(t.stdout).toMatch(/prefill 172 tok in /);
  });

  it('--version prints package.json\'s version', () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });

  it('the summary says why it stopped, in words', () => {
    const eos = run(['generate', '--seed', '1']);
    expect(eos.stdout).toMatch(/, stopped at the end-of-text token\n/);
    const stop = run(['generate', '--seed', '1', '--stop', 'the']);
    expect(stop.stdout).toMatch(/, stopped at a stop string\n/);
    const context = run(['generate', '--seed', '1', '--temperature', '0', '--stop', 'no such text', '--max-new-tokens', '500']);
    expect(context.stdout).toMatch(/, greedy, stopped at the end of the context \(192 positions\)\n/);
    for (const r of [eos, stop, context]) expect(r.stdout).toMatch(/, (relaxed|plain) SIMD, /);
    expect(run(['generate', '--max-new-tokens', '2', '--simd', 'simd']).stdout).toMatch(/\), plain SIMD, 1 thread, /);
  });

  it('--stop repeats, one string each; a prompt after it is the prompt, not another stop string', () => {
    const r = run(['generate', '--seed', '1', '--max-new-tokens', '40', '--stop', 'zzz', '--stop', ' ', 'Q: Why?\\nA:']);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('Q: Why?\nA:')).toBe(true);
    expect(r.stdout).toMatch(/, stopped at a stop string\n/);
  });

  it('a reader that closes the pipe early (| head) ends it quietly', () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cli}" generate --seed 1 --max-new-tokens 150 | head -c 4`],
      { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toBe('Q: W');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('--threads sets the kernel threads, shown in the summary; the text is the same on 1 and 2', () => {
    const body = (r: Result) => r.stdout.split('\n\nprefill')[0];
    const one = run(['generate', '--max-new-tokens', '40', '--seed', '4', '--threads', '1']);
    const two = run(['generate', '--max-new-tokens', '40', '--seed', '4', '--threads', '2']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/ SIMD, 1 thread, /);
    expect(two.stdout).toMatch(/ SIMD, 2 threads, /);
    expect(body(two)).toBe(body(one));
  });

  it('--threads above the cores here runs, with a warning on stderr; up to the cores, none', () => {
    const cores = availableParallelism();
    const over = run(['generate', '--max-new-tokens', '2', '--threads', String(cores + 1)]);
    expect(over.code).toBe(0);
    expect(over.stderr).toBe(`mla-wasm: warning: --threads ${cores + 1} is more than the ${cores} core${cores > 1 ? 's' : ''} here: the extra threads share cores, which is slower\n`);
    expect(over.stdout).toMatch(new RegExp(` SIMD, ${cores + 1} threads, `));
    const fits = run(['generate', '--max-new-tokens', '2', '--threads', String(cores)]);
    expect(fits.code).toBe(0);
    expect(fits.stderr).toBe('');
  });

  it('is reproducible with a seed, and greedy with --temperature 0', () => {
    const body = (r: Result) => r.stdout.split('\n\nprefill')[0];
    const a = run(['generate', '--max-new-tokens', '40', '--seed', '9']);
    const b = run(['generate', '--max-new-tokens', '40', '--seed', '9']);
    expect(body(a)).toBe(body(b));
    const g = run(['generate', '--max-new-tokens', '20', '--temperature', '0', '--model', gqa]);
    expect(g.code).toBe(0);
    expect(g.stdout).toContain('greedy');
    expect(g.stdout).toContain('(2048 B/token; MHA with the same heads would need 6144 B/token');
  });
});

describe('--format json', () => {
  const validPrefix = (text: string) => {
    const a = new JsonAcceptor();
    return a.push(new TextEncoder().encode(text)) && text.startsWith('{');
  };

  it('generate: after the prompt, a valid start of a JSON object; the same with a seed, and greedy', () => {
    for (const flags of [['--seed', '4'], ['--temperature', '0']]) {
      const r = run(['generate', '--format', 'json', '--max-new-tokens', '40', ...flags]);
      expect(r.code, r.stderr).toBe(0);
      const text = r.stdout.split('\n\nprefill')[0];
      expect(text.startsWith('Q: What is the meaning of life?\nA:')).toBe(true);
      const json = text.slice('Q: What is the meaning of life?\nA:'.length);
      expect(validPrefix(json), json).toBe(true);
      expect(r.stdout).toMatch(/, stopped (at --max-new-tokens \(40\)|where the JSON object closed)\n/);
      expect(run(['generate', '--format', 'json', '--max-new-tokens', '40', ...flags]).stdout.split('\n\nprefill')[0]).toBe(text);
    }
  });

  it('chat: the answer is a valid start of a JSON object', () => {
    const r = run(['chat', '--format', 'json', '--temperature', '0', '--max-new-tokens', '30'], 'Say it in JSON.\n');
    expect(r.code, r.stderr).toBe(0);
    const answer = r.stdout.split('> ')[1].trim();
    expect(validPrefix(answer), answer).toBe(true);
  });
});

describe('generate --logprobs and --min-p', () => {
  it('prints a line per token: its log-probability and the n most likely, the sampled token among them when greedy', () => {
    const r = run(['generate', '--max-new-tokens', '5', '--temperature', '0', '--logprobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    const table = r.stdout.split('\n\n')[1].split('\n');
    expect(table[0]).toMatch(/^token\s+logprob\s+most likely$/);
    const rows = table.slice(1).filter((l) => l.trim());
    expect(rows).toHaveLength(5);
    for (const row of rows) {
      const [, token, lp, alts] = row.match(/^(".*?")\s+(-?\d+\.\d{4})\s+(.*)$/)!;
      const pairs = [...alts.matchAll(/(".*?") (-?\d+\.\d{4})/g)].map((m) => [m[1], Number(m[2])] as const);
      expect(pairs).toHaveLength(2);
      expect(pairs[0]).toEqual([token, Number(lp)]); // greedy: the most likely is the one taken
      expect(pairs[0][1]).toBeGreaterThanOrEqual(pairs[1][1]);
      expect(Number(lp)).toBeLessThanOrEqual(0);
    }
    const s = run(['generate', '--max-new-tokens', '5', '--seed', '2', '--min-p', '0.2']);
    expect(s.stdout).toContain('min-p 0.2');
    expect(run(['generate', '--logprobs', '21']).stderr).toContain('expected an integer in [0, 20]');
    // Past 2^53 an integer is not exact: a flag error, not the API's option message.
    expect(run(['generate', '--seed', '1e20']).stderr).toMatch(/^mla-wasm: option '--seed <n>' argument '1e20' is invalid\. expected an integer ≥ 0 \(and below 2\^53\)/);
    expect(run(['generate', '--min-p', '2']).stderr).toContain('expected a number in [0, 1]');
  });
});

describe('generate --presence-penalty, --frequency-penalty and --logit-bias', () => {
  it('reach the sampler and the summary; bad values are flag errors or name the option', () => {
    const r = run(['generate', '--max-new-tokens', '6', '--temperature', '0', '--presence-penalty', '1', '--frequency-penalty', '0.5',
      '--logit-bias', '65=100', '--logit-bias', '66=-100']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('greedy (presence penalty 1, frequency penalty 0.5, logit bias on 2 tokens)');
    expect(r.stdout).toContain('AAAAAA'); // id 65 is 'A' in the built-in byte vocabulary
    expect(run(['generate', '--presence-penalty', '3']).stderr).toContain('expected a number in [-2, 2]');
    expect(run(['generate', '--logit-bias', '65']).stderr).toContain('expected ID=BIAS');
    expect(run(['generate', '--logit-bias', '65=101']).stderr).toContain('expected ID=BIAS');
    const far = run(['generate', '--logit-bias', '99999=1']);
    expect(far.code).not.toBe(0);
    expect(far.stderr).toContain('logitBias');
  });
});

describe('info', () => {
  it('fortune-mla: 64 cached numbers per token per layer, beside MHA/GQA/MQA', () => {
    const r = run(['info', '--model', mla]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+DeepseekV2ForCausalLM: MLA, 4 layers/);
    expect(r.stdout).toMatch(/parameters\s+1,590,528/);
    expect(r.stdout).toMatch(/weight bytes\s+6,362,112/);
    expect(r.stdout).toMatch(/MLA \(this model\)\s+d_c \+ d_r = 48 \+ 16\s+64 numbers\s+1,024 B\/token/);
    expect(r.stdout).toMatch(/MHA\s+H·\(d_k \+ d_v\) = 6·\(48 \+ 32\)\s+480 numbers\s+7,680 B\/token/);
    expect(r.stdout).toMatch(/GQA, 2 groups\s.*160 numbers/);
    expect(r.stdout).toMatch(/MQA\s.*80 numbers/);
    expect(r.stdout).toMatch(/KV cache per token by format \(--cache f32: 1,024 B\/token\)/);
    expect(r.stdout).toMatch(/ f32\s+1,024 B\/token  <\n\s+bf16\s+512 B\/token\n\s+int8\s+448 B\/token\n\s+int4\s+320 B\/token\n/);
    expect(run(['info', '--model', mla, '--cache', 'int4']).stdout).toMatch(/int4\s+320 B\/token  </);
  });

  it('fortune-gqa: 128 numbers per token per layer', () => {
    const r = run(['info', '--model', gqa]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+LlamaForCausalLM: GQA, 4 layers/);
    expect(r.stdout).toMatch(/parameters\s+1,528,512/);
    expect(r.stdout).toMatch(/GQA, 2 groups \(this model\)\s.*128 numbers\s+2,048 B\/token/);
    expect(r.stdout).toMatch(/MHA\s.*384 numbers/);
  });

  it('a Phi-3 with LongRoPE and a window below its context: both noted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-cli-phi3-'));
    const config = tinyPhi3Config({ rope_scaling: longRopeScaling(16), sliding_window: 100 });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(makeRandomCheckpoint(config, 1)));
    const r = run(['info', '--model', dir]);
    rmSync(dir, { recursive: true, force: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+Phi3ForCausalLM: GQA, 2 layers, hidden 64, vocab 50, context 100/);
    expect(r.stdout).toMatch(/note\s+context limited to sliding_window 100 \(max_position_embeddings 128\)/);
    expect(r.stdout).toMatch(/note\s+LongRoPE long_factor at every length \(context 100 > original 8\)/);
  });
});

describe('perplexity', () => {
  const perByte = (r: Result) => Number(/([\d.]+) nats\/byte/.exec(r.stdout)?.[1]);
  it.each([['fortune-mla', mla], ['fortune-gqa', gqa]])('%s on held-out fortunes: near the training run\'s 1.453 nats/byte', (_name, dir) => {
    const r = run(['perplexity', '--model', dir, '--file', textFile, '--window', '192']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const x = perByte(r);
    expect(x).toBeGreaterThan(1.0);
    expect(x).toBeLessThan(2.0);
    // Byte-level vocabulary: per token and per byte are the same; perplexity is exp(loss).
    const perToken = Number(/([\d.]+) nats\/token/.exec(r.stdout)?.[1]);
    expect(perToken).toBeCloseTo(x, 3);
    expect(Number(/perplexity\s+([\d.]+) per token/.exec(r.stdout)?.[1])).toBeCloseTo(Math.exp(perToken), 1);
  });
});

describe('perplexity with a narrow cache', () => {
  it('--cache int8 and int4 score the held-out text close to f32 and say which cache ran', () => {
    const f32 = run(['perplexity', '--file', textFile, '--window', '192']);
    const nats = (r: Result) => Number(/([\d.]+) nats\/byte/.exec(r.stdout)?.[1]);
    for (const [cache, bytes, within] of [['int8', '448', 0.003], ['int4', '320', 0.02]] as const) {
      const r = run(['perplexity', '--file', textFile, '--window', '192', '--cache', cache]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(new RegExp(`KV cache\\s+${cache}, ${bytes} B/token`));
      // The quality targets: int8 within 0.3% of f32, int4 within 2%.
      expect(nats(r) / nats(f32) - 1).toBeLessThan(within);
    }
  });
});

describe('perplexity windows', () => {
  it('default to the model\'s context (192 for the built-in model; 1500 for one that says 1500)', () => {
    const r = run(['perplexity', '--file', textFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/window\(s\) of 192 positions \(BOS first\)/);
    // The same weights under a config that claims a longer context.
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-long-'));
    for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) symlinkSync(join(mla, f), join(dir, f));
    const config = JSON.parse(readFileSync(join(mla, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 1500 }));
    const long = run(['perplexity', '--model', dir, '--file', textFile]);
    expect(long.code).toBe(0);
    expect(long.stdout).toMatch(/window\(s\) of 1500 positions \(BOS first\)/);
  });
});

describe('bad input: one line on stderr, a non-zero exit, no stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    ['a missing model folder', ['generate', '--model', '/no/such/model'], /the folder \/no\/such\/model does not exist/],
    ['a folder that is not a model', ['info', '--model', root], /config\.json/],
    ['an unknown flag', ['generate', '--bogus'], /unknown option '--bogus'/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['perplexity without --file', ['perplexity'], /required option '--file <path>' not specified/],
    ['a file that does not exist', ['perplexity', '--file', '/no/such/file.txt'], /cannot read \/no\/such\/file\.txt: ENOENT/],
    ['a bad number', ['generate', '--temperature', 'warm'], /--temperature .*'warm' is invalid/],
    ['top-p out of range', ['generate', '--top-p', '1.5'], /--top-p/],
    ['a window past the context', ['perplexity', '--file', '/dev/null', '--window', '5000'], /--window 5000 is more than the model's context \(192\)/],
    ['a bad --simd', ['info', '--simd', 'avx'], /--simd/],
    ['zero threads', ['generate', '--threads', '0'], /--threads .*'0' is invalid.*integer ≥ 1/],
    ['too many threads', ['generate', '--threads', '1000', '--max-new-tokens', '1'], /threads must be an integer from 1 to 256, got 1000/],
    ['info without --model', ['info', '--model'], /--model/],
    ['an unknown cache format', ['generate', '--cache', 'fp8'], /--cache .*'fp8' is invalid.*f32, bf16, int8, int4/],
    ['an unknown --format', ['generate', '--format', 'yaml'], /--format .*'yaml' is invalid.*json/],
    ['a narrow cache on a GQA model', ['generate', '--model', gqa, '--cache', 'int8'], /cache 'int8' needs an MLA model .*GQA\/MQA attention: use cache 'f32'/],
  ];
  it.each(cases)('%s', (_name, args, message) => {
    const r = run(args);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^mla-wasm: /);
    expect(lines[0]).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('chat', () => {
  it('two turns from stdin, then EOF ends it', () => {
    const r = run(['chat', '--temperature', '0', '--max-new-tokens', '40'], 'What is a computer?\nWhy?\n');
    expect(r.code).toBe(0);
    // Three prompts: before each question and before the EOF.
    expect(r.stdout.split('> ')).toHaveLength(4);
    const answers = r.stdout.split('> ').slice(1, 3);
    for (const a of answers) expect(a.trim().length).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/^mla-wasm chat: DeepseekV2ForCausalLM/);
  });

  it('--session FILE: a conversation saved after each answer goes on in the next run as if it had never stopped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-chat-'));
    const file = join(dir, 'talk.mlac');
    const flags = ['chat', '--temperature', '0', '--max-new-tokens', '30'];
    const whole = run(flags, 'What is a computer?\nWhy?\n');
    const first = run([...flags, '--session', file], 'What is a computer?\n');
    expect(first.code, first.stderr).toBe(0);
    expect(existsSync(file)).toBe(true);
    const second = run([...flags, '--session', file], 'Why?\n');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/resumed 2 messages \(\d+ positions\) from /);
    // The second answer is the one a single run gives, and only the new turn was prefilled.
    expect(second.stdout.split('> ')[1]).toBe(whole.stdout.split('> ')[2]);
    const prefills = (r: typeof whole) => [...r.stderr.matchAll(/prefill (\d+) tok/g)].map((m) => Number(m[1]));
    expect(prefills(second)).toEqual([prefills(whole)[1]]);
    // A file that is not a conversation, or one of another model: refused, and left as it was.
    const junk = join(dir, 'junk.mlac');
    writeFileSync(junk, 'not a conversation');
    const refused = run([...flags, '--session', junk], 'Hi\n');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('not a saved conversation');
    expect(readFileSync(junk, 'utf8')).toBe('not a conversation');
    const saved = readFileSync(file);
    const other = run([...flags, '--session', file, '--model', gqa], 'Hi\n');
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/mla-wasm: .*snapshot/i);
    expect(readFileSync(file).equals(saved)).toBe(true);
  });

  it('the answer is kept as generated: with a template that renders it as is, the next turn prefills only the new message', () => {
    // The built-in template puts a space before the answer, which the model did not generate; this
    // copy renders the answer as is, as ChatML-style templates do.
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-template-'));
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json']) symlinkSync(join(mla, f), join(dir, f));
    const config = JSON.parse(readFileSync(join(mla, 'tokenizer_config.json'), 'utf8'));
    config.chat_template = config.chat_template.replace("{% elif m['role'] == 'assistant' %} {{", "{% elif m['role'] == 'assistant' %}{{");
    expect(config.chat_template).toContain("'assistant' %}{{ m['content'] }}");
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const r = run(['chat', '--model', dir, '--temperature', '0', '--max-new-tokens', '20'], 'What is a computer?\nWhy?\n');
    expect(r.code, r.stderr).toBe(0);
    const prefills = [...r.stderr.matchAll(/prefill (\d+) tok/g)].map((m) => Number(m[1]));
    // Turn two runs the first answer's last token (sampled, not yet fed), its end token and the
    // new question: "Q: Why?\nA:" is 11 bytes.
    expect(prefills).toHaveLength(2);
    expect(prefills[1]).toBeLessThanOrEqual(13);
  });

  it('a conversation longer than the 192-position context drops its oldest turns, says so on stderr, and goes on', () => {
    const questions = ['What is the meaning of life, the universe and everything?', 'Why is the sky blue on a sunny day?',
      'What did the computer say to the programmer?', 'Why do cats always land on their feet?', 'What is a limerick?'];
    const r = run(['chat', '--temperature', '0', '--max-new-tokens', '60'], questions.join('\n') + '\n');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^mla-wasm chat: DeepseekV2ForCausalLM, 192 positions of context/);
    expect(r.stderr).toMatch(/\(the conversation outgrew the 192-position context: dropped its \d+ oldest messages\)/);
    expect(r.stderr).not.toMatch(/mla-wasm: /);
    const answers = r.stdout.split('> ').slice(1, 6);
    expect(answers).toHaveLength(5);
    for (const a of answers) expect(a.trim().length).toBeGreaterThan(0);
  });

  it('a message too long for the context is refused on stderr, and the conversation goes on', () => {
    const r = run(['chat', '--temperature', '0', '--max-new-tokens', '10'], `Hi\n${'tell me '.repeat(30)}\nWhy?\n`);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/mla-wasm: .*192 positions/);
    // Four prompts: before each of the three lines and before the EOF; the last line is answered.
    const parts = r.stdout.split('> ');
    expect(parts).toHaveLength(5);
    expect(parts[3].trim().length).toBeGreaterThan(0);
  });

  it('Ctrl-C right after a line stops that answer, and only it; each answer\'s speed follows on stderr', async () => {
    const child = spawn(process.execPath, [cli, 'chat', '--temperature', '0', '--max-new-tokens', '150'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stderr.on('data', (d) => { err += d; });
    const seen = (test: () => boolean) => new Promise<void>((resolve) => {
      const check = () => { if (test()) { child.stdout.off('data', onData); resolve(); } };
      const onData = (d: Buffer) => { out += d; check(); };
      child.stdout.on('data', onData);
      check();
    });
    const prompts = () => out.split('> ').length - 1;
    await seen(() => prompts() === 1);
    // The line and the interrupt together, as when Ctrl-C follows Enter at once.
    child.stdin.write('What is the meaning of life?\n');
    child.kill('SIGINT');
    await seen(() => prompts() === 2);
    child.stdin.write('Why?\n');
    await seen(() => prompts() === 3);
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const turns = out.split('> ');
    expect(out).not.toContain('Ctrl-C again');
    // The first answer stopped before the next prompt; the second ran to its end.
    expect(turns[1]).toMatch(/ \[stopped\]\n$/);
    expect(turns[2]).not.toContain('[stopped]');
    expect(turns[2].trim().length).toBeGreaterThan(0);
    const speeds = err.split('\n').filter((l) => l.startsWith('prefill '));
    expect(speeds.length, err).toBeGreaterThanOrEqual(1);
    for (const l of speeds) expect(l).toMatch(/^prefill \d+ tok in [\d.]+ ms \((\d+(\.\d)?|–) tok\/s\), decode \d+ tok in [\d.]+ ms \((\d+(\.\d)?|–) tok\/s\)$/);
    // The second answer's line: its decode is the tokens it wrote.
    expect(speeds[speeds.length - 1]).toMatch(/decode [1-9]\d* tok/);
  });

  // A terminal (util-linux `script` gives the CLI a pseudo-terminal): Enter and Ctrl-C typed at once
  // reach readline as one chunk, and it emits the line and the interrupt back to back.
  it.skipIf(!existsSync('/usr/bin/script'))('in a terminal, Ctrl-C typed right after Enter stops that answer, not the prompt', async () => {
    const command = `${process.execPath} ${cli} chat --temperature 0 --max-new-tokens 150`;
    const child = spawn('/usr/bin/script', ['-qfec', command, '/dev/null'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    let raw = '';
    // Without the terminal's escape sequences and carriage returns.
    const text = () => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '').replace(/\r/g, '');
    const seen = (test: () => boolean) => new Promise<void>((resolve) => {
      const check = () => { if (test()) { child.stdout.off('data', onData); resolve(); } };
      const onData = (d: Buffer) => { raw += d; check(); };
      child.stdout.on('data', onData);
      check();
    });
    const prompts = () => text().split('> ').length - 1;
    await seen(() => prompts() === 1);
    child.stdin.write('What is the meaning of life?\r\x03');
    await seen(() => /\[stopped\]|Ctrl-C again/.test(text()));
    if (text().includes('Ctrl-C again')) child.kill();
    expect(text(), 'the Ctrl-C was taken as one at the prompt').not.toContain('Ctrl-C again');
    await seen(() => prompts() === 2);
    child.stdin.write('Why?\r');
    await seen(() => prompts() === 3);
    child.stdin.write('\x04');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const turns = text().split('> ');
    expect(text()).not.toContain('Ctrl-C again');
    expect(turns[1]).toMatch(/^What is the meaning of life\?\n.*\[stopped\]\n/s);
    // The next question's answer comes after its own prompt, whole.
    expect(turns[2]).toMatch(/^Why\?\n\s*\w/);
    expect(turns[2]).not.toContain('[stopped]');
  });

  it('Ctrl-C at the prompt warns; a second one quits', async () => {
    const child = spawn(process.execPath, [cli, 'chat'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const seen = (s: string) => new Promise<void>((resolve) => {
      const check = () => { if (out.includes(s)) { child.stdout.off('data', onData); resolve(); } };
      const onData = (d: Buffer) => { out += d; check(); };
      child.stdout.on('data', onData);
      check();
    });
    await seen('> ');
    child.kill('SIGINT');
    await seen('Ctrl-C again');
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  });
});
