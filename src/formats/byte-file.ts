// A file read by byte ranges, whatever holds it: the one thing the checkpoint readers
// (safetensors, GGUF) need from a source.
import { MlaError } from '../errors.js';

/** A file read by byte ranges: held in memory, or on disk and read on demand. */
export interface ByteFile {
  /** File name, for messages. */
  readonly name: string;
  readonly size: number;
  /** Fill all of `into` with the file's bytes from `position` on. Throws BAD_CHECKPOINT past the end. */
  read(position: number, into: Uint8Array): void;
}

export function checkRange(file: { name: string; size: number }, position: number, length: number): void {
  if (!(Number.isSafeInteger(position) && position >= 0 && position + length <= file.size)) {
    throw new MlaError('BAD_CHECKPOINT', `${file.name}: read of bytes [${position}, ${position + length}) is outside the file's ${file.size} bytes`);
  }
}

/** A file held in memory. */
export function memoryFile(name: string, bytes: Uint8Array): ByteFile {
  const file: ByteFile = {
    name,
    size: bytes.length,
    read(position, into) {
      checkRange(file, position, into.length);
      into.set(bytes.subarray(position, position + into.length));
    },
  };
  return file;
}

