# ggml's Q8_0 and Q4_0 quantisation and its f16/bf16 rounding in numpy, written the way gguf-py
# (llama.cpp's Python package, used by convert_hf_to_gguf.py) computes them: an independent
# implementation for test/quant-blocks.test.ts. Reads f32 values from stdin, writes on stdout the
# Q8_0 bytes, the Q4_0 bytes, the f16 bits and the bf16 bits, each section prefixed by its length.
import sys
import numpy as np

x = np.frombuffer(sys.stdin.buffer.read(), dtype='<f4')


def roundf(a):  # C's roundf: half away from zero
    return np.sign(a) * np.floor(np.abs(a) + np.float32(0.5))


def q8_0(x):
    blocks = x.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide='ignore'):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    qs = roundf(blocks * inv).astype(np.int8)
    return np.concatenate([d.astype('<f2').view(np.uint8), qs.view(np.uint8)], axis=1).tobytes()


def q4_0(x):
    blocks = x.reshape(-1, 32)
    imax = np.abs(blocks).argmax(axis=-1, keepdims=True)
    mx = np.take_along_axis(blocks, imax, axis=-1)
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide='ignore'):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc(blocks * inv + np.float32(8.5)).astype(np.float32)
    q = np.clip(q, 0, 15).astype(np.uint8).reshape(-1, 2, 16)
    qs = q[:, 0, :] | (q[:, 1, :] << np.uint8(4))
    return np.concatenate([d.astype('<f2').view(np.uint8), qs], axis=1).tobytes()


def bf16(x):
    n = x.view(np.uint32).astype(np.uint64)
    n = np.where((n & 0x7fffffff) > 0x7f800000, (n & 0xffff0000) | (64 << 16), n)
    return ((n + (0x7fff + ((n >> 16) & 1))) >> 16).astype('<u2').tobytes()


out = sys.stdout.buffer
for part in (q8_0(x), q4_0(x), x.astype('<f2').tobytes(), bf16(x)):
    out.write(len(part).to_bytes(8, 'little'))
    out.write(part)
