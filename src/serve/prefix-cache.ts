// The server's prefix cache: snapshots of finished sessions, kept in memory (outside the model's
// WebAssembly memory) up to a byte budget, the least recently used dropped first. A request whose
// prompt shares a prefix with a kept conversation restores its snapshot and runs only the rest.

interface Entry { ids: readonly number[]; bytes: Uint8Array }

export interface PrefixHit {
  bytes: Uint8Array;
  /** Tokens of the prompt already in the snapshot's cache. */
  common: number;
  /** Positions the snapshot holds. */
  position: number;
}

/** The shortest shared prefix worth a restore, in tokens (less is cheaper to run again). */
const MIN_COMMON = 16;

export class PrefixCache {
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  private readonly entries = new Map<string, Entry>();
  private used = 0;
  /** Restores served, and lookups that found nothing. */
  hits = 0;
  misses = 0;

  constructor(readonly budgetBytes: number) {}

  get bytes(): number { return this.used; }
  get size(): number { return this.entries.size; }

  /** The kept conversation sharing the longest prefix with `ids`, or null. */
  take(ids: readonly number[]): PrefixHit | null {
    let best: [string, Entry] | null = null, bestCommon = 0;
    for (const [key, e] of this.entries) {
      let n = 0;
      while (n < e.ids.length && n < ids.length && e.ids[n] === ids[n]) n++;
      if (n > bestCommon) { best = [key, e]; bestCommon = n; }
    }
    if (!best || bestCommon < MIN_COMMON) {
      this.misses++;
      return null;
    }
    this.hits++;
    this.entries.delete(best[0]);
    this.entries.set(best[0], best[1]);
    return { bytes: best[1].bytes, common: bestCommon, position: best[1].ids.length };
  }

  /** Keep a conversation's snapshot (replacing one of the same ids), then drop the oldest over budget. */
  put(ids: readonly number[], bytes: Uint8Array): void {
    if (bytes.length > this.budgetBytes || ids.length < MIN_COMMON) return;
    const key = ids.join(',');
    const old = this.entries.get(key);
    if (old) {
      this.used -= old.bytes.length;
      this.entries.delete(key);
    }
    this.entries.set(key, { ids: [...ids], bytes });
    this.used += bytes.length;
    for (const [k, e] of this.entries) {
      if (this.used <= this.budgetBytes) break;
      this.entries.delete(k);
      this.used -= e.bytes.length;
    }
  }
}
