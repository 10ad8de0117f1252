// A 32-bit digest of a run of the model's WebAssembly memory, computed in WebAssembly SIMD: session
// snapshots check their cache rows with it (hundreds of MiB at long contexts, where a JavaScript
// loop over the words is many times slower; bench/results/snapshot.md). A module of its own,
// assembled here from its opcodes, so that the kernels' build is not involved. Where compiling
// WebAssembly at run time is refused (edge platforms), the same digest in JavaScript.
//
// The digest of n bytes (n a multiple of 4) at ptr, read as little-endian 32-bit words w[i]:
//   16 lanes s[l], each started at START[l]; for each whole 64-byte block, word i goes to lane i % 16:
//   s = mix(s ^ w[i]); then r = n, r = mix(r ^ s[l]) for l = 0..15, and r = mix(r ^ w[i]) for the
//   words after the last whole block; mix(x) = y ^ (y >>> 15) with y = x · 0x9e3779b1 (mod 2^32).
// Each step is a bijection of the state for a given word (an odd multiplier, an xor-shift), so
// changing any one word always changes the digest. digestBytes is this definition in JavaScript
// (test/snapshot.test.ts checks the module against it).
import type { Heap } from './heap.js';

/** The digest of `bytes` bytes (a multiple of 4) of the memory at byte offset `ptr`. */
export type MemoryDigest = (ptr: number, bytes: number) => number;

export const DIGEST_MULTIPLIER = 0x9e3779b1;
/** Where each of the 16 lanes starts. */
export const DIGEST_START: readonly number[] = Array.from({ length: 16 }, (_, l) => Math.imul(l + 1, 0x85ebca6b) >>> 0);

const digests = new WeakMap<WebAssembly.Memory, MemoryDigest>();

/** The digest over `heap`'s memory (its module made once per memory). */
export function memoryDigest(heap: Heap): MemoryDigest {
  let d = digests.get(heap.memory);
  if (!d) {
    d = simdDigest(heap) ?? ((ptr, bytes) => digestBytes(heap.u8(ptr, bytes)));
    digests.set(heap.memory, d);
  }
  return d;
}

function simdDigest(heap: Heap): MemoryDigest | null {
  let f: (ptr: number, bytes: number) => number;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(digestModule(heap.shared)), { env: { memory: heap.memory } });
    f = instance.exports.digest as typeof f;
  } catch {
    return null; // an embedder that compiles no WebAssembly at run time
  }
  return (ptr, bytes) => f(ptr, bytes) >>> 0;
}

const mix = (x: number) => {
  const y = Math.imul(x, DIGEST_MULTIPLIER);
  return y ^ (y >>> 15);
};

/** The digest of `bytes` (a multiple of 4 long), in JavaScript. */
export function digestBytes(bytes: Uint8Array): number {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const w = new Int32Array(aligned.buffer, aligned.byteOffset, bytes.length >>> 2);
  const whole = Math.floor(bytes.length / 64) * 16;
  const lanes = DIGEST_START.map((x) => x | 0);
  for (let i = 0; i < whole; i++) lanes[i & 15] = mix(lanes[i & 15] ^ w[i]);
  let r = bytes.length;
  for (const s of lanes) r = mix(r ^ s);
  for (let i = whole; i < w.length; i++) r = mix(r ^ w[i]);
  return r >>> 0;
}

// Opcodes (WebAssembly core spec, binary format; SIMD ones after the 0xfd prefix, LEB128-coded).
const BLOCK = 0x02, LOOP = 0x03, BR = 0x0c, BR_IF = 0x0d, END = 0x0b, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_LOAD = 0x28, I32_CONST = 0x41, I32_GE_U = 0x4f, I32_ADD = 0x6a, I32_MUL = 0x6c, I32_AND = 0x71, I32_XOR = 0x73, I32_SHR_U = 0x76;
const SIMD = 0xfd, V128_LOAD = 0x00, V128_CONST = 0x0c, I32X4_EXTRACT_LANE = 0x1b, V128_XOR = 0x51, I32X4_SHR_U = 0xad, I32X4_MUL = 0xb5;
const I32 = 0x7f, V128 = 0x7b, FUNC = 0x60, MEMORY = 0x02;

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    const b = n & 0x7f;
    n >>>= 7;
    out.push(n ? b | 0x80 : b);
  } while (n);
  return out;
};

const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (n |= 0; ; n >>= 7) {
    const b = n & 0x7f;
    if ((n >> 7 === 0 && !(b & 0x40)) || (n >> 7 === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};

const simd = (op: number) => [SIMD, ...uleb(op)];
const i32x4 = (lanes: readonly number[]) => [...simd(V128_CONST), ...lanes.flatMap((x) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24])];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

/** The module: digest(ptr, bytes) → i32 over an imported memory, shared or not as the heap's is. */
function digestModule(shared: boolean): Uint8Array<ArrayBuffer> {
  const PTR = 0, BYTES = 1, LANES = [2, 3, 4, 5], END_AT = 6, R = 7;
  const get = (i: number) => [LOCAL_GET, i];
  const mix32 = [I32_CONST, ...sleb(DIGEST_MULTIPLIER), I32_MUL, LOCAL_TEE, R, LOCAL_GET, R, I32_CONST, 15, I32_SHR_U, I32_XOR, LOCAL_SET, R];
  // while (ptr < end) { body; ptr += step }
  const loopTo = (mask: number, step: number, body: number[]) => [
    ...get(PTR), ...get(BYTES), I32_CONST, ...sleb(mask), I32_AND, I32_ADD, LOCAL_SET, END_AT,
    BLOCK, VOID, LOOP, VOID,
    ...get(PTR), ...get(END_AT), I32_GE_U, BR_IF, 1,
    ...body,
    ...get(PTR), I32_CONST, ...sleb(step), I32_ADD, LOCAL_SET, PTR,
    BR, 0, END, END,
  ];
  const code = [
    ...LANES.flatMap((v, k) => [...i32x4(DIGEST_START.slice(4 * k, 4 * k + 4)), LOCAL_SET, v]),
    ...loopTo(-64, 64, LANES.flatMap((v, k) => [
      ...get(v), ...get(PTR), ...simd(V128_LOAD), 0, ...uleb(16 * k), ...simd(V128_XOR),
      ...i32x4([0, 1, 2, 3].map(() => DIGEST_MULTIPLIER)), ...simd(I32X4_MUL), LOCAL_TEE, v,
      ...get(v), I32_CONST, 15, ...simd(I32X4_SHR_U), ...simd(V128_XOR), LOCAL_SET, v,
    ])),
    ...get(BYTES), LOCAL_SET, R,
    ...LANES.flatMap((v) => [0, 1, 2, 3].flatMap((lane) => [...get(R), ...get(v), ...simd(I32X4_EXTRACT_LANE), lane, I32_XOR, ...mix32])),
    ...loopTo(63, 4, [...get(R), ...get(PTR), I32_LOAD, 2, 0, I32_XOR, ...mix32]),
    ...get(R), END,
  ];
  const body = [2, LANES.length, V128, 2, I32, ...code];
  const limits = shared ? [0x03, 1, ...uleb(65536)] : [0x00, 1];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, FUNC, 2, I32, I32, 1, I32]),
    ...section(2, [1, ...name('env'), ...name('memory'), MEMORY, ...limits]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('digest'), 0, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}
