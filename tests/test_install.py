"""The install shares an environment with Hugging Face's `datasets` and `evaluate` (issue 12).

Everything here runs as a user would: fresh processes of this interpreter, started in a
folder outside the repository, without PYTHONPATH, so only what `pip install -e .` made
importable is there.
"""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIDE = 28  # MNIST's images are 28x28

# Code for a fresh process or a notebook's kernel: where `datasets` and `evaluate` come from,
# printed as one line of JSON for assert_hugging_face.
HUGGING_FACE_CHECK = """
import datasets, evaluate, json, sysconfig
print(json.dumps({
    'site_packages': sysconfig.get_paths()['purelib'],
    'datasets': datasets.__file__, 'evaluate': evaluate.__file__,
    'hugging_face_functions': callable(datasets.load_dataset) and callable(evaluate.load),
}))
"""


def run_elsewhere(arguments, folder):
    """This interpreter with `arguments`, in `folder`, with no PYTHONPATH."""
    environment = {name: value for name, value in os.environ.items() if name != 'PYTHONPATH'}
    environment['TF_CPP_MIN_LOG_LEVEL'] = '3'
    result = subprocess.run([sys.executable, *map(str, arguments)], cwd=folder, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def python_elsewhere(code, folder):
    """Runs `code` (with json imported) in a fresh process; the JSON objects it printed, one
    a line, merged into one dict."""
    stdout = run_elsewhere(['-c', 'import json\n' + code], folder)
    found = {}
    for line in stdout.splitlines():
        if line.startswith('{'):
            found.update(json.loads(line))
    return found


def assert_hugging_face(found):
    """What HUGGING_FACE_CHECK printed names Hugging Face's packages, from site-packages."""
    assert found['hugging_face_functions']
    for name in ['datasets', 'evaluate']:
        assert Path(found[name]).is_relative_to(found['site_packages']), found[name]


def data_dir_flag():
    """--data-dir <CGAN_DATA_DIR>/mnist; without CGAN_DATA_DIR the recipe uses the cache."""
    root = os.environ.get('CGAN_DATA_DIR')
    return ['--data-dir', str(Path(root) / 'mnist')] if root else []


@pytest.fixture(scope='module')
def elsewhere(tmp_path_factory):
    """A folder outside the repository to start the processes in."""
    return tmp_path_factory.mktemp('elsewhere')


@pytest.fixture(scope='module')
def mnist_pickle(elsewhere):
    """A two-step run_mnist.py, started outside the repository; its pickled model."""
    out_dir = elsewhere / 'runs'
    run_elsewhere([REPO / 'run_mnist.py', '--max-steps', '2', '--save-every', '1',
                   '--batch-size', '8', '--seed', '0', '--out-dir', out_dir, *data_dir_flag()],
                  elsewhere)
    return out_dir / 'mnist' / 'mnist.pkl'


def test_hugging_face_packages_are_the_ones_imported(elsewhere):
    assert_hugging_face(python_elsewhere(HUGGING_FACE_CHECK, elsewhere))


def test_the_install_puts_only_condgan_on_sys_path(elsewhere):
    """The installed metadata declares `condgan` alone, and of every name at the repository's
    root (the book's cgan.py, datasets.py, run_*.py, aws/, ...) only `condgan` is importable
    from another folder."""
    distribution = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['name']
    root_names = sorted({path.stem for path in REPO.glob('*.py')} |
                        {path.parent.name for path in REPO.glob('*/__init__.py')})
    found = python_elsewhere(f"""
import importlib.metadata, importlib.util
from pathlib import Path
metadata = importlib.metadata.distribution({distribution!r})
from_repository = []
for name in {root_names!r}:
    spec = importlib.util.find_spec(name)
    if spec and spec.origin and Path(spec.origin).resolve().is_relative_to({str(REPO)!r}):
        from_repository.append(name)
print(json.dumps({{'top_level': metadata.read_text('top_level.txt').split(),
                  'from_repository': from_repository}}))
""", elsewhere)
    assert {'cgan', 'datasets', 'run_mnist', 'aws'} <= set(root_names)  # the book's, found
    assert found == {'top_level': ['condgan'], 'from_repository': ['condgan']}


def test_cgan_py_generate_from_another_folder(mnist_pickle, elsewhere):
    output = elsewhere / 'eights.png'
    run_elsewhere([REPO / 'cgan.py', 'generate', mnist_pickle, '--target-class', '8',
                   '--rows', '2', '--cols', '3', '-o', output], elsewhere)
    with Image.open(output) as grid:
        assert grid.size == (3 * SIDE, 2 * SIDE)


def test_the_pickle_generates_in_a_fresh_process_beside_hugging_face(mnist_pickle, elsewhere):
    """The book's promise: pickle it, start Python anew in any folder, load it, generate; and
    Hugging Face's packages are still the ones `import` finds afterwards."""
    found = python_elsewhere(f"""
import pickle, sys
from pathlib import Path
with open({str(mnist_pickle)!r}, 'rb') as f:
    gan = pickle.load(f)
eights = gan.generate_new(target_class=8, rows=2, cols=2, plot=False)
repository_on_path = [p for p in sys.path if Path(p or '.').resolve() == Path({str(REPO)!r})]
print(json.dumps({{'shape': list(eights.shape), 'largest': float(abs(eights).max()),
                  'class': type(gan).__module__ + '.' + type(gan).__name__,
                  'repository_on_path': repository_on_path}}))
""" + HUGGING_FACE_CHECK, elsewhere)
    assert found.pop('repository_on_path') == []
    assert found.pop('shape') == [4, SIDE, SIDE, 1] and found.pop('largest') <= 1
    assert found.pop('class').startswith('condgan.')
    assert_hugging_face(found)


@pytest.mark.parametrize('arguments', [['--help'], ['generate', '--help'], ['export', '--help']])
def test_the_commands_answer_help_without_loading_tensorflow(tmp_path, arguments):
    found = python_elsewhere(f"""
import runpy, sys
sys.argv = ['cgan.py', *{arguments!r}]
try:
    runpy.run_path({str(REPO / 'cgan.py')!r}, run_name='__main__')
except SystemExit as exit_:
    print(json.dumps({{'status': exit_.code, 'tensorflow': 'tensorflow' in sys.modules}}))
""", tmp_path)
    assert found == {'status': 0, 'tensorflow': False}
