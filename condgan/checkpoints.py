"""A model folder's checkpoints: found by their files wherever the folder now lives, read with
a fallback past damaged ones, and pruned to a fixed number.

TensorFlow's `checkpoint` file records absolute paths, so a folder that was moved, copied or
fetched from another machine looked empty to `tf.train.latest_checkpoint`, and checkpoints of
earlier sessions dropped out of it and were never deleted. Here the files themselves are the
record: every `<name>-<step>.index` in the folder is a checkpoint.
"""
import os
import re
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from condgan.weights import AVERAGE_SUFFIX, check_shapes


class CheckpointError(ValueError):
    """No usable checkpoint: none at all, or every one damaged or of another model."""


def checkpoint_prefixes(model_dir):
    """The checkpoints in `model_dir`, newest first: paths without the `.index` suffix.

    Ordered by the step in their names (`mnist-1200`), then by time for names without one
    (the original's code could save without a step).
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    indexes = [path for path in folder.iterdir() if path.name.endswith('.index') and path.is_file()]

    def age(path):
        step = step_in_name(path.name[:-len('.index')])
        return (-1 if step is None else step, path.stat().st_mtime)
    return [str(path)[:-len('.index')] for path in sorted(indexes, key=age, reverse=True)]


def step_in_name(prefix):
    """The step in a checkpoint's name (`mnist-1200`: 1200), or None for a name without one."""
    step = re.search(r'-(\d+)$', os.path.basename(prefix))
    return int(step[1]) if step else None


def first_readable(model_dir, read):
    """`read(prefix)` of the newest checkpoint it succeeds on, and that prefix.

    A damaged checkpoint (truncated or missing data file) is passed over for the one before
    it, and named on stderr when an earlier one serves; `ValueError` (a checkpoint of another
    model) stops at once.
    """
    prefixes = checkpoint_prefixes(model_dir)
    if not prefixes:
        raise CheckpointError(f"{model_dir} holds no checkpoint (no *.index file)")
    damaged = []
    for prefix in prefixes:
        try:
            truncated = truncation(prefix)  # TensorFlow's reader says only "Read less bytes"
            if truncated:
                damaged.append((prefix, truncated))
                continue
            result = read(prefix)
        except (tf.errors.OpError, OSError) as error:
            damaged.append((prefix, damage(prefix, error)))
            continue
        for damaged_prefix, reason in damaged:
            print(f"warning: checkpoint {damaged_prefix} is damaged ({reason}); using "
                  f"{os.path.basename(prefix)}", file=sys.stderr)
        return result, prefix
    raise CheckpointError(f"every checkpoint in {model_dir} is damaged: " + '; '.join(
        f"{os.path.basename(damaged_prefix)}: {reason}" for damaged_prefix, reason in damaged))


def damage(prefix, error):
    """What is wrong with a checkpoint that TensorFlow could not read, in a few words."""
    data_files = list(Path(prefix).parent.glob(Path(prefix).name + '.data-*'))
    if not data_files:
        return 'its .data file is missing'
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def truncation(prefix):
    """'truncated: 40 of 85 MB' if the checkpoint's data files hold fewer bytes than its index
    says its tensors take, else None. (Its numeric tensors are stored back to back.)"""
    data_files = list(Path(prefix).parent.glob(Path(prefix).name + '.data-*'))
    if not data_files:
        return None  # damage() names a missing data file
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    expected = sum(int(np.prod(shape)) * dtypes[name].size
                   for name, shape in reader.get_variable_to_shape_map().items()
                   if dtypes[name] != tf.string)  # of no fixed size; a Saver's hold none
    found = sum(path.stat().st_size for path in data_files)
    if found >= expected:
        return None
    if round(found / 1e6) < round(expected / 1e6):
        return f'truncated: {found / 1e6:.0f} of {expected / 1e6:.0f} MB'
    return f'truncated: {found} of {expected} bytes'


def read_tensors(prefix, names):
    """{name: array} of a checkpoint's tensors, each read whole (so truncation shows here)."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in names}


def stored_shapes(prefix):
    return tf.train.load_checkpoint(prefix).get_variable_to_shape_map()


def read_generator_weights(model_dir, shapes):
    """The generator weights of the newest readable checkpoint in `model_dir`, whether it is
    the original code's kind, and its prefix.

    A weight whose moving average the checkpoint holds (the modern variant's) is read as
    that average, which is what generates. The original saved trainable variables only;
    their moving statistics are then set to 0 and 1 (unused: such a model generates with
    batch statistics, as the original did).
    """
    def read(prefix):
        stored = stored_shapes(prefix)
        sources = {name: name + AVERAGE_SUFFIX if name + AVERAGE_SUFFIX in stored else name
                   for name in shapes if name in stored}
        tensors = read_tensors(prefix, list(sources.values()))
        weights = {name: tensors[source] for name, source in sources.items()}
        missing_moving = [name for name in shapes if name not in stored
                          and name.endswith(('moving_mean', 'moving_variance'))]
        for name in missing_moving:
            weights[name] = (np.zeros if name.endswith('moving_mean') else np.ones)(shapes[name], np.float32)
        check_shapes({name: np.shape(value) for name, value in weights.items()}, shapes,
                     f'the checkpoint {prefix}')
        return weights, bool(missing_moving)

    (weights, legacy), prefix = first_readable(model_dir, read)
    return weights, legacy, prefix


def prune(model_dir, keep):
    """Delete all but the `keep` newest checkpoints, and the half-written files of saves
    that a crash or a full disk interrupted (TensorFlow writes `*.tempstate*`, then renames)."""
    for prefix in checkpoint_prefixes(model_dir)[keep:]:
        for path in Path(prefix).parent.glob(Path(prefix).name + '.*'):
            path.unlink()
    for path in Path(model_dir).glob('*.tempstate*'):
        path.unlink()
