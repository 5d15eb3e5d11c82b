"""Time the data path of training: loading Fashion-MNIST's 60,000 training images, and one
full pass of Dataset.get_batches(32) over them (median of several runs).

    python bench_datasets.py --data-dir /path/to/data   # or with CGAN_DATA_DIR set
"""

import argparse
import os
import statistics
import time

import numpy as np

from condgan.datasets import Dataset, load_fashion_mnist


def median_seconds(repeats, action, *args):
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        action(*args)
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def full_pass(dataset, batch_size, rng):
    for _ in dataset.get_batches(batch_size, rng):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', help='root folder with a fashion/ sub-folder '
                                           '(default: $CGAN_DATA_DIR, else the cache)')
    parser.add_argument('--repeats', type=int, default=5, help='runs per measurement')
    parser.add_argument('--batch-size', type=int, default=32)
    args = parser.parse_args()
    fashion_dir = os.path.join(args.data_dir, 'fashion') if args.data_dir else None

    images, labels = load_fashion_mnist('train', data_dir=fashion_dir)
    load_time = median_seconds(args.repeats, load_fashion_mnist, 'train', fashion_dir)
    print(f'load Fashion-MNIST train ({len(images):,} images): {load_time:.3f} s')

    dataset = Dataset(images, labels, channels=1, seed=0)
    for label, rng in (('stored order', None), ('reshuffled', np.random.default_rng(0))):
        pass_time = median_seconds(args.repeats, full_pass, dataset, args.batch_size, rng)
        print(f'one pass of get_batches({args.batch_size}), {label}: {pass_time:.3f} s '
              f'({len(images) / pass_time:,.0f} images/s)')


if __name__ == '__main__':
    main()
