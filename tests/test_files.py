"""files: a file is written whole with the permissions the umask gives, and no module
changes the process's umask when it is imported."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from condgan.files import current_umask, write_atomically

PACKAGE = Path(__file__).resolve().parents[1] / 'condgan'


def test_no_module_changes_the_umask_when_imported():
    modules = sorted('.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts)
                     for path in PACKAGE.rglob('*.py') if path.stem not in ('__init__', '__main__'))
    code = f"""
import os
def refuse(mask):
    raise AssertionError('os.umask called at import')
os.umask = refuse
import importlib
for name in {modules!r}:
    importlib.import_module(name)
print(len({modules!r}))
"""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) == len(modules) > 10


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_a_file_is_written_whole_with_the_umasks_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        assert os.umask(umask) == umask  # reading it left it as it was
        write_atomically(tmp_path / 'data.bin', lambda f: f.write(b'whole'))
        with pytest.raises(ZeroDivisionError):
            write_atomically(tmp_path / 'data.bin', lambda f: (f.write(b'half'), 1 / 0))
    finally:
        os.umask(previous)
    assert (tmp_path / 'data.bin').read_bytes() == b'whole'
    assert stat.S_IMODE((tmp_path / 'data.bin').stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ['data.bin']  # no temporary file left behind
