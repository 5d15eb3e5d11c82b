"""A run folder as a unit that no command can damage: its lock, its files, its record.

No TensorFlow here: the commands check a folder before they load it.
"""
import contextlib
import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from condgan.files import write_atomically

CONFIG_FILE = 'config.json'  # the model and training settings, written before the first step
LOCK_FILE = '.lock'


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: locked, taken, or inconsistent."""


@dataclass(frozen=True)
class TrainingData:
    """What a run trains on: images, their labels and the classes' names. The model takes its
    image shape and classes from it (run_settings.settle); the command line also records in
    run.json where the data came from."""
    images: np.ndarray         # uint8 (N, H, W, C)
    labels: np.ndarray = None  # (N,), or None: an unconditional model
    class_names: tuple = None  # by class value, in order; None: the run's own, else the values
    # What the command line records of a recipe's dataset files or an image folder:
    title: str = None          # for the last line: 'MNIST handwritten digits', a folder
    recipe: str = None         # run.json's 'recipe': a recipe's name, or 'folder'
    dataset: str = None        # run.json's 'dataset'
    record: dict = None        # run.json's 'data': what the run was trained on
    source: dict = None        # CGan.data_source: where an image folder's model came from
    # The resumed run's 'data' -> the 'data' to record, or a refusal if the data changed.
    resumed_record: Callable = lambda recorded: recorded
    keep: Callable = lambda run_dir: None  # writes what a resume reuses (a folder's cache)
    epochs: int = None         # the default of --epochs: the recipe's, or an image folder's

    @property
    def image_shape(self):
        return self.images.shape[1:]

    @property
    def classes(self):
        """The label values, sorted; () for unlabeled images."""
        return () if self.labels is None else tuple(np.unique(self.labels).tolist())


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
