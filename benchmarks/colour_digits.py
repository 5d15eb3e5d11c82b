"""Colour, shown to work: real MNIST digits in a random colour on a random dark background.

    CGAN_DATA_DIR=/work/shared/data python benchmarks/colour_digits.py --work /tmp/colour

Writes every MNIST image found (train and test splits) as a 32x32 RGB PNG into
WORK/colour_digits/<digit>/, trains the modern variant on that folder with `cgan.py train`,
judges it with `cgan.py evaluate` (its classifier trained on the folder's training part,
tested on its held-out tenth), prints the steps, the time and the figures, and copies the
run's classes.png to docs/colour_digits_classes.png. The colours are noise: the class is
the shape.
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from condgan import datasets  # noqa: E402

SIZE = 32            # the 28x28 digits, centred on a 32x32 background
SEED = 0


def write_folder(folder):
    """The coloured digits as PNG class folders; returns how many."""
    images = np.concatenate([datasets.load_mnist(split)[0] for split in datasets.SPLITS])
    labels = np.concatenate([datasets.load_mnist(split)[1] for split in datasets.SPLITS])
    rng = np.random.default_rng(SEED)
    ink = rng.uniform(0.35, 1.0, (len(images), 1, 1, 3))        # a bright-enough colour
    background = rng.uniform(0.0, 0.25, (len(images), 1, 1, 3))  # a dark one
    coverage = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(np.float64) / 255
    pixels = np.rint(255 * (background * (1 - coverage) + ink * coverage)).astype(np.uint8)
    for index, (picture, label) in enumerate(zip(pixels, labels)):
        class_folder = folder / str(label)
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture, 'RGB').save(class_folder / f'{index:05d}.png')
    return len(pixels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work', default='/tmp/colour-digits', help='folder for the images and the run')
    parser.add_argument('--steps', type=int, default=5000)
    options = parser.parse_args()
    work = Path(options.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / 'colour_digits'
    count = write_folder(folder)
    print(f'{count} coloured digits in {folder}', flush=True)
    command = [sys.executable, str(ROOT / 'cgan.py')]
    started = time.monotonic()
    subprocess.run(command + ['train', str(folder), '--variant', 'modern', '--seed', str(SEED),
                              '--max-steps', str(options.steps), '--epochs', '1000',
                              '--out-dir', str(work / 'runs')], check=True)
    training_seconds = time.monotonic() - started
    run_dir = work / 'runs' / folder.name
    evaluated = subprocess.run(command + ['evaluate', str(run_dir), '--json', '--seed', str(SEED)],
                               check=True, capture_output=True, text=True)
    figures = json.loads(evaluated.stdout)
    shutil.copy(run_dir / 'classes.png', ROOT / 'docs' / 'colour_digits_classes.png')
    print(f'steps {options.steps}, training {training_seconds / 60:.1f} min (with the folder\'s loading)')
    print(f"conditional accuracy {figures['conditional_accuracy']:.3f} (chance {figures['chance_accuracy']:.2f}), "
          f"classifier accuracy on the held-out images {figures['classifier_accuracy']:.3f}, "
          f"Fréchet distance {figures['frechet_distance']:.2f} (floor {figures['frechet_floor']:.2f}), "
          f"diversity ratio {figures['diversity_ratio']:.2f}")
    print(json.dumps(figures))


if __name__ == '__main__':
    main()
