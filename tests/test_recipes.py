"""The recipe commands (run_mnist.py, run_zalando.py, run_emnist.py) and `cgan.py generate`,
run as real commands on a few steps of the real data (CGAN_DATA_DIR, else the download
cache), what a run leaves behind, and every error path: exit code 2, one line, nothing
touched."""
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from condgan import commands, datasets, pictures, recipes
from condgan.gan import CGan

REPO = Path(__file__).resolve().parents[1]
SIDE = 28  # every dataset's images are 28x28
FAST_RUN = ['--batch-size', '8', '--seed', '0']
# TensorFlow's C++ logging writes these to stderr at import, whatever TF_CPP_MIN_LOG_LEVEL says.
TF_LOG_LINE = re.compile(r'WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:\d\d')


def data_dir_flag(dataset):
    """--data-dir <CGAN_DATA_DIR>/<dataset>, to exercise the flag; without CGAN_DATA_DIR the
    commands use the download cache."""
    root = os.environ.get('CGAN_DATA_DIR')
    return ['--data-dir', str(Path(root) / dataset)] if root else []


def command(script, *arguments, cwd):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})


def own_stderr_lines(stderr):
    return [line for line in stderr.splitlines() if line and not TF_LOG_LINE.match(line)]


def train(name, out_dir, *arguments):
    result = command(f'run_{name}.py', '--out-dir', out_dir, *FAST_RUN,
                     *data_dir_flag(recipes.RECIPES[name].dataset), *arguments, cwd=out_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(out_dir) / name


def image_size(path):
    with Image.open(path) as image:
        return image.size


def gif_frames(path):
    with Image.open(path) as image:
        return image.n_frames, image.size


def folder_state(folder):
    """Every file under folder with its size and modification time, but the run folders'
    locks, which each command that checks a run takes (and writes its process id into)."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(Path(folder).rglob('*')) if path.name != '.lock'}


@pytest.fixture(scope='module')
def mnist_run(tmp_path_factory):
    """One real run_mnist.py: 3 steps, checkpoints and sample grids at steps 2 and 3."""
    return train('mnist', tmp_path_factory.mktemp('out'), '--max-steps', '3', '--save-every', '2')


# ------------------------------------------------------------------ what a run leaves

def test_mnist_run_leaves_every_output(mnist_run):
    files = {path.name for path in mnist_run.iterdir()}
    assert {'checkpoint', 'mnist.pkl', 'losses.csv', 'losses.png', 'samples_2.png',
            'samples_3.png', 'classes.png', 'progress.gif', 'interpolation.gif', 'run.json'} <= files
    losses = np.loadtxt(mnist_run / 'losses.csv', delimiter=',', skiprows=1)
    assert losses[:, 0].tolist() == [1, 2, 3] and np.all(np.isfinite(losses))
    image_size(mnist_run / 'losses.png')
    # Sample grids: 5 columns, one class per row, the first 10 classes.
    assert image_size(mnist_run / 'samples_3.png') == (5 * SIDE, 10 * SIDE)
    assert image_size(mnist_run / 'classes.png') == (pictures.LABEL_WIDTH + pictures.CLASS_COLUMNS * SIDE,
                                                     10 * SIDE)
    frames, (width, _) = gif_frames(mnist_run / 'progress.gif')
    assert frames == 2 and width == 5 * SIDE * pictures.PROGRESS_SCALE
    frames, (width, _) = gif_frames(mnist_run / 'interpolation.gif')
    assert frames == pictures.INTERPOLATION_STEPS == 50
    assert width == SIDE * pictures.INTERPOLATION_SCALE


def test_run_json_records_the_run(mnist_run):
    record = json.loads((mnist_run / 'run.json').read_text())
    assert record['recipe'] == 'mnist' and record['dataset'] == 'mnist'
    assert record['steps'] == 3 and record['seed'] == 0
    [session] = record['sessions']
    arguments = session['arguments']
    assert (arguments['epochs'], arguments['z_dim'], arguments['learning_rate'], arguments['beta1'],
            arguments['variant']) == (16, 96, 0.0002, 0.35, 'book')  # the book's, untouched by the flags
    assert (arguments['max_steps'], arguments['batch_size'], arguments['seed'], arguments['resume']) == \
        (3, 8, 0, False)
    assert session['versions']['tensorflow'] == tf.__version__
    assert record['data']['classes'] == list(range(10))
    assert record['data']['class_names'] == list(datasets.MNIST_LABELS)
    checksums = record['data']['sha256']
    assert sorted(Path(path).name for path in checksums) == ['train-images-idx3-ubyte.gz',
                                                             'train-labels-idx1-ubyte.gz']
    for path, digest in checksums.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    assert session['reached_step'] == 3 and session['seconds'] > 0


def test_the_pickle_generates(mnist_run):
    with open(mnist_run / 'mnist.pkl', 'rb') as f:
        gan = pickle.load(f)
    images = gan.generate_new(target_class=8, rows=10, cols=10, plot=False)
    assert images.shape == (100, SIDE, SIDE, 1) and np.abs(images).max() <= 1


EMNIST_NAMES = tuple('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt')


@pytest.mark.parametrize('name, class_names, variant', [
    ('zalando', datasets.FASHION_LABELS, 'book'),
    ('emnist', EMNIST_NAMES, 'book'),
    ('zalando', datasets.FASHION_LABELS, 'modern'),
    ('emnist', EMNIST_NAMES, 'modern'),
])
def test_fashion_and_emnist_recipes(name, class_names, variant, tmp_path):
    run_dir = train(name, tmp_path, '--max-steps', '1', '--save-every', '1', '--variant', variant)
    record = json.loads((run_dir / 'run.json').read_text())
    assert record['recipe'] == name and record['steps'] == 1
    assert json.loads((run_dir / 'config.json').read_text())['model']['variant'] == variant
    assert record['sessions'][0]['arguments']['epochs'] == recipes.RECIPES[name].epochs
    assert tuple(record['data']['class_names']) == class_names
    assert image_size(run_dir / 'classes.png') == (pictures.LABEL_WIDTH + pictures.CLASS_COLUMNS * SIDE,
                                                   len(class_names) * SIDE)
    assert gif_frames(run_dir / 'progress.gif')[0] == 1
    assert gif_frames(run_dir / 'interpolation.gif')[0] == 50
    with open(run_dir / f'{name}.pkl', 'rb') as f:
        gan = pickle.load(f)
    assert gan.classes == list(range(len(class_names))) and gan.variant == variant


def test_the_modern_variant_is_the_runs_own(tmp_path):
    """Opt-in with --variant modern: its optimiser defaults, recorded in config.json, kept by the
    pickle, the checkpoint and --resume (which may leave the flag out, not contradict it)."""
    run_dir = train('mnist', tmp_path, '--max-steps', '2', '--save-every', '2', '--variant', 'modern')
    record = json.loads((run_dir / 'config.json').read_text())
    assert record['model']['variant'] == 'modern'
    assert {name: record['training'][name] for name in ('learning_rate', 'beta1')} == \
        recipes.VARIANT_DEFAULTS['modern']
    assert CGan.from_checkpoint(str(run_dir)).variant == 'modern'
    with open(run_dir / 'mnist.pkl', 'rb') as f:
        eights = pickle.load(f).generate_new(target_class=8, rows=2, cols=2, plot=False)
    assert eights.shape == (4, SIDE, SIDE, 1)

    train('mnist', tmp_path, '--resume', '--max-steps', '3', '--save-every', '1')
    record = json.loads((run_dir / 'run.json').read_text())
    assert record['steps'] == 3 and record['sessions'][-1]['arguments']['variant'] == 'modern'
    before = folder_state(run_dir)
    result = command('run_mnist.py', '--out-dir', tmp_path, *FAST_RUN, *data_dir_flag('mnist'),
                     '--resume', '--max-steps', '4', '--variant', 'book', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "variant 'modern' -> 'book'" in own_stderr_lines(result.stderr)[-1]
    assert folder_state(run_dir) == before


def test_resume_continues_the_run(mnist_run, tmp_path):
    shutil.copytree(mnist_run, tmp_path / 'mnist')
    commands.train_recipe('mnist', ['--out-dir', str(tmp_path), '--resume', '--max-steps', '4',
                           '--save-every', '2', *FAST_RUN, *data_dir_flag('mnist')])
    record = json.loads((tmp_path / 'mnist' / 'run.json').read_text())
    assert record['steps'] == 4 and record['sessions'][-1]['arguments']['resume']
    losses = np.loadtxt(tmp_path / 'mnist' / 'losses.csv', delimiter=',', skiprows=1)
    assert losses[:, 0].tolist() == [1, 2, 3, 4]
    assert gif_frames(tmp_path / 'mnist' / 'progress.gif')[0] == 3  # steps 2, 3 and 4


# ------------------------------------------------------------------ generate

def test_generate_writes_a_png_grid_and_the_array(mnist_run, tmp_path):
    result = command('cgan.py', 'generate', mnist_run / 'mnist.pkl', '--target-class', 8,
                     '--rows', 2, '--cols', 3, '-o', 'eights.png', '--npy', '--seed', 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert image_size(tmp_path / 'eights.png') == (3 * SIDE, 2 * SIDE)
    images = np.load(tmp_path / 'eights.npy')
    assert images.shape == (6, SIDE, SIDE, 1) and np.abs(images).max() <= 1


def test_generate_all_classes(mnist_run, tmp_path):
    output = tmp_path / 'all.png'
    commands.main(['generate', str(mnist_run / 'mnist.pkl'), '--target-class', '-1',
                           '--rows', '10', '--cols', '4', '-o', str(output)])
    assert image_size(output) == (4 * SIDE, 10 * SIDE)
    assert not (tmp_path / 'all.npy').exists()


# ------------------------------------------------------------------ errors: exit 2, one line, nothing touched

@pytest.mark.parametrize('arguments, fragment', [
    (['--batch-size', '0'], 'argument --batch-size: must be at least 1, got 0'),
    (['--epochs', 'many'], "argument --epochs: expected a whole number, got 'many'"),
    (['--learning-rate', 'nan'], "argument --learning-rate: expected a finite number, got 'nan'"),
    (['--beta1', '1'], r'argument --beta1: must lie in \[0, 1\), got 1.0'),
    (['--bogus'], 'unrecognized arguments: --bogus'),
    (['--data-dir', '{out}/nope'], 'argument --data-dir: no folder .*/nope'),
    (['--out-dir', '{out}/mnist/run.json'], 'argument --out-dir: .*run.json is a file, not a folder'),
])
def test_a_bad_flag_is_one_line_and_exit_2(mnist_run, arguments, fragment):
    out_dir = mnist_run.parent
    before = folder_state(out_dir)
    arguments = [argument.format(out=out_dir) for argument in arguments]
    result = command('run_mnist.py', '--out-dir', out_dir, *arguments, cwd=out_dir)
    assert result.returncode == 2
    assert len(own_stderr_lines(result.stderr)) == 1
    assert re.match(f'run_mnist.py: error: {fragment}', result.stderr)
    assert folder_state(out_dir) == before


def run_refused(capsys, call, fragment):
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.search(fragment, lines[0]), lines


def test_an_existing_run_is_not_overwritten(mnist_run, capsys):
    before = folder_state(mnist_run)
    run_refused(capsys, lambda: commands.train_recipe('mnist', ['--out-dir', str(mnist_run.parent), *FAST_RUN,
                                                       *data_dir_flag('mnist')]),
                r'already holds a training run \(config.json, mnist-2.index, mnist-3.index\): continue it with --resume')
    assert folder_state(mnist_run) == before


def test_another_recipes_run_is_refused(mnist_run, tmp_path, capsys):
    shutil.copytree(mnist_run, tmp_path / 'zalando')
    before = folder_state(tmp_path)
    run_refused(capsys, lambda: commands.train_recipe('zalando', ['--out-dir', str(tmp_path), '--resume']),
                "holds a run of the 'mnist' recipe, not 'zalando'")
    assert folder_state(tmp_path) == before
    (tmp_path / 'zalando' / 'run.json').write_text('[]')
    run_refused(capsys, lambda: commands.train_recipe('zalando', ['--out-dir', str(tmp_path), '--resume']),
                r'run.json is not a run record \(expected a JSON object\)')


def test_a_config_json_whose_sections_are_not_objects_is_refused_naming_it(mnist_run, tmp_path, capsys):
    """A hand-edited config.json: a one-line refusal, not a traceback, and nothing changes."""
    run = shutil.copytree(mnist_run, tmp_path / 'mnist')
    record = json.loads((run / 'config.json').read_text())
    for section in ('training', 'model'):
        (run / 'config.json').write_text(json.dumps({**record, section: [1]}))
        before = folder_state(tmp_path)
        run_refused(capsys, lambda: commands.train_recipe('mnist', ['--out-dir', str(tmp_path), '--resume',
                                                           *FAST_RUN, *data_dir_flag('mnist')]),
                    rf"config.json: its {section!r} is not an object")
        assert folder_state(tmp_path) == before
    run_refused(capsys, lambda: commands.main(['generate', str(run), '-o', str(tmp_path / 'x.png')]),
                r"config.json: its 'model' is not an object")
    assert folder_state(tmp_path) == before


def test_resuming_another_model_is_refused(mnist_run, tmp_path, capsys):
    """Without run.json to tell, the checkpoint's shapes do: MNIST's 10 classes, not 47."""
    shutil.copytree(mnist_run, tmp_path / 'emnist')
    (tmp_path / 'emnist' / 'run.json').unlink()
    before = folder_state(tmp_path)
    run_refused(capsys, lambda: commands.train_recipe('emnist', ['--out-dir', str(tmp_path), '--resume',
                                                        *FAST_RUN, *data_dir_flag('emnist')]),
                'was trained with other settings; resuming must keep them: classes')
    assert folder_state(tmp_path) == before


def test_resume_of_a_pickle_without_a_checkpoint_is_refused(mnist_run, tmp_path, capsys):
    """A folder without a checkpoint starts afresh (tests/test_dead_ends.py), but not over a
    trained model that the new run's pickle would replace."""
    (tmp_path / 'mnist').mkdir()
    shutil.copy(mnist_run / 'mnist.pkl', tmp_path / 'mnist')
    before = folder_state(tmp_path / 'mnist')
    run_refused(capsys, lambda: commands.train_recipe('mnist', ['--out-dir', str(tmp_path), '--resume',
                                                       *data_dir_flag('mnist')]),
                'mnist holds mnist.pkl but no checkpoint to resume')
    assert folder_state(tmp_path / 'mnist') == before


def test_missing_data_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('CGAN_DATA_DIR', str(tmp_path))
    run_refused(capsys, lambda: commands.train_recipe('mnist', ['--out-dir', str(tmp_path / 'out')]),
                'train-images-idx3-ubyte.gz is missing')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('arguments, fragment', [
    (['{tmp}/nope.pkl'], 'no model .*nope.pkl: expected a pickled CGan or a run folder'),
    (['{run}/run.json'], 'run.json is not a readable pickled CGan'),
    (['{run}/mnist.pkl', '--target-class', '10'], r"unknown class '10'; this model knows 0, 1,"),
    (['{run}/mnist.pkl', '--rows', '0'], 'argument --rows: must be at least 1'),
    (['{run}/mnist.pkl', '-o', '{tmp}/nowhere/x.png'], '-o .*x.png: no folder'),
])
def test_generate_errors_are_one_line(mnist_run, tmp_path, capsys, arguments, fragment):
    arguments = [argument.format(run=mnist_run, tmp=tmp_path) for argument in arguments]
    # A later -o (the last case's) wins over this first one.
    run_refused(capsys, lambda: commands.main(['generate', '-o', str(tmp_path / 'x.png'), *arguments]),
                fragment)
    assert not list(tmp_path.rglob('*.png'))
