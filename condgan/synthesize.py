"""A generated dataset: a trained model's images in its dataset's own IDX files.

    python -m condgan.synthesize runs/mnist --per-class 1000 --seed 0 -o generated/
    python -m condgan.synthesize runs/mnist/mnist.pkl --mix 3=5000,8=5000 -o more-3s-and-8s/

The output folder holds what the dataset's loader reads, so `--data-dir generated/` trains
any recipe on it, and any other IDX reader reads it:
- MNIST and Fashion-MNIST: `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz`;
- EMNIST: in `gzip/`, as in NIST's download, `emnist-balanced-train-images-idx3-ubyte.gz` and
  `...-labels-...`, each image stored transposed as NIST stores them (every EMNIST reader
  transposes it back, upright), and `emnist-balanced-mapping.txt`, the class names;
- `synthesis.json`: how it was made (model, training step, seed, counts per class).

Labels are the model's class values. The images come in a shuffled class order, in batches
of GENERATE_BATCH, so memory stays flat however many are asked for.
"""
import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from condgan import datasets
from condgan.pictures import to_pixels
from condgan.model_argument import add_model_arguments, model_from, model_name
from condgan.recipes import DATASETS, OneLineErrorParser, folder_or_new, positive_int
from condgan.runs import make_folder

GENERATE_BATCH = 1000          # images per generator call: bounds the memory
RECORD_FILE = 'synthesis.json'
EMNIST_SUBSET = 'balanced'     # the EMNIST recipe's


def synthesize(gan, out_dir, counts, seed, dataset, class_names=(), replace=False, model=None):
    """Write `counts[class value]` images of each class from `gan` into `out_dir` as
    `dataset`'s training files ('mnist', 'fashion' or 'emnist'), and return the record
    written to synthesis.json. `class_names` (in the order of `gan.classes`) go into EMNIST's
    mapping file; `model` names the model in the record.

    A FileExistsError if `out_dir` already holds a dataset, unless `replace`.
    """
    out_dir = Path(out_dir)
    check_model(gan, counts, dataset)
    if dataset == 'emnist' and len(class_names) != len(gan.classes):
        raise ValueError(f"EMNIST's mapping file names each class: got {len(class_names)} names "
                         f"for the model's {len(gan.classes)} classes")
    images_file, labels_file = datasets.idx_file_names(dataset, 'train', EMNIST_SUBSET)
    if dataset == 'emnist':  # NIST's folder, where load_emnist(data_dir=out_dir) looks
        images_file, labels_file = f'gzip/{images_file}', f'gzip/{labels_file}'
    if not replace:
        refuse_a_dataset(out_dir)
    make_folder((out_dir / images_file).parent)
    # The record goes first and comes back last: a folder without it was not finished.
    (out_dir / RECORD_FILE).unlink(missing_ok=True)

    labels = np.random.default_rng(seed).permutation(
        np.repeat(list(counts), list(counts.values()))).astype(np.uint8)
    height, width, _ = gan.image_shape
    with tqdm(total=len(labels), unit='image', desc=f'{out_dir}/{images_file}') as progress:
        datasets.write_idx(out_dir / images_file, (len(labels), height, width),
                           generated_pixels(gan, labels, seed, dataset == 'emnist', progress))
    datasets.write_idx(out_dir / labels_file, labels.shape, [labels])
    files = [images_file, labels_file]
    if dataset == 'emnist':
        mapping_file = f'gzip/emnist-{EMNIST_SUBSET}-mapping.txt'
        write_text(out_dir / mapping_file, ''.join(
            f'{value} {ord(name)}\n' for value, name in zip(gan.classes, class_names)))
        files.append(mapping_file)
    record = {
        'model': None if model is None else str(model),
        'step': trained_step(gan),
        'dataset': dataset,
        'seed': seed,
        'images': len(labels),
        'counts': {str(value): count for value, count in counts.items()},
        'files': files,
    }
    write_text(out_dir / RECORD_FILE, json.dumps(record, indent=2) + '\n')
    return record


def trained_step(gan):
    """The training step of the model's weights: its last step trained, else the step of the
    checkpoint it was loaded from (None for a checkpoint without one in its name)."""
    if len(gan.step_losses):
        return int(gan.step_losses[-1, 0])
    return getattr(gan, 'checkpoint_step', None)


def synthesize_folder(gan, out_dir, counts, seed, replace=False, model=None):
    """Write `counts[class value]` images of each class from `gan` into `out_dir` as an image
    folder that `cgan.py train` reads: `<class name>/<number>.png` (an unconditional model's
    `counts[None]` images loose in it), and synthesis.json. The folder is written beside
    `out_dir` and renamed into place at the end, so it is whole or absent.

    Refused: the folder the model was trained on (or one inside it), a class name that is no
    folder name, and an `out_dir` that holds files, unless `replace` and they are an earlier
    synthesis (its synthesis.json)."""
    from condgan import folders
    out_dir = Path(out_dir)
    source = (gan.data_source or {}).get('folder')
    if source and (out_dir.resolve() == Path(source) or Path(source) in out_dir.resolve().parents):
        raise ValueError(f'{out_dir} is inside the folder {source} that the model was trained on: '
                         f'write the synthesized images elsewhere')
    for name in gan.class_names:
        folders.check_class_name(name, out_dir, 'write IDX files instead (without --folders)')
    check_counts(gan, counts)
    existing = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
    if existing and not (replace and RECORD_FILE in existing):
        raise FileExistsError(f'{out_dir} is not empty ({", ".join(existing[:3])}): choose a new folder'
                              + ('' if replace else ', or replace an earlier synthesis (--replace)'))
    partial = out_dir.with_name(f'.{out_dir.name}.partial')
    shutil.rmtree(partial, ignore_errors=True)  # left by a synthesis that was killed
    partial.mkdir(parents=True)
    try:
        written = 0
        with tqdm(total=sum(counts.values()), unit='image', desc=str(out_dir)) as progress:
            for value, count in counts.items():
                position = None if value is None else list(gan.classes).index(value)
                class_folder = partial if value is None else partial / gan.class_names[position]
                class_folder.mkdir(exist_ok=True)
                for batch_number, start in enumerate(range(0, count, GENERATE_BATCH)):
                    size = min(GENERATE_BATCH, count - start)
                    batch_seed = int(np.random.SeedSequence(
                        [seed, batch_number, -1 if position is None else position]).generate_state(1)[0])
                    images = to_pixels(gan.generate_new(target_class=-1 if value is None else value,
                                                        rows=1, cols=size, plot=False, seed=batch_seed))
                    for number, pixels in enumerate(images, start):
                        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
                            class_folder / f'{number:05d}.png')
                    written += size
                    progress.update(size)
        record = {'model': None if model is None else str(model),
                  'step': trained_step(gan),
                  'layout': 'image folder', 'seed': seed, 'images': written,
                  'counts': {'' if value is None else gan.class_names[list(gan.classes).index(value)]: count
                             for value, count in counts.items()}}
        write_text(partial / RECORD_FILE, json.dumps(record, indent=2) + '\n')
        if out_dir.exists():  # an earlier synthesis goes only once the new one is in its place
            replaced = out_dir.with_name(f'.{out_dir.name}.replaced')
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(out_dir, replaced)
            os.replace(partial, out_dir)
            shutil.rmtree(replaced)
        else:
            os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return record


def check_counts(gan, counts):
    unknown = [value for value in counts if value is not None and value not in list(gan.classes)]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]}: the model knows {list(gan.classes)}")


def generated_pixels(gan, labels, seed, transposed, progress):
    """Yield the images of `labels`, in order, GENERATE_BATCH at a time, as uint8 (n, H, W):
    each batch's images of one class come from one `generate_new` call with its own seed."""
    for batch_number, start in enumerate(range(0, len(labels), GENERATE_BATCH)):
        batch_labels = labels[start:start + GENERATE_BATCH]
        pixels = np.empty((len(batch_labels), *gan.image_shape[:2]), np.uint8)
        for position, value in enumerate(gan.classes):
            wanted = np.flatnonzero(batch_labels == value)
            if len(wanted):
                batch_seed = int(np.random.SeedSequence([seed, batch_number, position]).generate_state(1)[0])
                images = gan.generate_new(target_class=value, rows=1, cols=len(wanted), plot=False,
                                          seed=batch_seed)
                pixels[wanted] = to_pixels(images)[..., 0]
        progress.update(len(batch_labels))
        yield pixels.transpose(0, 2, 1) if transposed else pixels


def check_model(gan, counts, dataset):
    """A ValueError unless the model draws what `dataset`'s files hold: 28x28 gray images of
    classes 0-255, and knows every class in `counts`."""
    if tuple(gan.image_shape) != (datasets.IMAGE_SIZE, datasets.IMAGE_SIZE, 1):
        raise ValueError(f"the model draws images of shape {tuple(gan.image_shape)}; {dataset}'s "
                         f"files hold 28x28 gray images (28, 28, 1)")
    if not all(0 <= value <= 255 for value in gan.classes):
        raise ValueError(f"the model's classes {list(gan.classes)} do not fit the IDX labels' "
                         f"bytes (0-255)")
    unknown = [value for value in counts if value not in list(gan.classes)]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]}: the model knows {list(gan.classes)}")


def refuse_a_dataset(folder):
    """A FileExistsError if `folder` holds a dataset."""
    existing = dataset_files(folder)
    if existing:
        raise FileExistsError(f'{folder} already holds a dataset ({", ".join(existing)}): '
                              f'choose another folder, or replace it (--replace)')


def dataset_files(folder):
    """The files in `folder` and its `gzip/` that make a dataset (IDX files, a record)."""
    files = [*folder.glob('*'), *folder.glob('gzip/*')] if folder.is_dir() else []
    return sorted(str(path.relative_to(folder)) for path in files
                  if path.name.endswith(('-ubyte.gz', '-ubyte')) or path.name == RECORD_FILE)


def write_text(path, text):
    with datasets._partial_file(path) as f:
        f.write(text.encode())


def class_mix(text):
    """'3=500,A=2000' -> {'3': 500, 'A': 2000}: each class by value or by name, as
    `generate --target-class` takes it (`mix_counts` finds them in the model)."""
    counts = {}
    for item in text.split(','):
        name, equals, count = item.partition('=')
        try:
            count = int(count)
        except ValueError:
            count = None
        if not (name and equals and count is not None):
            raise argparse.ArgumentTypeError(
                f"expected CLASS=COUNT pairs such as 3=500,8=2000; got {item!r}")
        if re.fullmatch(r'-\d+', name):
            raise argparse.ArgumentTypeError(
                f"{item!r}: class {name} is negative; a class is its value (0 or more) or its name")
        if count < 1 or name in counts:
            raise argparse.ArgumentTypeError(
                f"{item!r}: each class once, with a count of at least 1")
        counts[name] = count
    return counts


def mix_counts(gan, mix):
    """--mix's {class value or name: count} as {class value: count}, for the model's classes."""
    by_text = {}
    for value, name in zip(gan.classes, gan.class_names):
        by_text[str(value)] = by_text[name] = value
    counts = {}
    for text, count in mix.items():
        if text not in by_text:
            names = '' if list(gan.class_names) == [str(value) for value in gan.classes] else \
                f" or by name {', '.join(gan.class_names)}"
            raise ValueError(f"unknown class {text}: the model knows {list(gan.classes)}{names}")
        if by_text[text] in counts:
            raise ValueError(f"--mix names class {by_text[text]} twice")
        counts[by_text[text]] = count
    return counts


def with_option_values_attached(argv, option):
    """`option VALUE` as `option=VALUE`: argparse takes a VALUE that starts with '-' (--mix -3=5)
    for an option and answers only "expected one argument"; attached, the value is checked."""
    argv = list(argv)
    for position, argument in enumerate(argv[:-1]):
        if argument == option and argv[position + 1].startswith('-'):
            return argv[:position] + [f'{option}={argv[position + 1]}'] + argv[position + 2:]
    return argv


def emnist_class_names(gan, data_dir=None):
    """The names for EMNIST's mapping file: the model's own, when each is one character (as
    an EMNIST recipe's model holds them), else the real dataset's (which may be a 536 MB
    download, or in `data_dir`)."""
    if all(len(name) == 1 for name in gan.class_names):
        return gan.class_names
    return DATASETS['emnist'].class_names(data_dir)


def parser():
    parser = OneLineErrorParser(
        prog='cgan.py synthesize',
        description="Write a generated dataset: a trained model's images, with their classes "
                    "as labels, in the IDX files of its dataset (MNIST, Fashion-MNIST, EMNIST), "
                    "which every recipe reads with --data-dir and any IDX reader reads.")
    add_model_arguments(parser, 'a pickled CGan (runs/mnist/mnist.pkl) or a run folder '
                                '(runs/mnist/: its pickle, else its newest checkpoint)')
    parser.add_argument('-o', '--out-dir', required=True, type=folder_or_new,
                        help='the folder to write the dataset into (made if need be)')
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument('--per-class', type=positive_int, default=1000,
                        help='images of each class (default: 1000)')
    counts.add_argument('--mix', type=class_mix,
                        help='images per class as CLASS=COUNT pairs, each class by value or '
                             'name, e.g. 3=500,8=2000 or A=100: only those classes')
    parser.add_argument('--seed', type=int, default=0,
                        help='fixes the images and their order (default: 0)')
    parser.add_argument('--dataset', choices=sorted(DATASETS),
                        help="the model's dataset, when its name is not a recipe's")
    parser.add_argument('--data-dir', help="the real dataset's folder, for EMNIST's class names when "
                                           "the model holds none (default: as the loaders find it)")
    parser.add_argument('--folders', action='store_true',
                        help="write an image folder, class folders of PNG files that `cgan.py "
                             "train` reads, instead of IDX files (always, for a model trained on "
                             "an image folder)")
    parser.add_argument('--replace', action='store_true',
                        help='replace the dataset that the output folder already holds')
    return parser


def main(argv=None):
    command = parser()
    options = command.parse_args(with_option_values_attached(sys.argv[1:] if argv is None else argv,
                                                             '--mix'))
    if not 0 <= options.seed < 2**63:
        command.error(f'--seed: expected a whole number from 0 to 2**63 - 1; got {options.seed}')
    if not options.replace:  # before the model loads: a refusal should not take seconds
        refuse_a_dataset(Path(options.out_dir))
    from condgan import evaluate  # TensorFlow: only once the arguments are known to be good
    gan = model_from(options)
    if gan.data_source or options.folders:
        counts = mix_counts(gan, options.mix) if options.mix else \
            {value: options.per_class for value in gan.classes or [None]}
        record = synthesize_folder(gan, options.out_dir, counts, options.seed, options.replace,
                                   model=model_name(options))
        print(f"{record['images']} images of {len(counts)} classes: {options.out_dir}/<class name>/*.png, "
              f"{Path(options.out_dir) / RECORD_FILE}")
        return
    dataset = evaluate.dataset_of(gan, options.dataset)
    counts = mix_counts(gan, options.mix) if options.mix else \
        {value: options.per_class for value in gan.classes}
    class_names = emnist_class_names(gan, options.data_dir) if dataset == 'emnist' else ()
    record = synthesize(gan, options.out_dir, counts, options.seed, dataset, class_names,
                        options.replace, model=model_name(options))
    print(f"{record['images']} images of {len(counts)} classes: "
          f"{', '.join(str(Path(options.out_dir) / name) for name in record['files'])}, "
          f"{Path(options.out_dir) / RECORD_FILE}")

