"""The generators that ship trained: their files, the export format's round trip, and every
command's --pretrained. Generation runs with no data and no network; the test itself reads
the real MNIST (CGAN_DATA_DIR) only to check that the eights drawn look like eights."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from condgan import commands, evaluate, pretrained
from condgan.datasets import load_mnist
from condgan.gan import CGan
from condgan.model import ModelConfig
from condgan.pictures import from_pixels
from tiny_gan import tiny_mnist_gan

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 5_000_000
SHIPPED = ['mnist', 'fashion']


def offline_environment(home):
    """This interpreter's environment without the data folder, with an empty home and cache
    and no way out: a fresh install on a machine with no network."""
    environment = {name: value for name, value in os.environ.items() if name != 'CGAN_DATA_DIR'}
    unreachable = 'http://127.0.0.1:9'  # the discard port: nothing listens
    return {**environment, 'HOME': str(home), 'XDG_CACHE_HOME': str(home / 'cache'),
            'HTTP_PROXY': unreachable, 'HTTPS_PROXY': unreachable, 'TF_CPP_MIN_LOG_LEVEL': '3'}


def cgan(arguments, cwd, env=None):
    return subprocess.run([sys.executable, str(REPO / 'cgan.py'), *map(str, arguments)], cwd=cwd,
                          env=env or {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'},
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ the shipped files

@pytest.mark.parametrize('name', SHIPPED)
def test_a_shipped_generator_is_small_and_says_how_it_was_made(name):
    assert name in pretrained.names()
    assert (pretrained.FOLDER / f'{name}.npz').stat().st_size <= MAX_BYTES
    record = pretrained.describe(name)
    assert record['model']['variant'] == 'modern' and record['steps'] >= 1000
    assert isinstance(record['seed'], int) and record['command'].startswith('python run_')
    assert all(len(digest) == 64 for digest in record['data']['sha256'].values())
    assert len(record['data']['sha256']) == 2  # the training images and labels
    figures = record['evaluation']
    assert len(figures['per_class']) == len(record['class_names']) == 10
    assert figures['conditional_accuracy'] > 0.8  # judged by evaluate's classifier; chance is 0.1
    with np.load(pretrained.FOLDER / f'{name}.npz', allow_pickle=False) as stored:
        assert {stored[key].dtype for key in stored.files} == {np.dtype(np.float16)}


def test_the_shipped_mnist_generator_draws_eights_offline(tmp_path):
    result = cgan(['generate', '--pretrained', 'mnist', '--target-class', '8', '--rows', '4',
                   '--cols', '5', '--seed', '0', '--npy', '-o', 'eights.png'],
                  tmp_path, offline_environment(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == '20 images: eights.png, eights.npy'
    eights = np.load(tmp_path / 'eights.npy')
    assert eights.shape == (20, 28, 28, 1)
    # Each image's nearest class mean of the real training digits (a plain classifier that
    # is right about 4 times in 5 on real digits) is an 8 for most of them.
    images, labels = load_mnist('train')
    means = np.stack([from_pixels(images[labels == digit]).mean(axis=0) for digit in range(10)])
    distances = ((eights[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert np.mean(distances.argmin(axis=1) == 8) >= 0.7


def test_the_python_api_loads_a_shipped_generator_by_name():
    gan = CGan.pretrained('fashion')
    assert gan.class_names[9] == 'Ankle boot' and gan.generator_name == 'zalando'
    first, again = (gan.generate_new('Ankle boot', rows=2, cols=3, plot=False, seed=5) for _ in range(2))
    assert first.shape == (6, 28, 28, 1) and np.array_equal(first, again)
    assert -1 <= first.min() and first.max() <= 1


# ------------------------------------------------------------------ the format

@pytest.fixture
def own_folder(tmp_path, monkeypatch):
    """pretrained.FOLDER in a temporary folder: the package's own files stay as they are."""
    monkeypatch.setattr(pretrained, 'FOLDER', tmp_path / 'generators')
    return pretrained.FOLDER


def test_a_generator_written_and_read_back_draws_the_same_images_within_float16(own_folder, tmp_path):
    gan = tiny_mnist_gan(tmp_path / 'runs')
    pretrained.write(gan, 'tiny', {'seed': 1, 'steps': 1})
    assert pretrained.names() == ['tiny']
    record = json.loads((own_folder / 'tiny.json').read_text())
    assert ModelConfig(**record['model']) == gan.config and record['steps'] == 1
    back = CGan.pretrained('tiny')
    assert back.config == gan.config and back.class_names == gan.class_names
    assert back.generator_weights.keys() == gan.generator_weights.keys()
    drawn, drawn_back = (model.generate_new(-1, rows=10, cols=4, plot=False, seed=2) for model in (gan, back))
    # float16 keeps 11 significant bits: the images move by far less than a pixel's step (1/127.5).
    assert 0 < np.abs(drawn - drawn_back).max() < 0.5 / 127.5


def test_an_unreadable_generator_is_a_clear_error(own_folder, tmp_path):
    pretrained.write(tiny_mnist_gan(tmp_path / 'runs'), 'broken', {})
    (own_folder / 'broken.npz').write_bytes(b'not a zip file')
    with pytest.raises(ValueError, match=r'broken\.npz is not a readable pretrained generator'):
        CGan.pretrained('broken')
    (own_folder / 'broken.json').write_text('{"format": 99}')
    with pytest.raises(ValueError, match=r'broken\.json is not a pretrained generator record of format 1'):
        pretrained.describe('broken')


# ------------------------------------------------------------------ the commands

@pytest.mark.parametrize('arguments, message', [
    (['generate', '--pretrained', 'nope'], "no pretrained generator 'nope'; cgan ships fashion, mnist"),
    (['export', '--pretrained', 'nope', 'out'], "no pretrained generator 'nope'"),
    (['generate', 'runs/mnist', '--pretrained', 'mnist'], 'MODEL (a pickle or a run folder) or --pretrained NAME'),
    (['generate'], 'name the model to use'),
])
def test_a_bad_pretrained_name_is_one_line(arguments, message, tmp_path):
    result = cgan(arguments, tmp_path)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr.count('\n') == 1 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_and_synthesize_take_a_pretrained_generator(tmp_path, capsys):
    commands.main(['export', '--pretrained', 'mnist', str(tmp_path / 'saved')])
    assert (tmp_path / 'saved' / 'saved_model.pb').exists()
    commands.main(['synthesize', '--pretrained', 'mnist', '--per-class', '2', '-o', str(tmp_path / 'synth')])
    record = json.loads((tmp_path / 'synth' / 'synthesis.json').read_text())
    assert record['model'] == 'pretrained:mnist' and record['images'] == 20
    assert 'SavedModel' in capsys.readouterr().out


def test_evaluate_takes_a_pretrained_generator(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    monkeypatch.setitem(evaluate.TRAIN_STEPS, 'mnist', 20)  # a quick classifier: the wiring, not the figures
    commands.main(['evaluate', '--pretrained', 'mnist', '--per-class', '3', '--seed', '0', '--json'])
    figures = json.loads(capsys.readouterr().out)
    assert figures['dataset'] == 'mnist' and figures['images_per_class'] == 3


def test_a_normal_install_ships_the_generators(tmp_path):
    """A wheel (what `pip install .` installs) holds them, not only an editable install."""
    source = tmp_path / 'source'
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns('.git', 'runs', '__pycache__', '*.egg-info', 'build'))
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                             '--no-build-isolation', '-w', str(tmp_path / 'wheel'), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [wheel] = (tmp_path / 'wheel').glob('cgan-*.whl')
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith('condgan/generators/')}
    assert shipped == {f'condgan/generators/{name}{suffix}' for name in SHIPPED for suffix in ('.npz', '.json')}
