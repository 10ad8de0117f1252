// What a checkpoint format offers the model: tensor names, shapes, and values read on demand.

/**
 * How a tensor is stored in its file. The model keeps 16-bit and block-quantised tensors as they
 * are when asked to (weights 'auto'); every type can also be read widened to f32.
 */
export type StoredType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

/** Where a decoder reads its tensors from: an in-memory map, a safetensors or a GGUF file. */
export interface TensorSource {
  names(): Iterable<string>;
  shape(name: string): readonly number[] | undefined;
  /** Copy tensor `name` as f32 into `out` (whose length is its element count). */
  read(name: string, out: Float32Array): void;
  /** How tensor `name` is stored; absent (or undefined for a name): F32. */
  stored?(name: string): StoredType | undefined;
  /** An F16 or BF16 tensor's raw 16-bit values, row-major, into `out` (its element count long). */
  read16?(name: string, out: Uint16Array): void;
  /**
   * A Q8_0 or Q4_0 matrix [rows, cols] (cols a multiple of 32) as the q8/q4 weight layout of
   * assembly/quant.ts: each row's codes into `q` (cols bytes a row for Q8_0, cols/2 for Q4_0, in
   * llama.cpp's order within a block) and each block's scale widened to f32 into `d` (rows·cols/32).
   */
  readBlocks?(name: string, q: Uint8Array, d: Float32Array): void;
}
