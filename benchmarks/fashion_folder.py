"""Fashion-MNIST as an image folder gives the figures of run_zalando.py, within seed noise.

    CGAN_DATA_DIR=/work/shared/data python -m benchmarks.fashion_folder --work /tmp/fashion-folder

1. Writes the 60,000 training images of Fashion-MNIST's IDX files as PNG class folders,
   WORK/fashion/<class name>/ ('/' is no folder name: 'T-shirt/top' is 'T-shirt-top'), and
   checks that the folder loads back as exactly the IDX files' (pixels, class name) pairs.
2. For each seed, with the same flags: `cgan.py train` on the folder, stopped halfway and
   gone on with --resume, and `run_zalando.py` on the IDX files in one go. The folder's run
   trains on nine tenths of the images: the tenth held out is its judge's test set.
3. Judges every model twice, matching classes by name, with the same z for the same class:
   by the recipe's judge (`evaluate`'s classifier trained on the IDX training images, tested
   on the IDX test images) and by the folder's judge (trained on the folder's training part,
   tested on its held-out tenth).
4. Draws a class by its folder's name (`cgan.py generate --target-class 'Ankle boot'`), and
   synthesizes class folders (`cgan.py synthesize`) that `cgan.py train` reads back.

Prints the figures, then, per figure, the difference between the folder's and the IDX's
mean over the seeds beside the largest difference between two seeds of one source. Quality
only: the step rate depends on the machine's load.
"""
import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from condgan import datasets, folders
from condgan.evaluate import Judge
from condgan.gan import load_model

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ('conditional_accuracy', 'frechet_distance', 'diversity_ratio')


def folder_name(class_name):
    return class_name.replace('/', '-')


def write_folder(folder):
    """The IDX training images as PNG class folders; returns the images and labels written."""
    images, labels = datasets.load_fashion_mnist('train')
    for index, (image, label) in enumerate(zip(images, labels)):
        path = folder / folder_name(datasets.FASHION_LABELS[label]) / f'train-{index:05d}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(path)
    return images, labels


def check_round_trip(folder, images, labels):
    """The folder, as cgan loads it, holds exactly the IDX files' (pixels, class name) pairs."""
    loaded = folders.load(folder)
    found = sorted((image.tobytes(), loaded.class_names[label])
                   for image, label in zip(loaded.images, loaded.labels))
    expected = sorted((image.tobytes(), folder_name(datasets.FASHION_LABELS[label]))
                      for image, label in zip(images, labels))
    if found != expected:
        raise SystemExit(f'{folder} does not load back as the IDX files: {len(found)} pairs '
                         f'read, {len(expected)} written, {len(set(found) ^ set(expected))} differ')
    return len(found)


def run(*arguments):
    print('$', ' '.join(map(str, arguments)), flush=True)
    subprocess.run([sys.executable, *map(str, arguments)], cwd=ROOT, check=True)


def train_both(work, folder, seed, steps, flags):
    """The folder's run (halfway, then --resume) and run_zalando.py's; their run folders."""
    out_dir = work / f'seed-{seed}'
    common = ['--variant', 'modern', '--seed', seed, '--out-dir', out_dir, *flags]
    run('cgan.py', 'train', folder, *common, '--max-steps', steps // 2)
    run('cgan.py', 'train', folder, *common, '--max-steps', steps, '--resume')
    run('run_zalando.py', *common, '--max-steps', steps)
    return {'folder': out_dir / folder.name, 'idx': out_dir / 'zalando'}


def recorded_differences(runs):
    """The recorded settings in which the two runs differ (none is expected but the data)."""
    configs = [json.loads((run_dir / 'config.json').read_text()) for run_dir in runs.values()]
    return {f'{section}.{key}': tuple(config[section].get(key) for config in configs)
            for section in ('model', 'training') for key in configs[0][section]
            if configs[0][section].get(key) != configs[1][section].get(key)}


def judged(gan, judge, per_class, seed):
    """`judge`'s figures for `gan`, its classes matched to the judge's by name; the z of a
    class comes from (seed, the judge's class position), the same for every model."""
    value_by_name = {folder_name(name): value for value, name in zip(gan.classes, gan.class_names)}

    def generate(position, count):
        value = value_by_name[folder_name(judge.class_names[position])]
        return gan.generate_new(value, rows=1, cols=count, plot=False, seed=[seed, position])
    return judge.evaluate_generator(generate, per_class)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work', default='/tmp/fashion-folder', help='folder for the images and the runs')
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--per-class', type=int, default=500, help='generated images per class, per judge')
    parser.add_argument('--json', action='store_true', help='print every figure as one JSON object last')
    parser.add_argument('--flags', nargs=argparse.REMAINDER, default=[],
                        help='more training flags for both runs, last on the line')
    options = parser.parse_args()
    work = Path(options.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / 'fashion'
    images, labels = write_folder(folder)
    print(f'{check_round_trip(folder, images, labels)} (pixels, class name) pairs in {folder}: '
          f'exactly the IDX files\'', flush=True)

    runs = {seed: train_both(work, folder, seed, options.steps, ['--epochs', '1000', *options.flags])
            for seed in options.seeds}
    print('recorded settings that differ:', recorded_differences(runs[options.seeds[0]]) or 'none')
    models = {(seed, source): load_model(run_dir) for seed in runs for source, run_dir in runs[seed].items()}
    source = models[options.seeds[0], 'folder'].data_source
    figures = {}
    for judge_name, judge in (('recipe', Judge('fashion')), ('folder', Judge.for_folder(source, (28, 28, 1)))):
        with judge:
            print(f'{judge_name} judge: {judge.classifier_accuracy:.2%} on its real test images, '
                  f'Fréchet floor {judge.frechet_floor:.2f}', flush=True)
            for (seed, source_name), gan in models.items():
                figures[judge_name, seed, source_name] = judged(gan, judge, options.per_class, seed)
    report(figures, options.seeds)

    seed = options.seeds[0]
    run_dir = runs[seed]['folder']
    run('cgan.py', 'generate', run_dir, '--target-class', 'Ankle boot', '--seed', 0, '-o', work / 'ankle-boots.png')
    run('cgan.py', 'synthesize', run_dir, '--per-class', 100, '-o', work / 'made')
    run('cgan.py', 'train', work / 'made', '--max-steps', 2, '--out-dir', work / 'made-runs')
    if options.json:
        print(json.dumps({' '.join(map(str, key)): value for key, value in figures.items()}))


def report(figures, seeds):
    print(f"\n{'judge':<7} {'seed':>4}  {'source':<6}  {'accuracy':>8}  {'Fréchet':>7}  {'diversity':>9}  worst class")
    for (judge, seed, source), found in figures.items():
        worst = min(found['per_class'], key=lambda c: c['conditional_accuracy'])
        print(f"{judge:<7} {seed:>4}  {source:<6}  {found['conditional_accuracy']:8.1%}  "
              f"{found['frechet_distance']:7.2f}  {found['diversity_ratio']:9.2f}  "
              f"{worst['name']} {worst['conditional_accuracy']:.1%}")
    print('\nfolder minus IDX (mean over seeds) beside the largest seed-to-seed difference of one source:')
    for judge, figure in itertools.product(('recipe', 'folder'), FIGURES):
        by_source = {source: [figures[judge, seed, source][figure] for seed in seeds] for source in ('folder', 'idx')}
        difference = np.mean(by_source['folder']) - np.mean(by_source['idx'])
        seed_noise = max(max(values) - min(values) for values in by_source.values())
        print(f'  {judge} judge, {figure:<20} {difference:+.3f}   seeds apart by up to {seed_noise:.3f}')


if __name__ == '__main__':
    main()
