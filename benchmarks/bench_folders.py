"""How fast an image folder loads: 60,000 PNG files of 28x28 (Fashion-MNIST's training
images as class folders), read, hashed and decoded by folders.load; then the same folder
as a resumed run loads it, from the run's cache of decoded images.

    CGAN_DATA_DIR=/work/shared/data python benchmarks/bench_folders.py [--work /tmp/bench-folders]

The files were just written, so they are in the page cache: the figures are of the loader,
not of the disk.
"""
import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from condgan import datasets, folders  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work', default='/tmp/bench-folders')
    options = parser.parse_args()
    work = Path(options.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / 'fashion'
    images, labels = datasets.load_fashion_mnist()
    names = [name.replace('/', '-') for name in datasets.FASHION_LABELS]
    started = time.perf_counter()
    for index, (image, label) in enumerate(zip(images, labels)):
        path = folder / names[label] / f'{index:05d}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(path)
    print(f'wrote {len(images)} PNG files in {time.perf_counter() - started:.1f} s')

    started = time.perf_counter()
    listing = folders.scan(folder)
    scanned = time.perf_counter() - started
    started = time.perf_counter()
    loaded = folders.load(folder)
    loading = time.perf_counter() - started
    cache = work / folders.CACHE_FILE
    folders.save_cache(loaded, 28, 1, cache)
    started = time.perf_counter()
    again = folders.load(folder, 28, 1, cache=cache)
    from_cache = time.perf_counter() - started
    assert (again.images == loaded.images).all() and len(listing.files) == len(images)
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python '
          f'{platform.python_version()}, Pillow {Image.__version__}')
    print(f'scan (list, read, hash, headers): {scanned:.1f} s')
    print(f'load (scan, then decode into uint8 {loaded.images.shape}): {loading:.1f} s '
          f'({len(images) / loading:,.0f} images/s)')
    print(f'load of a resumed run (scan, then its cache of {cache.stat().st_size / 2**20:.0f} MiB): '
          f'{from_cache:.1f} s')
    shutil.rmtree(work)


if __name__ == '__main__':
    main()
