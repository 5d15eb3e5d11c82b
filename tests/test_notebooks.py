"""The notebooks run from top to bottom without an error, on the CPU, with 2 training steps
(CGAN_NOTEBOOK_STEPS) and the data of CGAN_DATA_DIR (else the download cache), as a user
would: in a folder outside the repository, without PYTHONPATH, beside Hugging Face's
`datasets` and `evaluate`, which the notebooks' imports leave as the kernel's `datasets` and
`evaluate`."""
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_install import HUGGING_FACE_CHECK, assert_hugging_face

REPO = Path(__file__).resolve().parents[1]
KERNEL_NAME = 'cgan-tests'


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch):
    """A kernel spec that runs this interpreter, found first through JUPYTER_PATH, so neither
    a kernel installed elsewhere on the machine nor a missing one changes what runs."""
    spec = tmp_path / 'jupyter' / 'kernels' / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'cgan tests', 'language': 'python'}))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
    monkeypatch.delenv('PYTHONPATH', raising=False)  # only what the install made importable
    monkeypatch.setenv('CGAN_NOTEBOOK_STEPS', '2')
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '3')
    return KERNEL_NAME


@pytest.mark.parametrize('name', ['01_datasets.ipynb', '02_train_and_generate.ipynb'])
def test_notebook_runs_top_to_bottom(name, this_python_kernel, tmp_path):
    notebook = nbformat.read(REPO / 'notebooks' / name, as_version=4)
    # A last cell, in this copy only: which `datasets` and `evaluate` the kernel imports now.
    notebook.cells.append(nbformat.v4.new_code_cell(HUGGING_FACE_CHECK))
    working_dir = tmp_path / 'cwd'  # whatever a notebook writes stays out of the checkout
    working_dir.mkdir()
    # Raises CellExecutionError, with the cell and its traceback, at the first error.
    NotebookClient(notebook, kernel_name=this_python_kernel, timeout=600,
                   resources={'metadata': {'path': str(working_dir)}}).execute()
    # Every cell that shows a picture in the notebook as saved shows one again.
    saved = nbformat.read(REPO / 'notebooks' / name, as_version=4)
    assert pictures_shown(saved) and pictures_shown(saved) <= pictures_shown(notebook)
    assert_hugging_face(json.loads(notebook.cells[-1].outputs[-1].text))


def pictures_shown(notebook):
    """The positions of the code cells whose outputs include a PNG."""
    return {index for index, cell in enumerate(notebook.cells) if cell.cell_type == 'code'
            and any('image/png' in output.get('data', {}) for output in cell.outputs)}
