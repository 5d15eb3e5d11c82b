"""Every documented command meets bad input and faults as a user would, in a subprocess:
exit status non-zero, one line on stderr that names the file or value and what was
expected, no traceback, and every file that was there before is as it was.

The runs are tiny and trained on synthetic MNIST-format data holding only the digits 3 and 7,
which also shows that classes are named by their label value (issue 11, items 9 to 11)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from condgan import pictures
from synthetic import random_images, write_idx_pair
from test_recipes import FAST_RUN, REPO, SIDE, command, data_dir_flag, folder_state, image_size, \
    own_stderr_lines

IMAGES = 40  # 5 batches of 8
PROGRESS_BAR = re.compile(r' *\d+%\|.*\| *\d+/\d+ \[')  # tqdm's, as "  0%|   | 0/3 [00:00<?, ?step/s]"


def error_lines(stderr):
    """The command's own lines on stderr, but for the progress bar of a training that had
    started (each of its redraws a line, once its '\r' reads as a newline)."""
    return [line for line in own_stderr_lines(stderr) if not PROGRESS_BAR.match(line)]


def refused(result, status, fragment):
    """`result` exited with `status` and one stderr line matching `fragment`: its only line."""
    lines = error_lines(result.stderr)
    assert result.returncode == status, result.stderr[-3000:]
    assert len(lines) == 1 and re.search(fragment, lines[0]), lines
    assert 'Traceback' not in result.stderr
    return lines[0]


def digits_folder(folder, labels):
    write_idx_pair(folder, random_images(len(labels)), np.asarray(labels, np.uint8))
    return folder


@pytest.fixture(scope='module')
def three_and_seven(tmp_path_factory):
    """An MNIST data folder whose only digits are 3 and 7."""
    return digits_folder(tmp_path_factory.mktemp('digits'), [3, 7] * (IMAGES // 2))


def train_on(data_dir, out_dir, *arguments):
    return command('run_mnist.py', '--data-dir', data_dir, '--out-dir', out_dir, *FAST_RUN, *arguments,
                   cwd=Path(out_dir).parent)


@pytest.fixture(scope='module')
def digits_run(three_and_seven, tmp_path_factory):
    """A real 3-step run_mnist.py on the 3s and 7s: checkpoints at steps 2 and 3."""
    out_dir = tmp_path_factory.mktemp('out')
    result = train_on(three_and_seven, out_dir, '--max-steps', '3', '--save-every', '2')
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / 'mnist'


def label_strip(path):
    with Image.open(path) as picture:
        return np.asarray(picture)[:, :pictures.LABEL_WIDTH]


# ------------------------------------------------------------------ item 9: classes by label value

def test_classes_are_named_by_their_label_value(digits_run, tmp_path):
    record = json.loads((digits_run / 'run.json').read_text())
    assert record['data']['classes'] == [3, 7] and record['data']['class_names'] == ['3', '7']
    assert json.loads((digits_run / 'config.json').read_text())['class_names'] == ['3', '7']
    # classes.png's rows say "3" and "7", not "0" and "1": its label strip is the one drawn for them.
    blank_rows = -np.ones((2 * pictures.CLASS_COLUMNS, SIDE, SIDE, 1))
    for names in (['3', '7'], ['0', '1']):
        pictures.save_classes_png(blank_rows, names, tmp_path / f'{"".join(names)}.png')
    assert np.array_equal(label_strip(digits_run / 'classes.png'), label_strip(tmp_path / '37.png'))
    assert not np.array_equal(label_strip(tmp_path / '37.png'), label_strip(tmp_path / '01.png'))


def test_a_label_outside_the_recipe_is_refused(tmp_path):
    data_dir = digits_folder(tmp_path / 'data', [3, 12] * 4)
    before = folder_state(tmp_path)
    refused(train_on(data_dir, tmp_path / 'out', '--max-steps', '1'), 2,
            r"train-labels-idx1-ubyte.gz holds label 12, which is not one of the mnist recipe's classes 0 to 9")
    assert folder_state(tmp_path) == before


# ------------------------------------------------------------------ generate and export

def test_generate_takes_a_run_folder_and_class_values(digits_run, tmp_path):
    before = folder_state(digits_run)
    result = command('cgan.py', 'generate', digits_run, '--target-class', '7', '--rows', '2', '--cols', '3',
                     '-o', 'sevens.png', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert image_size(tmp_path / 'sevens.png') == (3 * SIDE, 2 * SIDE)
    assert folder_state(digits_run) == before


def test_emnist_classes_by_name(tmp_path):
    result = command('run_emnist.py', '--out-dir', tmp_path, '--max-steps', '1', '--save-every', '1', *FAST_RUN,
                     *data_dir_flag('emnist'), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / 'emnist'
    result = command('cgan.py', 'generate', run_dir / 'emnist.pkl', '--target-class', 'A', '--rows', '1',
                     '-o', 'A.png', '--npy', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / 'A.npy').shape == (5, SIDE, SIDE, 1)
    refused(command('cgan.py', 'generate', run_dir, '--target-class', '?', '-o', 'x.png', cwd=tmp_path), 2,
            r"unknown class '\?'; this model knows 0, 1, .* 9, 10 \(A\), 11 \(B\), .* 36 \(a\), 37 \(b\), "
            r".* 46 \(t\) \(or -1 for all of them\)")
    assert not (tmp_path / 'x.png').exists()


def test_export_takes_a_run_folder_and_says_nothing_more(digits_run, tmp_path):
    result = command('cgan.py', 'export', digits_run, tmp_path / 'digits', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert own_stderr_lines(result.stderr) == []  # no deprecation notices of the TF1 builder
    generator = tf.saved_model.load(str(tmp_path / 'digits'))
    sevens = generator.signatures['generate_class'](class_index=tf.constant(1), count=tf.constant(2))['images']
    assert sevens.shape == (2, SIDE, SIDE, 1)


@pytest.mark.parametrize('arguments, fragment', [
    (['generate', '{run}', '-o', '{tmp}'], '-o .* is a folder: name the PNG file to write'),
    (['generate', '{run}', '-o', '{tmp}/file/x.png'], '-o .*/file/x.png: .*/file is a file, not a folder'),
    (['generate', '{run}', '--seed', '-5'], r'argument --seed: must be from 0 to 2\*\*63 - 1, got -5'),
    (['generate', '{run}', '--rows', '1', '--cols', '100000'],
     '--rows x --cols is 100000 images; at most 10000 are drawn at once'),
    (['generate', '{tmp}/nope.pkl'], 'no model .*nope.pkl: expected a pickled CGan or a run folder'),
    (['generate', '{tmp}/folder'], r'folder holds no checkpoint \(\*.index\) and no pickle: expected a run folder'),
    (['generate', '{tmp}/empty.pkl'], 'empty.pkl is empty: expected a pickled CGan'),
    (['generate', '{tmp}/foreign.pkl'], r"foreign.pkl is not a readable pickled CGan \(ModuleNotFoundError: "
                                        r"No module named 'gone_module'\)"),
    (['export', '{run}', '{tmp}/file'], 'argument folder: .*/file is a file, not a folder'),
    (['export', '{run}', '{tmp}/file/saved'], 'argument folder: .*/file is a file, not a folder'),
])
def test_generate_and_export_refuse_bad_paths(digits_run, tmp_path, arguments, fragment):
    (tmp_path / 'file').write_text('not a folder')
    (tmp_path / 'empty.pkl').touch()
    (tmp_path / 'foreign.pkl').write_bytes(b'cgone_module\nThing\n(tR.')  # gone_module.Thing(), protocol 0
    (tmp_path / 'folder').mkdir()
    before = folder_state(tmp_path), folder_state(digits_run)
    arguments = [argument.format(run=digits_run, tmp=tmp_path) for argument in arguments]
    refused(command('cgan.py', *arguments, cwd=tmp_path), 2, f'cgan.py {arguments[0]}: error: .*{fragment}')
    assert (folder_state(tmp_path), folder_state(digits_run)) == before


# ------------------------------------------------------------------ training: item 10 and 11

@pytest.mark.parametrize('arguments, fragment', [
    (['--seed', '-1'], r'argument --seed: must be from 0 to 2\*\*63 - 1, got -1'),
    (['--z-dim', '1000000000'], 'argument --z-dim: must be at most 4096, got 1000000000'),
    (['--out-dir', '{tmp}/file/runs'], 'argument --out-dir: .*/file is a file, not a folder'),
    (['--out-dir', '{tmp}/taken'], '.*/taken/mnist is a file, not a run folder: choose another --out-dir'),
])
def test_a_bad_training_flag_is_one_line(three_and_seven, tmp_path, arguments, fragment):
    (tmp_path / 'file').write_text('not a folder')
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'mnist').write_text('not a run folder')
    before = folder_state(tmp_path)
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    refused(train_on(three_and_seven, tmp_path, *arguments), 2, f'run_mnist.py: error: {fragment}')
    assert folder_state(tmp_path) == before


def test_divergence_is_one_line_without_python_advice(three_and_seven, tmp_path):
    line = refused(train_on(three_and_seven, tmp_path, '--learning-rate', '1e30', '--max-steps', '3'), 1,
                   r'training diverged at step \d \(D loss .*, G loss .*\); no checkpoint was written '
                   r'before it: start again with a lower learning rate')
    assert 'FloatingPointError' not in line and 'fit(' not in line
    assert list(tmp_path.iterdir()) == []  # the failed first session is cleaned away


def on_a_small_disk(folder, *arguments):
    """`python <arguments>` writing to a real full disk: a 2 MB tmpfs on `folder`, mounted in
    the child's own mount namespace (so it needs no privilege where user namespaces are
    allowed, and vanishes with the child), which holds notes.txt. Its stdout ends with the
    names of what the disk holds after the command, then the text of notes.txt."""
    script = ('mount -t tmpfs -o size=2m tmpfs "$0" && echo kept > "$0/notes.txt" && "$@"; status=$?; '
              'ls -A "$0"; cat "$0/notes.txt"; exit $status')
    folder.mkdir()
    return subprocess.run(['unshare', '--map-root-user', '--mount', 'sh', '-c', script, folder, sys.executable,
                           *arguments], capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})


def test_a_full_disk_is_one_line(three_and_seven, tmp_path):
    """The first checkpoint does not fit: the disk keeps what it held, and only that."""
    disk = tmp_path / 'disk'
    result = on_a_small_disk(disk, REPO / 'run_mnist.py', '--data-dir', three_and_seven, '--out-dir', disk / 'runs',
                             '--max-steps', '1', *FAST_RUN)
    refused(result, 1, r'run_mnist.py: error: out of disk space writing .*/disk/runs/mnist/'
                       r'mnist-1.data-00000-of-00001 \(No space left on device\): free some space')
    assert result.stdout.split() == ['notes.txt', 'kept']


def test_an_export_to_a_full_disk_is_one_line(digits_run, tmp_path):
    """Half a SavedModel is removed (and TensorFlow's deprecation notices are not printed)."""
    disk = tmp_path / 'disk'
    result = on_a_small_disk(disk, REPO / 'cgan.py', 'export', digits_run / 'mnist.pkl', disk / 'models' / 'digits')
    refused(result, 1, r'cgan.py export: error: out of disk space writing .*/disk/models/digits/variables/.* '
                       r'\(No space left on device\)')
    assert result.stdout.split() == ['notes.txt', 'kept']


@pytest.fixture
def copied_run(digits_run, tmp_path):
    shutil.copytree(digits_run, tmp_path / 'mnist')
    return tmp_path / 'mnist'


def resume(three_and_seven, run_dir, *arguments):
    return train_on(three_and_seven, run_dir.parent, '--resume', '--max-steps', '4', *arguments)


def test_a_truncated_loss_history_is_named(three_and_seven, copied_run):
    losses = copied_run / 'losses.csv'
    losses.write_text(''.join(losses.read_text().splitlines(keepends=True)[:2]))  # the header, step 1
    before = folder_state(copied_run.parent)
    refused(resume(three_and_seven, copied_run), 2,
            r'run_mnist.py: error: .*/mnist/losses.csv does not hold the losses of steps 1 to 3')
    assert folder_state(copied_run.parent) == before


def test_a_checkpoint_of_another_model_is_refused(three_and_seven, copied_run):
    """Without config.json to tell, the checkpoint's shapes do (a ValueError was a traceback)."""
    (copied_run / 'config.json').unlink()
    before = folder_state(copied_run.parent)
    refused(resume(three_and_seven, copied_run, '--z-dim', '50'), 2,
            r'run_mnist.py: error: the checkpoint .*/mnist-3 does not fit this model .*: '
            r'expected \(52, ')
    assert folder_state(copied_run.parent) == before
