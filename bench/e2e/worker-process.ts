// The runner's end of one end-to-end side: its child process, spoken to as protocol.ts says.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { selfCommand } from '../probes.js';
import type { E2eBlock, E2eWorkerSpec } from './protocol.js';

/** A worker child process, answering one JSON line per request. */
export class WorkerProcess {
  private lines: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private ended = false;
  private stderrTail = '';
  private readonly child: ChildProcess;

  constructor(bundle: string, spec: E2eWorkerSpec) {
    const [cmd, ...pre] = selfCommand(bundle);
    this.child = spawn(cmd, [...pre, '--e2e-worker', JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return; // a runtime's own messages
      if (this.waiting) { const w = this.waiting; this.waiting = null; w(line); } else this.lines.push(line);
    });
    this.child.stderr!.on('data', (d) => { this.stderrTail = (this.stderrTail + d).slice(-2000); });
    this.child.on('close', () => { this.ended = true; this.waiting?.(null); this.waiting = null; });
    this.child.on('error', () => { this.ended = true; this.waiting?.(null); this.waiting = null; });
  }

  /** The next JSON line, or null when the process has ended (or gave nothing for 10 minutes). */
  next<T>(): Promise<T | null> {
    if (this.lines.length) return Promise.resolve(JSON.parse(this.lines.shift()!));
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiting = null; this.child.kill(); resolve(null); }, 600_000);
      this.waiting = (line) => { clearTimeout(timer); resolve(line === null ? null : JSON.parse(line)); };
    });
  }

  /** n timed runs. */
  block(n: number): Promise<E2eBlock | null> {
    if (!this.ended) this.child.stdin!.write(`${n}\n`);
    return this.next<E2eBlock>();
  }

  /** Why it ended: its exit status and its last line of error output. */
  get failure(): string {
    const { exitCode, signalCode } = this.child;
    const status = signalCode ? `killed by ${signalCode}` : exitCode !== null ? `exit code ${exitCode}` : 'no answer';
    const last = this.stderrTail.replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').slice(-1)[0];
    return last ? `${status} (last error output: ${last.slice(0, 200)})` : status;
  }

  async close(): Promise<void> {
    if (this.ended) return;
    const closed = new Promise((resolve) => this.child.once('close', resolve));
    this.child.stdin!.end('\n');
    await closed;
  }
}
