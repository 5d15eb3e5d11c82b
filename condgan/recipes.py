"""The book's three training recipes and their command-line flags, in one place.

`run_mnist.py`, `run_zalando.py` and `run_emnist.py` each name a recipe; `commands.py` trains
it. `python -m aws launch` checks a GPU run's flags with the same parser before it rents
anything. Nothing here imports TensorFlow, so both answer a mistake at once.
"""
import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from condgan import cifar10, datasets
from condgan.checks import MAX_Z_DIM

# The book's hyperparameters, the same for the three recipes.
BATCH_SIZE = 32
Z_DIM = 96               # noise size; the generator also gets the one-hot class
LEARNING_RATE = 0.0002   # Adam, both networks
BETA1 = 0.35             # Adam's first-moment decay, lower than the usual 0.9
SAVE_EVERY = 1000        # steps between checkpoints and sample grids
# Each variant's optimiser (model.py has its networks): the book's, and the opt-in modern
# one's, which sets beta1 as DCGAN did (Radford et al., 2016).
VARIANT_DEFAULTS = {'book': {'learning_rate': LEARNING_RATE, 'beta1': BETA1},
                    'modern': {'learning_rate': 0.0002, 'beta1': 0.5}}
DEFAULT_VARIANT = 'book'

OUT_DIR = 'runs'


@dataclass(frozen=True)
class Recipe:
    title: str
    dataset: str                              # the loaders' name: mnist, fashion or emnist
    epochs: int                               # the book's
    load: Callable                            # (split, data_dir=...) -> images, labels
    class_names: Callable                     # data_dir -> a name per class, in class order


RECIPES = {
    'mnist': Recipe('MNIST handwritten digits', 'mnist', 16, datasets.load_mnist,
                    lambda data_dir: datasets.MNIST_LABELS),
    'zalando': Recipe('Fashion-MNIST (Zalando) clothes', 'fashion', 64,
                      datasets.load_fashion_mnist, lambda data_dir: datasets.FASHION_LABELS),
    'emnist': Recipe('EMNIST Balanced letters and digits (47 classes)', 'emnist', 32,
                     datasets.load_emnist,
                     lambda data_dir: datasets.emnist_label_names('balanced', data_dir)),
    # 1,563 steps an epoch: 25 epochs are DCGAN's usual budget on CIFAR-10.
    'cifar10': Recipe('CIFAR-10 colour photographs', 'cifar10', 25, cifar10.load_cifar10, cifar10.class_names),
}
# The recipes by their dataset: each dataset's loader and class names (EMNIST: Balanced).
DATASETS = {recipe.dataset: recipe for recipe in RECIPES.values()}  # mnist, fashion, emnist


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (and exit code 2), not usage + error."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def training_parser(name, recipe):
    parser = OneLineErrorParser(
        prog=f'run_{name}.py',
        description=f"Train a conditional GAN on {recipe.title} with the book's recipe "
                    f"(its defaults below), then draw every class.")
    data_folder = {'emnist': "the folder that holds NIST's gzip/ folder (or that gzip/ folder)",
                   'cifar10': "the folder that holds cifar-10-batches-bin/ (or that folder)"}.get(
        recipe.dataset, "the folder with the dataset's files")
    parser.add_argument(
        '--data-dir', type=existing_folder,
        help=f"{data_folder}; missing files are downloaded into it. Default: "
             f"$CGAN_DATA_DIR/{recipe.dataset} if CGAN_DATA_DIR is set (never written to), "
             f"else the per-user cache ~/.cache/cgan/{recipe.dataset}")
    add_run_flags(parser, name, recipe.epochs)
    return parser


def add_run_flags(parser, name, epochs):
    """The flags of every training run, a recipe's or an image folder's (commands.py)."""
    parser.add_argument('--out-dir', type=folder_or_new, default=OUT_DIR,
                        help=f'the run goes into OUT_DIR/{name}/ (default: {OUT_DIR})')
    # A setting's default is None, "not given": --resume then takes the run's own
    # (run_settings.settle), a new run the recipe's.
    parser.add_argument('--epochs', type=positive_int,
                        help=f'passes over the training images (default: {epochs}, or '
                             f'with --resume the run\'s own)')
    parser.add_argument('--max-steps', type=positive_int,
                        help='stop after this many training steps in all, for a quick look '
                             '(default: train every epoch)')
    parser.add_argument('--batch-size', type=positive_int,
                        help=f'images per training step (default: {BATCH_SIZE}, or the run\'s own)')
    parser.add_argument('--z-dim', type=noise_size,
                        help=f'size of the noise vector z, at most {MAX_Z_DIM} (default: {Z_DIM}, '
                             f'or the run\'s own)')
    parser.add_argument('--variant', choices=list(VARIANT_DEFAULTS),
                        help=f"the networks and losses: 'book', the book's, or 'modern', a "
                             f"lighter generator and a projection discriminator that draw clean "
                             f"images in a fraction of the steps (see the README). Default: "
                             f"{DEFAULT_VARIANT!r}, or with --resume the run's own")
    parser.add_argument('--learning-rate', type=positive_float,
                        help="Adam's learning rate, both networks (default: " + variant_defaults('learning_rate') + ", or the run's own)")
    parser.add_argument('--beta1', type=adam_beta1,
                        help="Adam's beta1, in [0, 1) (default: " + variant_defaults('beta1') + ", or the run's own)")
    parser.add_argument('--save-every', type=positive_int, default=SAVE_EVERY,
                        help=f'steps between checkpoints and sample grids (default: {SAVE_EVERY})')
    parser.add_argument('--seed', type=seed_number,
                        help='fixes the shuffles, the initial weights, z and dropout, so a run '
                             'repeats (on a CPU; a GPU may still differ); default: random, and '
                             'recorded so that --resume repeats it')
    parser.add_argument('--resume', action='store_true',
                        help=f'continue the run in OUT_DIR/{name}/ from its newest intact '
                             f'checkpoint (Ctrl-C saves one), exactly where it stopped; '
                             f'--epochs and --max-steps count from step 0 and may grow; a '
                             f'setting not given is the run\'s own, one given must be it; a '
                             f'folder without a checkpoint starts afresh')


def variant_defaults(setting):
    return ', '.join(f'{defaults[setting]} {variant}' for variant, defaults in VARIANT_DEFAULTS.items())


def existing_folder(text):
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f'no folder {text}: create it to download the data into it')
    return text


def folder_or_new(text):
    """A folder, or a path where one can be made: no file on the way to it."""
    path = Path(text)
    for place in [path, *path.parents]:
        if place.exists():
            if not place.is_dir():
                raise argparse.ArgumentTypeError(f'{place} is a file, not a folder')
            return text
    return text


def positive_int(text):
    value = parsed(text, int, 'a whole number')
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def noise_size(text):
    value = positive_int(text)
    if value > MAX_Z_DIM:
        raise argparse.ArgumentTypeError(f'must be at most {MAX_Z_DIM}, got {value}')
    return value


def seed_number(text):
    value = parsed(text, int, 'a whole number')
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f'must be from 0 to 2**63 - 1, got {value}')
    return value


def positive_float(text):
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {value}')
    return value


def adam_beta1(text):
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f'must lie in [0, 1), got {value}')
    return value


def finite_float(text):
    value = parsed(text, float, 'a number')
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f'expected a finite number, got {text!r}')
    return value


def parsed(text, kind, description):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected {description}, got {text!r}') from None
