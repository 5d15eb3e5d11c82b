"""synthesize: generated datasets that the loaders (and any IDX reader) read back, EMNIST upright,
the record, the refusals, atomic writes, and the command line. Data: the real datasets in
CGAN_DATA_DIR; models: a CGan trained for one step, and stand-in generators that draw real
images, whose orientation we know."""
import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from condgan import commands, datasets, synthesize
from condgan.pictures import from_pixels, to_pixels
from tiny_gan import tiny_mnist_gan

ENV = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    """A pickled CGan trained for one step, beside its run folder <out>/mnist/."""
    out = tmp_path_factory.mktemp('run')
    path = out / 'mnist' / 'mnist.pkl'
    path.write_bytes(pickle.dumps(tiny_mnist_gan(out)))
    return path


class RealImages:
    """A stand-in generator with CGan's generation API that draws real images of the asked
    class (in [-1, 1]), so that what comes back from the files can be compared with them."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.classes = np.unique(labels).tolist()
        self.image_shape = images.shape[1:]
        self.step_losses = np.array([[7, 0.5, 0.5]])
        self.largest_call = 0

    def generate_new(self, target_class=-1, rows=5, cols=5, plot=True, seed=None):
        self.largest_call = max(self.largest_call, rows * cols)
        rng = np.random.default_rng(seed)
        return from_pixels(self.images[rng.choice(np.flatnonzero(self.labels == target_class),
                                                         rows * cols)])


def run(*arguments):
    """The command, in this process: TensorFlow loads once for all the tests."""
    commands.main(['synthesize', *map(str, arguments)])


def run_in_subprocess(*arguments):
    return subprocess.run([sys.executable, str(REPO / 'cgan.py'), 'synthesize', *map(str, arguments)],
                          env=ENV, capture_output=True, text=True, timeout=300)


def raw_idx(path):
    """An IDX file read with nothing but gzip and struct, as any other reader would."""
    raw = gzip.decompress(path.read_bytes())
    magic, = struct.unpack('>I', raw[:4])
    dimensions = magic & 0xff
    shape = struct.unpack(f'>{dimensions}I', raw[4:4 + 4 * dimensions])
    assert magic >> 8 == 0x08  # uint8
    return np.frombuffer(raw[4 + 4 * dimensions:], np.uint8).reshape(shape)


# ------------------------------------------------------------------ round trips

def test_a_generated_dataset_reads_back_through_the_mnist_loader(model_path, tmp_path):
    run(model_path, '-o', tmp_path / 'out', '--per-class', 30, '--seed', 5)
    images, labels = datasets.load_mnist('train', data_dir=tmp_path / 'out')
    assert images.shape == (300, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [30] * 10
    assert labels[:30].tolist() != sorted(labels[:30].tolist())  # shuffled, not class by class
    assert len(np.unique(images.reshape(300, -1), axis=0)) == 300
    # Any other IDX reader reads the same.
    assert np.array_equal(raw_idx(tmp_path / 'out' / 'train-images-idx3-ubyte.gz'), images[..., 0])
    assert np.array_equal(raw_idx(tmp_path / 'out' / 'train-labels-idx1-ubyte.gz'), labels)
    record = json.loads((tmp_path / 'out' / 'synthesis.json').read_text())
    assert record['model'] == str(model_path) and record['step'] == 1 and record['seed'] == 5
    assert record['counts'] == {str(digit): 30 for digit in range(10)}
    assert record['dataset'] == 'mnist' and record['images'] == 300


def test_the_same_seed_makes_the_same_dataset_and_the_images_are_the_models(model_path, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(synthesize, 'GENERATE_BATCH', 16)  # several batches
    for folder, seed in (('a', 1), ('b', 1), ('c', 2)):
        run(model_path, '-o', tmp_path / folder, '--mix', '3=4,8=40', '--seed', seed)
    a, b, c = (datasets.load_mnist('train', data_dir=tmp_path / folder) for folder in 'abc')
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert np.bincount(a[1]).tolist() == [0, 0, 0, 4] + [0] * 4 + [40]
    # The pixels are the model's images, rounded: its 3s look like its other 3s, not its 8s.
    with open(model_path, 'rb') as f:
        gan = pickle.load(f)
    threes = to_pixels(gan.generate_new(3, rows=1, cols=50, plot=False, seed=0))
    eights = to_pixels(gan.generate_new(8, rows=1, cols=50, plot=False, seed=0))
    written_three = a[0][a[1] == 3][0].astype(float)
    assert (np.abs(threes.mean(axis=0) - written_three).mean()
            < np.abs(eights.mean(axis=0) - written_three).mean())


def test_emnist_is_written_transposed_as_nist_does_and_reads_upright(tmp_path):
    upright, labels = datasets.load_emnist('test')
    generator = RealImages(upright, labels)
    names = datasets.emnist_label_names()
    record = synthesize.synthesize(generator, tmp_path, {10: 3, 46: 2}, seed=0, dataset='emnist',
                                   class_names=names)
    images, read_labels = datasets.load_emnist('train', data_dir=tmp_path)
    assert sorted(read_labels.tolist()) == [10] * 3 + [46] * 2
    for image, label in zip(images, read_labels):  # each is one of the real upright images
        assert any(np.array_equal(image, real) for real in upright[labels == label])
    stored = raw_idx(tmp_path / 'gzip' / 'emnist-balanced-train-images-idx3-ubyte.gz')
    assert np.array_equal(stored, images[..., 0].transpose(0, 2, 1))  # NIST's layout
    assert datasets.emnist_label_names(data_dir=tmp_path) == names
    assert record['files'][-1] == 'gzip/emnist-balanced-mapping.txt'


def test_a_run_folder_is_a_model_too(model_path, tmp_path):
    run_dir = model_path.parent
    run(run_dir, '-o', tmp_path / 'out', '--per-class', 2)
    assert len(datasets.load_mnist('train', data_dir=tmp_path / 'out')[1]) == 20


# ------------------------------------------------------------------ bounded, atomic, refusals

def test_generation_goes_in_bounded_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(synthesize, 'GENERATE_BATCH', 16)
    generator = RealImages(*datasets.load_mnist('test'))
    synthesize.synthesize(generator, tmp_path, {digit: 20 for digit in range(10)}, seed=0,
                          dataset='mnist')
    assert generator.largest_call <= 16
    assert len(datasets.load_mnist('train', data_dir=tmp_path)[1]) == 200


class FailingGenerator(RealImages):
    def __init__(self, images, labels, calls_before_failing):
        super().__init__(images, labels)
        self.calls_left = calls_before_failing

    def generate_new(self, *arguments, **keywords):
        if self.calls_left == 0:
            raise KeyboardInterrupt
        self.calls_left -= 1
        return super().generate_new(*arguments, **keywords)


def test_an_interrupted_generation_leaves_no_file_that_looks_valid(tmp_path, monkeypatch):
    monkeypatch.setattr(synthesize, 'GENERATE_BATCH', 10)
    generator = FailingGenerator(*datasets.load_mnist('test'), calls_before_failing=5)
    with pytest.raises(KeyboardInterrupt):
        synthesize.synthesize(generator, tmp_path, {0: 50, 1: 50}, seed=0, dataset='mnist')
    assert list(tmp_path.iterdir()) == []


def test_a_replaced_dataset_loses_its_record_until_the_new_one_is_complete(tmp_path, monkeypatch):
    mnist = datasets.load_mnist('test')
    synthesize.synthesize(RealImages(*mnist), tmp_path, {0: 5}, seed=0, dataset='mnist')
    before = (tmp_path / 'train-images-idx3-ubyte.gz').read_bytes()
    with pytest.raises(KeyboardInterrupt):
        synthesize.synthesize(FailingGenerator(*mnist, calls_before_failing=0), tmp_path, {0: 5},
                              seed=1, dataset='mnist', replace=True)
    assert (tmp_path / 'train-images-idx3-ubyte.gz').read_bytes() == before
    assert not (tmp_path / 'synthesis.json').exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']


def test_write_idx_refuses_chunks_that_do_not_fit_the_header(tmp_path):
    path = tmp_path / 'x-idx3-ubyte.gz'
    with pytest.raises(ValueError, match='header says 3 items but 2 came'):
        datasets.write_idx(path, (3, 2, 2), [np.zeros((2, 2, 2), np.uint8)])
    with pytest.raises(ValueError, match=r'expected uint8 arrays of shape \(n, 2, 2\); got float64'):
        datasets.write_idx(path, (1, 2, 2), [np.zeros((1, 2, 2))])
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_holds_a_dataset_is_refused_unless_replaced(model_path, tmp_path):
    out = tmp_path / 'out'
    run(model_path, '-o', out, '--per-class', 2)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    refused = run_in_subprocess(model_path, '-o', out, '--per-class', 3)
    assert refused.returncode != 0
    assert refused.stderr.strip().count('\n') == 0 and 'Traceback' not in refused.stderr
    assert f'{out} already holds a dataset' in refused.stderr and '--replace' in refused.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    run(model_path, '-o', out, '--per-class', 3, '--replace')
    assert len(datasets.load_mnist('train', data_dir=out)[1]) == 30


@pytest.mark.parametrize('arguments, message', [
    (['--mix', '3=5,x'], "--mix: expected CLASS=COUNT pairs such as 3=500,8=2000; got 'x'"),
    (['--mix', '3=0'], "--mix: '3=0': each class once, with a count of at least 1"),
    (['--per-class', '0'], '--per-class: must be at least 1, got 0'),
    (['--seed', '-1'], '--seed: expected a whole number from 0 to 2**63 - 1; got -1'),
    (['--mix', '12=5'], 'unknown class 12: the model knows [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'),
])
def test_bad_arguments_are_one_line_errors(model_path, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit:
        run(model_path, '-o', tmp_path / 'out', *arguments)
    error = capsys.readouterr().err
    assert exit.value.code == 2
    assert message in error and error.strip().count('\n') == 0, error
    assert not (tmp_path / 'out').exists() or list((tmp_path / 'out').iterdir()) == []


def test_a_file_that_is_no_model_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / 'not.pkl').write_bytes(pickle.dumps({'a': 1}))
    (tmp_path / 'garbage.pkl').write_bytes(b'not a pickle')
    (tmp_path / 'cut.pkl').write_bytes(pickle.dumps({'a': 1})[:5])
    for model in (tmp_path / 'not.pkl', tmp_path / 'missing.pkl', tmp_path / 'garbage.pkl',
                  tmp_path / 'cut.pkl'):
        with pytest.raises(SystemExit) as exit:
            run(model, '-o', tmp_path / 'out')
        error = capsys.readouterr().err
        assert exit.value.code == 2 and error.startswith('cgan.py synthesize: error: ')
        assert str(model) in error and error.count('\n') == 1, error
