// The worker's entry under node:worker_threads (Node, Deno, Bun), bundled as a CommonJS script:
// workers.ts evaluates its text (`eval: true`), where `require` exists and `import` does not.
import { parentPort, workerData } from 'node:worker_threads';
import type { StartData } from './protocol.js';
import { serve } from './worker.js';

serve(workerData as StartData, (m) => parentPort!.postMessage(m), () => {});
