"""Generators that ship trained, in `condgan/generators/`: drawing needs no training and no data.

    gan = CGan.pretrained('mnist')                       # or: python cgan.py generate --pretrained mnist
    eights = gan.generate_new(target_class=8, rows=5, cols=5)

A shipped generator NAME is two files, read with NumPy and JSON only (no pickle, no code runs):
- `NAME.npz`: the generator's weights by checkpoint variable name, in float16 (half the size;
  the images differ from float32's by far less than a pixel step, see tests/test_pretrained.py);
- `NAME.json`: the model's configuration, class names, the recipe and seed it was trained
  with, its steps, the sha256 of the training files, and `cgan.py evaluate`'s figures.
`benchmarks/make_pretrained.py` turns a finished run folder into these two files.

No TensorFlow here: the commands check a name before they load anything.
"""
import json
import zipfile
from pathlib import Path

import numpy as np

from condgan.files import write_atomically
from condgan.runs import write_json

FOLDER = Path(__file__).resolve().parent / 'generators'  # read at each call: tests point it elsewhere
FORMAT = 1        # bump when the files change shape
STORED_DTYPE = np.float16


def names():
    """The shipped generators' names, sorted."""
    return sorted(path.stem for path in FOLDER.glob('*.json') if path.with_suffix('.npz').exists())


def describe(name):
    """The record (NAME.json) of a shipped generator; a ValueError names what is wrong."""
    path = FOLDER / f'{name}.json'
    if name not in names():
        raise ValueError(f"no pretrained generator {name!r}; cgan ships {', '.join(names()) or 'none'}")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable pretrained generator record ({error})") from None
    if not isinstance(record, dict) or record.get('format') != FORMAT:
        raise ValueError(f"{path} is not a pretrained generator record of format {FORMAT}")
    return record


def read_weights(name):
    """The generator weights of a shipped generator, {variable name: float32 array}."""
    path = FOLDER / f'{name}.npz'
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key].astype(np.float32) for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable pretrained generator ({error})") from None


def write(gan, name, record):
    """Write `gan`'s generator as the shipped generator `name`: its weights in float16, and
    `record` (recipe, seed, steps, data, figures) with the model's own facts."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    weights = {key: np.asarray(value).astype(STORED_DTYPE) for key, value in gan.generator_weights.items()}
    write_atomically(FOLDER / f'{name}.npz', lambda f: np.savez_compressed(f, **weights))
    write_json(FOLDER / f'{name}.json', {
        'format': FORMAT, 'name': name, 'generator_name': gan.generator_name,
        'model': gan.config.to_json(), 'class_names': list(gan.class_names), **record})
