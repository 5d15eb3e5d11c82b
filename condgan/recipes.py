"""The book's three training recipes and the `generate` command, on the command line.

`run_mnist.py`, `run_zalando.py` and `run_emnist.py` each name a recipe and call `main`;
`python cgan.py generate` calls `generate_main`. A run leaves in `<out-dir>/<recipe>/`:
checkpoints, `losses.csv`, `losses.png` and `samples_<step>.png` (written by `CGan.fit`), then
`<recipe>.pkl`, `classes.png`, `interpolation.gif`, `progress.gif` and `run.json`.

    python run_mnist.py --max-steps 300            # a quick look at the MNIST recipe
    python cgan.py generate runs/mnist/mnist.pkl --target-class 8 -o eights.png
"""
import argparse
import datetime
import hashlib
import json
import pickle
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from condgan import datasets

# The book's hyperparameters, the same for the three recipes.
BATCH_SIZE = 32
Z_DIM = 96               # noise size; the generator also gets the one-hot class
LEARNING_RATE = 0.0002   # Adam, both networks
BETA1 = 0.35             # Adam's first-moment decay, lower than the usual 0.9
SAVE_EVERY = 1000        # steps between checkpoints and sample grids
OUT_DIR = 'runs'

# The pictures a run leaves behind.
CLASS_COLUMNS = 10         # images per class in classes.png
LABEL_WIDTH = 80           # pixels left of classes.png's rows for the class names
INTERPOLATION_STEPS = 50   # frames of interpolation.gif
INTERPOLATION_SCALE = 4    # its 28x28 images are enlarged to 112x112
PROGRESS_SCALE = 2         # progress.gif's sample grids are enlarged twice
FRAME_MS = 100             # interpolation.gif: 5 s from one class to the other
PROGRESS_FRAME_MS = 500


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
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (and exit code 2), not usage + error."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


# ----------------------------------------------------------------- training

def main(name, argv=None):
    """Train recipe `name` as the command line (or `argv`) asks, then leave its pictures."""
    recipe = RECIPES[name]
    parser = training_parser(name, recipe)
    options = parser.parse_args(argv)
    started = time.monotonic()
    run_dir = Path(options.out_dir) / name
    refuse_another_recipe(parser, run_dir, name)
    try:
        images, labels = recipe.load('train', data_dir=options.data_dir)
        class_names = recipe.class_names(options.data_dir)
        data_files = datasets.data_files(recipe.dataset, 'train', options.data_dir)
    except (OSError, datasets.DataError) as error:  # missing, unreadable or undownloadable
        parser.error(str(error))
    gan, training_seconds = train(parser, name, options, datasets.Dataset(
        images, labels, channels=1, seed=options.seed))

    with open(run_dir / f'{name}.pkl', 'wb') as f:
        pickle.dump(gan, f)
    save_classes_png(gan, class_names, run_dir / 'classes.png', options.seed)
    first, last = gan.classes[0], gan.classes[-1]
    save_interpolation_gif(gan.interpolate(first, last, INTERPOLATION_STEPS, options.seed),
                           class_names[0], class_names[-1], run_dir / 'interpolation.gif')
    save_progress_gif(run_dir, run_dir / 'progress.gif')
    steps = int(gan.step_losses[-1, 0]) if len(gan.step_losses) else 0  # 0: Ctrl-C at once
    record = {
        'recipe': name, 'dataset': recipe.dataset, 'arguments': vars(options),
        'versions': versions(),
        'data': {'images': len(images), 'classes': list(class_names),
                 'sha256': {str(path): sha256(path) for path in data_files}},
        'steps': steps,
        'training_seconds': round(training_seconds, 1),
        'wall_time_seconds': round(time.monotonic() - started, 1),
        'finished': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    }
    (run_dir / 'run.json').write_text(json.dumps(record, indent=2) + '\n')
    print(f'{recipe.title}: {steps} steps in {training_seconds / 60:.1f} min; see {run_dir}/ '
          f'(classes.png, progress.gif, interpolation.gif, losses.png, {name}.pkl, run.json)')


def train(parser, name, options, dataset):
    """A CGan trained as the options say, and the seconds it took; CGan's refusals of the run
    folder become one-line errors."""
    # Imported here, not at the top: TensorFlow takes seconds, and --help or a mistyped flag
    # should answer at once.
    from condgan.gan import CGan
    gan = CGan(dataset, epochs=options.epochs, batch_size=options.batch_size,
               z_dim=options.z_dim, generator_name=name, learning_rate=options.learning_rate,
               beta1=options.beta1, out_dir=options.out_dir, seed=options.seed)
    run_dir = Path(options.out_dir) / name
    started = time.monotonic()
    try:
        gan.fit(options.learning_rate, options.beta1, resume=options.resume,
                save_every_n=options.save_every, max_steps=options.max_steps)
    except FileExistsError:
        parser.error(f'{run_dir} already holds a training run: continue it with --resume, '
                     f'or choose another --out-dir')
    except FileNotFoundError:
        parser.error(f'--resume, but {run_dir} holds no checkpoint to resume')
    except ValueError as error:  # the checkpoint is another model's
        parser.error(f'--resume: {error}')
    return gan, time.monotonic() - started


def versions():
    import tensorflow as tf
    return {'python': platform.python_version(), 'tensorflow': tf.__version__,
            'numpy': np.__version__}


def training_parser(name, recipe):
    parser = OneLineErrorParser(
        prog=f'run_{name}.py',
        description=f"Train a conditional GAN on {recipe.title} with the book's recipe "
                    f"(its defaults below), then draw every class.")
    data_folder = ("the folder that holds NIST's gzip/ folder (or that gzip/ folder)"
                   if recipe.dataset == 'emnist' else "the folder with the dataset's files")
    parser.add_argument(
        '--data-dir', type=existing_folder,
        help=f"{data_folder}; missing files are downloaded into it. Default: "
             f"$CGAN_DATA_DIR/{recipe.dataset} if CGAN_DATA_DIR is set (never written to), "
             f"else the per-user cache ~/.cache/cgan/{recipe.dataset}")
    parser.add_argument('--out-dir', type=folder_or_new, default=OUT_DIR,
                        help=f'the run goes into OUT_DIR/{name}/ (default: {OUT_DIR})')
    parser.add_argument('--epochs', type=positive_int, default=recipe.epochs,
                        help=f'passes over the training images (default: {recipe.epochs})')
    parser.add_argument('--max-steps', type=positive_int,
                        help='stop after this many training steps in all, for a quick look '
                             '(default: train every epoch)')
    parser.add_argument('--batch-size', type=positive_int, default=BATCH_SIZE,
                        help=f'images per training step (default: {BATCH_SIZE})')
    parser.add_argument('--z-dim', type=positive_int, default=Z_DIM,
                        help=f'size of the noise vector z (default: {Z_DIM})')
    parser.add_argument('--learning-rate', type=positive_float, default=LEARNING_RATE,
                        help=f"Adam's learning rate, both networks (default: {LEARNING_RATE})")
    parser.add_argument('--beta1', type=adam_beta1, default=BETA1,
                        help=f"Adam's beta1, in [0, 1) (default: {BETA1})")
    parser.add_argument('--save-every', type=positive_int, default=SAVE_EVERY,
                        help=f'steps between checkpoints and sample grids (default: {SAVE_EVERY})')
    parser.add_argument('--seed', type=int,
                        help='fixes the shuffles, the initial weights and z, so a run repeats '
                             '(on a CPU; a GPU may still differ); default: random')
    parser.add_argument('--resume', action='store_true',
                        help=f'continue the run in OUT_DIR/{name}/ from its latest checkpoint '
                             f'(Ctrl-C saves one); --epochs and --max-steps count from step 0')
    return parser


def refuse_another_recipe(parser, run_dir, name):
    """Stop before touching a run folder whose run.json names another recipe."""
    record_path = run_dir / 'run.json'
    if not record_path.exists():
        return
    try:
        recipe = json.loads(record_path.read_text())['recipe']
    except (ValueError, TypeError, KeyError):
        parser.error(f'{record_path} is not a run record (no "recipe" in it); move it away to '
                     f'train in {run_dir}')
    if recipe != name:
        parser.error(f'{run_dir} holds a model of the {recipe!r} recipe, not {name!r}: choose '
                     f'another --out-dir')


def existing_folder(text):
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f'no folder {text}: create it to download the data into it')
    return text


def folder_or_new(text):
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a file, not a folder')
    return text


def positive_int(text):
    value = parsed(text, int, 'a whole number')
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
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


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------- pictures

def save_classes_png(gan, class_names, path, seed=None):
    """One row of new images per class, the class name at the left of its row."""
    images = gan.generate_new(target_class=-1, rows=len(gan.classes), cols=CLASS_COLUMNS,
                              plot=False, seed=seed)
    grid = Image.fromarray(gan.images_grid(images, CLASS_COLUMNS))
    row_height = gan.image_shape[0]
    picture = Image.new(grid.mode, (LABEL_WIDTH + grid.width, grid.height))
    picture.paste(grid, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=min(14, row_height // 2))
    for row, class_name in enumerate(class_names):
        draw.text((4, (row + 0.5) * row_height), str(class_name), fill='white', font=font,
                  anchor='lm')
    picture.save(path)


def save_interpolation_gif(images, start_name, end_name, path):
    """The frames of `CGan.interpolate`, each above a slider from one class name to the other."""
    font = ImageFont.load_default(size=10)
    frames = []
    for index, image in enumerate(to_pixels(images)):
        picture = enlarged(image, INTERPOLATION_SCALE)
        frame, draw = with_strip(picture, 24)
        draw.text((2, picture.height + 2), str(start_name), fill='white', font=font)
        draw.text((frame.width - 2, picture.height + 2), str(end_name), fill='white', font=font,
                  anchor='ra')
        slider_end = round(index / (len(images) - 1) * (frame.width - 1))
        draw.rectangle((0, frame.height - 5, slider_end, frame.height - 1), fill='white')
        frames.append(frame)
    save_gif(frames, path, FRAME_MS)


def save_progress_gif(run_dir, path):
    """The run's sample grids in step order, each captioned with its step."""
    steps = sorted(int(match[1]) for file in run_dir.iterdir()
                   if (match := re.fullmatch(r'samples_(\d+)\.png', file.name)))
    frames = []
    for step in steps:
        with Image.open(run_dir / f'samples_{step}.png') as grid:
            picture = grid.resize((grid.width * PROGRESS_SCALE, grid.height * PROGRESS_SCALE),
                                  Image.Resampling.NEAREST)
        frame, draw = with_strip(picture, 20)
        draw.text((frame.width / 2, picture.height + 10), f'step {step}', fill='white',
                  font=ImageFont.load_default(size=12), anchor='mm')
        frames.append(frame)
    save_gif(frames, path, PROGRESS_FRAME_MS)


def to_pixels(images):
    """Generator images in [-1, 1] (n, H, W, C) as uint8 pictures (n, H, W) or (n, H, W, 3)."""
    pixels = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def enlarged(pixels, scale):
    picture = Image.fromarray(pixels)
    return picture.resize((picture.width * scale, picture.height * scale),
                          Image.Resampling.NEAREST)


def with_strip(picture, height):
    """A new black canvas with `picture` at the top and `height` free pixels under it."""
    canvas = Image.new(picture.mode, (picture.width, picture.height + height))
    canvas.paste(picture, (0, 0))
    return canvas, ImageDraw.Draw(canvas)


def save_gif(frames, path, frame_ms):
    """An endlessly looping GIF. Pillow merges identical neighbours, so frames must differ."""
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)


# ----------------------------------------------------------------- generating

def generate_main(argv=None):
    """`python cgan.py generate MODEL.pkl ...`: a PNG grid of new images from a pickled CGan."""
    parser = generate_parser()
    options = parser.parse_args(argv)
    output = Path(options.output)
    if not output.parent.is_dir():
        parser.error(f'-o {output}: no folder {output.parent}')
    from condgan import gan as cgan  # TensorFlow: only once the arguments are known to be good
    try:
        with open(options.model, 'rb') as f:
            gan = pickle.load(f)
    except FileNotFoundError:
        parser.error(f'no model file {options.model}')
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
        parser.error(f'{options.model} is not a readable pickled CGan ({error})')
    if not isinstance(gan, cgan.CGan):
        parser.error(f'{options.model} holds a {type(gan).__name__}, not a pickled CGan')
    try:
        images = gan.generate_new(options.target_class, options.rows, options.cols, plot=False,
                                  seed=options.seed)
    except (ValueError, FileNotFoundError) as error:  # an unknown class, an untrained model
        parser.error(str(error))
    Image.fromarray(gan.images_grid(images, options.cols)).save(output, format='PNG')
    written = [str(output)]
    if options.npy:
        np.save(output.with_suffix('.npy'), images)
        written.append(str(output.with_suffix('.npy')))
    print(f'{len(images)} images: {", ".join(written)}')


def generate_parser():
    parser = OneLineErrorParser(prog='cgan.py', description='Use a trained CGan.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='generate')
    generate = commands.add_parser(
        'generate', help='draw new images with a pickled CGan',
        description='Draw rows x cols new images with a pickled CGan (such as '
                    'runs/mnist/mnist.pkl, written by run_mnist.py) into a PNG grid. A pickle '
                    'can run code when loaded: load only your own.')
    generate.add_argument('model', help='the pickled CGan')
    generate.add_argument('--target-class', type=int, default=-1,
                          help='the class to draw, such as 8; -1 (default) draws one class per '
                               'row, in class order')
    generate.add_argument('--rows', type=positive_int, default=5, help='grid rows (default: 5)')
    generate.add_argument('--cols', type=positive_int, default=5, help='grid columns (default: 5)')
    generate.add_argument('-o', '--output', default='generated.png',
                          help='the PNG grid to write (default: generated.png)')
    generate.add_argument('--npy', action='store_true',
                          help='also write the images as a float32 array (rows*cols, H, W, C) in '
                               '[-1, 1]: the output path with the suffix .npy')
    generate.add_argument('--seed', type=int, help='fixes z, so the same images come again')
    return parser
