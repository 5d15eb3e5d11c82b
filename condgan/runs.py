"""A run folder as a unit that no command can damage: its lock, its files, its record.

No TensorFlow here: the commands check a folder before they load it.
"""
import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from condgan.files import write_atomically
from condgan.recipes import MAX_Z_DIM, VARIANT_DEFAULTS

CONFIG_FILE = 'config.json'  # the model and training settings, written before the first step
LOCK_FILE = '.lock'


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: locked, taken, or inconsistent."""


def run_files(folder):
    """The files in `folder` that belong to a trained model: checkpoints, pickles, its config."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir()
                  if path.name.endswith(('.index', '.pkl')) or path.name == CONFIG_FILE)


class RunLock:
    """An exclusive lock on a run folder, held while a process trains or writes into it.

    It is an flock on the folder itself (a file descriptor of the directory), not on a file
    in it: a lock file can be deleted or replaced while its holder runs, and a second
    trainer would then lock the new file and start beside the first. The directory cannot
    be swapped under a process that holds it open: every process that opens the folder's
    path gets the same inode, so one folder has one trainer. The operating system releases
    the lock when the holder exits, however it exits (kill -9 included), so a crash never
    leaves a folder locked. `.lock` only tells who holds it, for the refusal's message.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.created = None  # the outermost folder that taking the lock made, if any
        self.descriptor = None

    def __enter__(self):
        missing = [path for path in [self.folder, *self.folder.parents] if not path.exists()]
        self.created = missing[-1] if missing else None
        make_folder(self.folder)
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                holder = self.holder()
                raise RunFolderError(f"{self.folder} is in use by {holder}: wait for it to end, "
                                     f"or choose another folder") from None
            raise
        self.descriptor = descriptor
        (self.folder / LOCK_FILE).write_text(f'process {os.getpid()}\n')
        return self

    def holder(self):
        try:
            return (self.folder / LOCK_FILE).read_text().strip() or 'another process'
        except OSError:
            return 'another process'

    def __exit__(self, *exc):
        os.close(self.descriptor)  # closing the descriptor releases the lock
        self.descriptor = None


def make_folder(folder):
    """mkdir -p, and an OSError that says the folder could not be created (an OSError's own
    message names only the path, as though it were missing: "/proc/x: No such file")."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise type(error)(error.errno, f'could not create the folder {folder} ({error.strerror})') from None


def fresh_seed():
    """A seed for a run that was given none; it is recorded, so a resume repeats it."""
    return int(np.random.SeedSequence().entropy % 2**31)


def saved_model_settings(folder):
    """The model configuration that the run in `folder` recorded ({} if none)."""
    return saved_section(folder, 'model')


def saved_section(folder, section):
    """One section of the run's config.json ({} if none); a RunFolderError naming the file if
    it is not an object (a hand-edited record)."""
    settings = saved_record(folder).get(section, {})
    if not isinstance(settings, dict):
        raise RunFolderError(f"{Path(folder) / CONFIG_FILE}: its {section!r} is not an object")
    return settings


def saved_record(folder):
    """The run's config.json ({} if none), every setting it records checked: a hand-edited
    value is a RunFolderError naming the file, the key, the value and what was expected."""
    path = Path(folder) / CONFIG_FILE
    record = read_json(path) if path.exists() else {}
    for section, expectations in RECORDED_SETTINGS.items():
        settings = record.get(section, {})
        for key, (expected, fits) in expectations.items():
            if isinstance(settings, dict) and key in settings and not fits(settings[key]):
                raise RunFolderError(f"{path}: {section}.{key} is {json.dumps(settings[key])}; "
                                     f"expected {expected}")
    model, names = record.get('model'), record.get('class_names')
    classes = model.get('classes') if isinstance(model, dict) else None
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                                  and (classes is None or len(names) == len(classes))):
        raise RunFolderError(f"{path}: class_names is {json.dumps(names)}; expected a list of "
                             f"{'' if classes is None else len(classes)} names, one per class")
    return record


def whole(value, low=0, high=None):
    """A JSON whole number (not true or false) from `low` to `high`."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def number(value, low=-math.inf, high=math.inf):
    """A finite JSON number (not true or false) in [low, high)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and low <= value < high)


def image_shape(value):
    return (isinstance(value, list) and len(value) == 3 and all(whole(n, 1) for n in value)
            and value[0] % 4 == 0 and value[1] % 4 == 0 and value[2] in (1, 3))


# What config.json's `model` and `training` sections hold: (what is expected, its check).
RECORDED_SETTINGS = {
    'model': {
        'image_shape': ('[height, width, channels]: sides multiples of 4, 1 or 3 channels', image_shape),
        'classes': ('a list of distinct whole numbers', lambda value: isinstance(value, list)
                    and all(whole(n, -2**63) for n in value) and len(set(value)) == len(value)),
        'z_dim': (f'a whole number from 1 to {MAX_Z_DIM}', lambda value: whole(value, 1, MAX_Z_DIM)),
        'alpha': ('a number', number),
        'smooth': ('a number in [0, 1)', lambda value: number(value, 0, 1)),
        'variant': ('one of ' + ', '.join(map(json.dumps, VARIANT_DEFAULTS)),
                    lambda value: value in VARIANT_DEFAULTS),
    },
    'training': {
        'epochs': ('a whole number of at least 1', lambda value: whole(value, 1)),
        'batch_size': ('a whole number of at least 1', lambda value: whole(value, 1)),
        'learning_rate': ('a positive number', lambda value: number(value) and value > 0),
        'beta1': ('a number in [0, 1)', lambda value: number(value, 0, 1)),
        'seed': ('null or a whole number from 0 to 2**63 - 1',
                 lambda value: value is None or whole(value, 0, 2**63 - 1)),
        'xla': ('true or false', lambda value: isinstance(value, bool)),
        'max_to_keep': ('a whole number of at least 1', lambda value: whole(value, 1)),
    },
}


def write_json(path, record):
    """A JSON file written whole or not at all."""
    text = json.dumps(record, indent=2) + '\n'
    write_atomically(path, lambda f: f.write(text.encode()))


def read_json(path):
    """A JSON record, or a RunFolderError that names the file and what is wrong with it."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} is not a readable JSON record ({error})") from None
    if not isinstance(record, dict):
        raise RunFolderError(f"{path} is not a run record (expected a JSON object)")
    return record


@contextlib.contextmanager
def removed_unless_checkpointed(lock):
    """On a failure before the first checkpoint, remove what the run wrote into the folder
    of `lock` (a RunLock held), so that it is as it was and the same command can start again."""
    folder = lock.folder
    before = set(os.listdir(folder))
    try:
        yield
    except BaseException:
        if folder.is_dir() and not any(name.endswith('.index') for name in os.listdir(folder)):
            for name in set(os.listdir(folder)) - before - {LOCK_FILE}:
                path = folder / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if lock.created and set(os.listdir(folder)) <= {LOCK_FILE}:
                shutil.rmtree(lock.created)
        raise


def model_source(text):
    """The pickle or run folder that `text` names, checked without TensorFlow: a run folder
    with checkpoints, or the one pickle in a folder without any, or a pickle file."""
    path = Path(text)
    if not path.exists():
        raise RunFolderError(f'no model {path}: expected a pickled CGan or a run folder')
    if path.is_file() and path.stat().st_size == 0:
        raise RunFolderError(f'{path} is empty: expected a pickled CGan')
    if not path.is_dir() or any(path.glob('*.index')):
        return path
    pickles = sorted(path.glob('*.pkl'))
    if len(pickles) != 1:
        found = f'pickles {", ".join(p.name for p in pickles)}' if pickles else 'no pickle'
        raise RunFolderError(f'{path} holds no checkpoint (*.index) and {found}: expected a run '
                             f'folder, or name the pickled CGan to load')
    return pickles[0]
