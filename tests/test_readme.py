"""Every command of the README's ```bash blocks runs, as a newcomer would type it.

The convention the README follows:
- Each line of a ```bash block is a command (a line ending in `\\` goes on on the next);
  blank lines and lines that are only a comment are not commands. The parts of an `&&`
  chain are commands of their own, run in order.
- The commands run in the README's order, one test each, in one temporary folder that holds
  links to the repository's root files (cgan.py, run_*.py, ...), with CGAN_DATA_DIR's data
  and a per-user cache of their own: a command may use what an earlier one left (runs/mnist).
  `python` is the interpreter of the tests. A command repeated word for word runs once, at
  its first place (its later tests say so).
- A training command (`python run_*.py`, `python cgan.py train`) trains TINY_STEPS steps: its `--max-steps N` becomes
  `--max-steps 2`, and one without --max-steps gets it.
- A command that cannot run here (AWS, the test suite itself, a model of the reader's own)
  is marked in the README, with its reason, either
  - for its whole line, by a trailing comment that holds `not run by the tests: REASON`, or
  - for one part of an `&&` chain, by an HTML comment anywhere in the README, invisible on
    the page: <!-- not run by the tests: `THE PART, AS WRITTEN` REASON -->.
  Its test checks that the reason is given, and passes without running it: it is reported
  in the test's name, never skipped.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
TINY_STEPS = 2
MARK = 'not run by the tests:'
PART_MARK = re.compile(r'<!-- not run by the tests: `([^`]+)` (.+?) -->', re.S)
TIMEOUT = 600  # seconds per command: a synthesize of 10,000 images on a busy machine


def bash_lines(text):
    """The command lines of the ```bash blocks, continuations joined, with (block, line) numbers."""
    lines = []
    for block_number, block in enumerate(re.findall(r'^```bash\n(.*?)^```', text, re.S | re.M), 1):
        joined = re.sub(r'\\\n\s*', ' ', block)
        numbered = [line.strip() for line in joined.splitlines()]
        lines += [(block_number, number, line) for number, line in enumerate(
            (line for line in numbered if line and not line.startswith('#')), 1)]
    return lines


def split_comment(line):
    """(the command, its trailing comment or ''): a `#` after a space, outside quotes."""
    quote = None
    for position, character in enumerate(line):
        if quote:
            quote = None if character == quote else quote
        elif character in '"\'':
            quote = character
        elif character == '#' and (position == 0 or line[position - 1].isspace()):
            return line[:position].strip(), line[position + 1:].strip()
    return line.strip(), ''


def readme_commands(text):
    """(test id, command, reason it is not run or None) for every command of the README."""
    part_reasons = dict(PART_MARK.findall(text))
    first_places = {}  # command -> where it first came
    commands = []
    for block, number, line in bash_lines(text):
        command, comment = split_comment(line)
        line_reason = comment.split(MARK, 1)[1].strip() if MARK in comment else None
        for part in (part.strip() for part in command.split('&&')):
            reason = line_reason or part_reasons.get(part) or first_places.get(part)
            commands.append((f'block{block}-line{number}: {part}', part, reason and reason.strip()))
            first_places.setdefault(part, f'the same command ran at block{block}-line{number}')
    return commands


def tiny(arguments):
    """A training command's arguments with --max-steps TINY_STEPS."""
    if '--max-steps' in arguments:
        at = arguments.index('--max-steps')
        return arguments[:at + 1] + [str(TINY_STEPS)] + arguments[at + 2:]
    return arguments + ['--max-steps', str(TINY_STEPS)]


def runnable(command):
    """The command's arguments as the test runs it."""
    arguments = shlex.split(command)
    if arguments[0] == 'python':
        arguments[0] = sys.executable
        if len(arguments) > 1 and re.fullmatch(r'run_\w+\.py', arguments[1]) or arguments[1:3] == ['cgan.py', 'train']:
            arguments = tiny(arguments)
    return arguments


COMMANDS = readme_commands(README.read_text())


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A folder with the repository's root files, and a per-user cache of its own, which
    starts with the classifiers that the data folder keeps cached (evaluate's, for MNIST):
    the README's evaluate then takes seconds, not minutes of training."""
    folder = tmp_path_factory.mktemp('readme')
    for path in REPO.iterdir():
        if path.suffix == '.py' or path.name == 'aws':
            (folder / path.name).symlink_to(path)
    data_root = Path(os.environ['CGAN_DATA_DIR']) if 'CGAN_DATA_DIR' in os.environ else None
    for cached in data_root.glob('*/cgan-classifier-*.npz') if data_root else []:
        (folder / '.cache' / 'cgan' / cached.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, folder / '.cache' / 'cgan' / cached.parent.name / cached.name)
    return folder


def test_the_readme_has_commands_and_marks_are_understood():
    assert len(COMMANDS) >= 10
    assert not set(PART_MARK.findall(README.read_text())) - {(c, r) for _, c, r in COMMANDS if r}, \
        'an HTML mark names a command that is in no ```bash block'
    example = 'pip install x && python run_mnist.py --max-steps 9 --seed 0   # train it'
    marked = readme_commands(f'<!-- not run by the tests: `pip install x` CI does it -->\n'
                             f'```bash\n{example}\n```\n')
    assert [(command, reason) for _, command, reason in marked] == [
        ('pip install x', 'CI does it'), ('python run_mnist.py --max-steps 9 --seed 0', None)]
    assert runnable(marked[1][1])[1:] == ['run_mnist.py', '--max-steps', '2', '--seed', '0']
    assert runnable('python run_zalando.py')[1:] == ['run_zalando.py', '--max-steps', '2']
    assert runnable('python cgan.py train my_images/')[1:] == ['cgan.py', 'train', 'my_images/', '--max-steps', '2']


@pytest.mark.parametrize('command, reason', [(c, r) for _, c, r in COMMANDS],
                         ids=[i if r is None else f'{i} [{MARK} {r}]' for i, _, r in COMMANDS])
def test_the_readme_command_runs(command, reason, workspace):
    if reason is not None:  # reported in the test's id; a mark must say why
        assert len(reason.split()) >= 2, f'{command!r}: the README marks it not run without a reason'
        print(f'{command}: {MARK} {reason}')
        return
    env = {**os.environ, 'XDG_CACHE_HOME': str(workspace / '.cache'), 'TF_CPP_MIN_LOG_LEVEL': '3'}
    result = subprocess.run(runnable(command), cwd=workspace, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f'{command}\n{result.stderr[-3000:]}'
