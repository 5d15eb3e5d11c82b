"""Issue 24's faults, met as a user meets them, in a subprocess: a truncated newest checkpoint
(item 6), a hand-edited config.json (item 7), evaluate on another dataset's model (item 10),
synthesize's record, class names and --mix (item 13), and the messages that misled. Each ends
in one line on stderr that names the file or value, and leaves every file as it was.

The model is a real 3-step run_mnist.py on the real MNIST (CGAN_DATA_DIR), checkpointed at
steps 2 and 3; each test works on its own copy."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from test_commands import refused
from test_recipes import FAST_RUN, REPO, command, data_dir_flag, folder_state


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """A real run_mnist.py of 3 steps: checkpoints mnist-2 and mnist-3, and the pickle."""
    out_dir = tmp_path_factory.mktemp('out')
    result = command('run_mnist.py', '--out-dir', out_dir, *FAST_RUN, *data_dir_flag('mnist'),
                     '--max-steps', '3', '--save-every', '2', cwd=out_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / 'mnist'


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """The run's folder, copied (its pickle left out: the commands then read its checkpoints)."""
    shutil.copytree(trained_run, tmp_path / 'mnist', ignore=shutil.ignore_patterns('mnist.pkl'))
    return tmp_path / 'mnist'


def cache_beside(folder):
    """The per-user cache of the commands run in `folder`: beside it, not in it (matplotlib
    writes there too), and not the user's (no classifier or download of the tests lands there)."""
    return folder.with_name(folder.name + '-cache')


def python(*arguments, cwd, **environment):
    """`python arguments` with this checkout's package, in `cwd`, with its own per-user cache."""
    return subprocess.run([sys.executable, *map(str, arguments)], cwd=cwd, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': str(REPO),
                               'XDG_CACHE_HOME': str(cache_beside(cwd)), **environment})


def cgan(*arguments, cwd, **environment):
    return python(REPO / 'cgan.py', *arguments, cwd=cwd, **environment)


FROM_CHECKPOINT = ('import sys; from condgan.gan import CGan; '
                   'print(CGan.from_checkpoint(sys.argv[1]).generate_new(plot=False).shape)')


# ------------------------------------------------------------------ item 6: a truncated newest checkpoint

@pytest.mark.parametrize('arguments, output', [
    (['generate', '{run}', '-o', '{tmp}/grid.png'], '25 images: .*grid.png'),
    (['export', '{run}', '{tmp}/saved'], 'SavedModel: .*saved'),
    (['synthesize', '{run}', '-o', '{tmp}/made', '--per-class', '2'], '20 images of 10 classes'),
    (['from_checkpoint', '{run}'], r'\(25, 28, 28, 1\)'),
])
def test_a_truncated_newest_checkpoint_gives_way_to_the_one_before(run_copy, tmp_path, arguments, output):
    data_file = run_copy / 'mnist-3.data-00000-of-00001'
    os.truncate(data_file, 40_000_000)
    before = folder_state(run_copy)
    arguments = [argument.format(run=run_copy, tmp=tmp_path) for argument in arguments]
    if arguments[0] == 'from_checkpoint':
        result = python('-c', FROM_CHECKPOINT, run_copy, cwd=tmp_path)
    else:
        result = cgan(*arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(output, result.stdout), result.stdout
    warning = (f'warning: checkpoint {run_copy / "mnist-3"} is damaged (truncated: 40 of 85 MB); '
               f'using mnist-2')
    assert warning in result.stderr.splitlines(), result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert folder_state(run_copy) == before


def test_evaluate_falls_back_past_a_truncated_checkpoint_too(run_copy, tmp_path):
    """It loads the model from mnist-2, then refuses at once to judge MNIST digits as EMNIST's."""
    os.truncate(run_copy / 'mnist-3.data-00000-of-00001', 40_000_000)
    result = cgan('evaluate', run_copy, '--dataset', 'emnist', cwd=tmp_path)
    assert f'warning: checkpoint {run_copy / "mnist-3"} is damaged (truncated: 40 of 85 MB); ' \
           f'using mnist-2' in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('cgan.py evaluate: error: ')]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "the model's classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] are not emnist's" in errors[0]
    assert 'Traceback' not in result.stderr


# ------------------------------------------------------------------ item 10: check first, then train

def test_evaluate_refuses_another_datasets_model_before_training_a_classifier(trained_run, tmp_path):
    """EMNIST's five networks took over 10 minutes to train before this refusal came."""
    before = folder_state(trained_run)
    refused(cgan('evaluate', trained_run, '--dataset', 'emnist', cwd=tmp_path), 2,
            r"cgan.py evaluate: error: the model's classes \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] are not "
            r"emnist's \[0, 1, .*, 46\]")
    assert not list(cache_beside(tmp_path).rglob('cgan-classifier-*'))  # none was trained, nor cached
    assert folder_state(trained_run) == before


# ------------------------------------------------------------------ item 7: a hand-edited config.json

RESUME = ['run_mnist.py', '--resume', '--max-steps', '4', *FAST_RUN]


@pytest.mark.parametrize('section, key, value, expected, arguments', [
    ('model', 'z_dim', 'abc', 'a whole number from 1 to 4096', ['cgan.py', 'generate', '{run}', '-o', 'x.png']),
    ('model', 'z_dim', -5, 'a whole number from 1 to 4096', RESUME),
    ('model', 'variant', 'fancy', "one of 'book', 'modern'", ['cgan.py', 'evaluate', '{run}']),
    ('training', 'seed', 'x', 'None or a whole number from 0 to 9223372036854775807', RESUME),
    ('training', 'learning_rate', 'fast', 'a number of at least 0', RESUME),
    ('model', 'alpha', -0.5, 'a number of at least 0', ['cgan.py', 'generate', '{run}', '-o', 'x.png']),
    ('model', 'image_shape', [28, 28], r'\[height, width, channels\]: sides multiples of 4, 1 or 3 channels',
     ['cgan.py', 'synthesize', '{run}', '-o', 'made']),
    ('model', 'z_dim', -5, 'a whole number from 1 to 4096', ['cgan.py', 'export', '{run}', 'saved']),
    ('model', 'variant', 'fancy', "one of 'book', 'modern'", ['-c', FROM_CHECKPOINT, '{run}']),
], ids=['z_dim abc: generate', 'z_dim -5: resume', 'variant fancy: evaluate', 'seed x: resume',
        'learning_rate fast: resume', 'alpha -0.5: generate', 'image_shape of two: synthesize',
        'z_dim -5: export', 'variant fancy: from_checkpoint'])
def test_a_hand_edited_config_is_one_line_naming_the_key(run_copy, tmp_path, section, key, value, expected,
                                                         arguments):
    config = run_copy / 'config.json'
    record = json.loads(config.read_text())
    record[section][key] = value
    config.write_text(json.dumps(record))
    before = folder_state(tmp_path)
    arguments = [argument.format(run=run_copy) for argument in arguments]
    if arguments[0] == 'run_mnist.py':
        arguments += ['--out-dir', tmp_path, *data_dir_flag('mnist')]
    program = arguments if arguments[0] == '-c' else [REPO / arguments[0], *arguments[1:]]
    result = python(*program, cwd=tmp_path)
    line = f'{config}: {section}.{key} is {json.dumps(value)}; expected {expected}'
    if arguments[0] == '-c':  # the Python API: a ValueError whose message is that line
        assert result.returncode == 1 and 'Traceback' in result.stderr
        assert re.search(f'RunFolderError: {re.escape(line.split("; ")[0])}; expected {expected}$',
                         result.stderr.strip()), result.stderr[-3000:]
    else:
        refused(result, 2, re.escape(line.split('; ')[0]) + f'; expected {expected}$')
    assert folder_state(tmp_path) == before


# ------------------------------------------------------------------ item 13: synthesize

@pytest.fixture(scope='module')
def emnist_run(tmp_path_factory):
    """A real 1-step run_emnist.py: a model of EMNIST Balanced's 47 classes, named 0-9, A-Z, a-t."""
    out_dir = tmp_path_factory.mktemp('emnist')
    result = command('run_emnist.py', '--out-dir', out_dir, *FAST_RUN, *data_dir_flag('emnist'),
                     '--max-steps', '1', '--save-every', '1', cwd=out_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / 'emnist'


def test_synthesize_from_a_run_folder_records_the_checkpoints_step(run_copy, tmp_path):
    result = cgan('synthesize', run_copy, '-o', tmp_path / 'made', '--per-class', 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / 'made' / 'synthesis.json').read_text())['step'] == 3  # was null


def test_synthesize_names_emnist_classes_as_the_model_does_and_downloads_nothing(emnist_run, tmp_path):
    """No --data-dir and no CGAN_DATA_DIR: the mapping file comes from the model's own class
    names, where NIST's 536 MB archive was fetched for them (here from a port that answers
    nothing, so a download fails at once)."""
    from condgan import datasets
    real_names = datasets.emnist_label_names()  # from CGAN_DATA_DIR, in this process only
    result = cgan('synthesize', emnist_run, '-o', tmp_path / 'made', '--mix', 'A=3,7=2,t=1', cwd=tmp_path,
                  CGAN_DATA_DIR='', CGAN_EMNIST_URL='http://127.0.0.1:9/')
    assert result.returncode == 0, result.stderr[-3000:]
    assert datasets.emnist_label_names(data_dir=tmp_path / 'made') == real_names
    _, labels = datasets.load_emnist('train', data_dir=tmp_path / 'made')
    assert sorted(labels.tolist()) == [7, 7, 10, 10, 10, 46]  # A is class 10, t class 46
    record = json.loads((tmp_path / 'made' / 'synthesis.json').read_text())
    assert record['counts'] == {'10': 3, '7': 2, '46': 1} and record['step'] == 1
    assert not list(cache_beside(tmp_path).rglob('gzip*'))
    refused(cgan('synthesize', emnist_run, '-o', tmp_path / 'again', '--mix', 'A=1,10=2', cwd=tmp_path), 2,
            'cgan.py synthesize: error: --mix names class 10 twice$')


@pytest.mark.parametrize('mix, message', [
    ('-3=5', r"argument --mix: '-3=5': class -3 is negative; a class is its value \(0 or more\) or its name"),
    ('A=3', r"unknown class A: the model knows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]$"),
])
def test_a_bad_mix_is_one_line_naming_the_value(run_copy, tmp_path, mix, message):
    before = folder_state(tmp_path)
    refused(cgan('synthesize', run_copy, '-o', tmp_path / 'made', '--mix', mix, cwd=tmp_path), 2,
            f'cgan.py synthesize: error: {message}')
    assert folder_state(tmp_path) == before


# ------------------------------------------------------------------ messages that misled

def test_a_short_emnist_mapping_file_is_named_not_the_labels(tmp_path):
    real = datasets_folder('emnist') / 'gzip'
    data = tmp_path / 'emnist' / 'gzip'
    data.mkdir(parents=True)
    for path in real.glob('emnist-balanced-*'):
        (data / path.name).symlink_to(path)
    mapping = data / 'emnist-balanced-mapping.txt'
    mapping.unlink()
    mapping.write_text(''.join((real / mapping.name).read_text().splitlines(keepends=True)[:10]))
    before = folder_state(tmp_path)
    refused(python(REPO / 'run_emnist.py', '--data-dir', data.parent, '--out-dir', tmp_path / 'runs',
                   '--max-steps', '1', *FAST_RUN, cwd=tmp_path), 2,
            rf'run_emnist.py: error: {mapping} names 10 classes \(0 to 9\), but '
            rf'.*emnist-balanced-train-labels-idx1-ubyte.gz holds label 10: expected a name for each label$')
    assert folder_state(tmp_path) == before


def datasets_folder(dataset):
    """The real dataset's folder, as the loaders find it (CGAN_DATA_DIR, else the download cache)."""
    from condgan import datasets
    return datasets.data_files(dataset)[0].parent.parent if dataset == 'emnist' else \
        datasets.data_files(dataset)[0].parent


def test_a_dangling_link_to_a_data_file_is_named_as_such(tmp_path):
    data = tmp_path / 'mnist'
    data.mkdir()
    (data / 'train-images-idx3-ubyte.gz').symlink_to(tmp_path / 'moved' / 'images.gz')
    (data / 'train-labels-idx1-ubyte.gz').symlink_to(datasets_folder('mnist') / 'train-labels-idx1-ubyte.gz')
    refused(python(REPO / 'run_mnist.py', '--data-dir', data, '--out-dir', tmp_path / 'runs', '--max-steps', '1',
                   cwd=tmp_path, CGAN_MNIST_URL='http://127.0.0.1:9/'), 2,
            rf'run_mnist.py: error: {data}/train-images-idx3-ubyte.gz is a dangling link to '
            rf'{tmp_path}/moved/images.gz, which does not exist: point it at the data file, or remove it$')
    assert sorted(os.listdir(tmp_path)) == ['mnist'] and len(os.listdir(data)) == 2  # nothing downloaded
    assert (data / 'train-images-idx3-ubyte.gz').is_symlink()


def test_an_out_dir_that_cannot_be_created_says_so(tmp_path):
    refused(python(REPO / 'run_mnist.py', '--out-dir', '/proc/x', '--max-steps', '1', *FAST_RUN,
                   *data_dir_flag('mnist'), cwd=tmp_path), 1,
            r'run_mnist.py: error: could not create the folder /proc/x/mnist \(No such file or directory\)$')


@pytest.mark.parametrize('out_dir, status, message', [
    ('{tmp}/file', 2, 'argument -o/--out-dir: {tmp}/file is a file, not a folder'),
    ('{tmp}/file/below', 2, 'argument -o/--out-dir: {tmp}/file is a file, not a folder'),
    ('/proc/x', 1, r'could not create the folder /proc/x \(No such file or directory\)'),
])
def test_synthesize_into_a_file_or_an_impossible_folder_says_what_is_wrong(trained_run, tmp_path, out_dir,
                                                                          status, message):
    (tmp_path / 'file').write_text('not a folder')
    before = folder_state(tmp_path)
    refused(cgan('synthesize', trained_run / 'mnist.pkl', '-o', out_dir.format(tmp=tmp_path), cwd=tmp_path),
            status, f'cgan.py synthesize: error: {message.format(tmp=tmp_path)}')
    assert folder_state(tmp_path) == before


def test_generate_into_a_read_only_folder_names_the_output(trained_run, tmp_path):
    """A read-only file system (mounted in the child's own mount namespace, see test_commands)."""
    folder = tmp_path / 'read-only'
    folder.mkdir()
    script = 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"'
    result = subprocess.run(['unshare', '--map-root-user', '--mount', 'sh', '-c', script, folder, sys.executable,
                             REPO / 'cgan.py', 'generate', trained_run / 'mnist.pkl', '-o', folder / 'x.png'],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': str(REPO)})
    refused(result, 1, rf'cgan.py generate: error: cannot write {folder}/x.png: Read-only file system$')


def test_a_run_folder_deleted_mid_run_is_named(tmp_path):
    """The folder goes between two saves (renamed away at once, then deleted, as `rm -r` does
    in effect): the next write names it and the file it was writing, not a temporary name."""
    run_dir = tmp_path / 'runs' / 'mnist'
    training = subprocess.Popen(
        [sys.executable, REPO / 'run_mnist.py', '--out-dir', tmp_path / 'runs', '--max-steps', '10000',
         '--save-every', '3', *FAST_RUN, *data_dir_flag('mnist')], stderr=subprocess.PIPE, text=True,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': str(REPO)})
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / 'samples_3.png').exists():  # the last file of the save at step 3
            assert training.poll() is None and time.monotonic() < deadline, 'no save at step 3'
            time.sleep(0.05)
        run_dir.rename(tmp_path / 'trash')
        shutil.rmtree(tmp_path / 'trash')
        _, stderr = training.communicate(timeout=240)
    finally:
        training.kill()
    refused(subprocess.CompletedProcess(training.args, training.returncode, '', stderr), 1,
            rf'run_mnist.py: error: the folder {run_dir} no longer exists \(deleted while '
            rf'(losses.csv|samples_6.png) was written into it\)$')


def test_the_sixth_checkpoint_of_a_session_leaves_the_progress_bar_alone(tmp_path):
    """TensorFlow's Saver warned that its `remove_checkpoint` is deprecated, mid-bar."""
    result = python(REPO / 'run_mnist.py', '--out-dir', tmp_path, '--max-steps', '7', '--save-every', '1',
                    *FAST_RUN, *data_dir_flag('mnist'), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'remove_checkpoint' not in result.stderr and 'WARNING' not in result.stderr.replace(
        'WARNING: All log messages before absl::InitializeLog', '')
    assert sorted(path.name for path in (tmp_path / 'mnist').glob('*.index')) == [
        f'mnist-{step}.index' for step in (3, 4, 5, 6, 7)]  # kept to max_to_keep all the same
