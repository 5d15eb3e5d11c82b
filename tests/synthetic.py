"""Small synthetic data files for the datasets tests, in the datasets' own formats."""

import gzip
import struct

import numpy as np


def random_images(count, size=28, seed=0):
    """uint8 (count, size, size) images, each different from the others."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size), dtype=np.uint8)


def idx_bytes(array, magic=None):
    """Uncompressed IDX: big-endian header (magic, then each dimension), then uint8 values."""
    magic = 0x0800 + array.ndim if magic is None else magic
    header = struct.pack(f'>{1 + array.ndim}I', magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path, array, magic=None):
    path.write_bytes(gzip.compress(idx_bytes(array, magic)))
    return path


def write_idx_pair(folder, images, labels, prefix='train'):
    """MNIST-style files `<prefix>-images-idx3-ubyte.gz` and `<prefix>-labels-idx1-ubyte.gz`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f'{prefix}-images-idx3-ubyte.gz', images)
    write_idx(folder / f'{prefix}-labels-idx1-ubyte.gz', labels)
