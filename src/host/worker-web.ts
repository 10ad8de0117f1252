// The worker's entry for a web Worker (browsers, Deno), started from a Blob URL: its data comes
// in the first message. Imports nothing of Node.
import type { StartData, WorkerReply } from './protocol.js';
import { serve } from './worker.js';

/** What a dedicated worker's global scope offers us (the DOM lib types `self` as a Window). */
const scope = self as unknown as {
  onmessage: ((e: MessageEvent<StartData>) => void) | null;
  postMessage(m: WorkerReply): void;
  close(): void;
};
scope.onmessage = (e) => {
  scope.onmessage = null;
  serve(e.data, (m) => scope.postMessage(m), () => scope.close());
};
