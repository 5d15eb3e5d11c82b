"""A run folder is a unit no command can damage: it moves, resumes exactly however it was
stopped, refuses a second trainer, contradicting settings and finished work, falls back past a
damaged checkpoint and keeps its disk bounded. Driven as a user would: run_mnist.py in
subprocesses, on the real MNIST of CGAN_DATA_DIR."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from condgan.datasets import Dataset, load_mnist
from condgan.gan import CGan, load
from test_recipes import REPO, data_dir_flag, folder_state, own_stderr_lines

RUN = ['--batch-size', '8', *data_dir_flag('mnist')]
ENVIRONMENT = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}


def run_mnist(out_dir, *arguments, cwd=None):
    return subprocess.run([sys.executable, str(REPO / 'run_mnist.py'), '--out-dir', str(out_dir), *RUN,
                           *map(str, arguments)], cwd=cwd or out_dir.parent, capture_output=True,
                          text=True, timeout=300, env=ENVIRONMENT)


def trained(out_dir, *arguments):
    result = run_mnist(out_dir, *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / 'mnist'


def message_lines(stderr):
    """What a command said on stderr, but TensorFlow's log lines and the progress bar."""
    return [line for line in own_stderr_lines(stderr) if 'step/s' not in line]


def refused(result, fragment):
    lines = message_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert fragment in lines[0], lines[0]


def losses(run_dir):
    return np.loadtxt(run_dir / 'losses.csv', delimiter=',', skiprows=1, ndmin=2)


def checkpoint_steps(run_dir):
    return sorted(int(path.name[len('mnist-'):-len('.index')]) for path in run_dir.glob('mnist-*.index'))


class Training:
    """run_mnist.py in the background, to be stopped from outside while it trains."""

    def __init__(self, out_dir, *arguments):
        self.stderr_path = out_dir.parent / f'stderr-{time.monotonic_ns()}'
        self.stderr = open(self.stderr_path, 'w')
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / 'run_mnist.py'), '--out-dir', str(out_dir), *RUN, *map(str, arguments)],
            cwd=out_dir.parent, stdout=subprocess.DEVNULL, stderr=self.stderr, text=True, env=ENVIRONMENT,
            # As in a terminal: a background job (CI may be one) starts with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait_for(self, condition, what):
        deadline = time.monotonic() + 300  # a loaded machine takes a while to import TF
        while not condition():
            assert self.process.poll() is None, f'exited before {what}: ' + self.stderr_path.read_text()[-2000:]
            assert time.monotonic() < deadline, f'never {what}'
            time.sleep(0.05)

    def stop(self, signum):
        self.process.send_signal(signum)
        self.process.wait(timeout=300)
        self.stderr.close()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.kill()  # a child that outlives a failed test would train for hours
        self.process.wait()
        self.stderr.close()


def test_interrupted_and_resumed_however_a_run_ends_as_one_that_never_stopped(tmp_path):
    """Ctrl-C, SIGTERM and kill -9 (between checkpoints), each followed by --resume without
    repeating the seed: the same losses at every step, once each, and the same weights."""
    steps = ['--max-steps', 14, '--save-every', 4]
    reference = trained(tmp_path / 'reference', *steps, '--seed', 3)
    run_dir = tmp_path / 'stopped' / 'mnist'
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        resume = ['--resume'] if run_dir.exists() else ['--seed', 3]
        done = len(losses(run_dir)) if resume[0] == '--resume' else 0
        with Training(tmp_path / 'stopped', *steps, *resume) as training:
            if stop == signal.SIGKILL:  # after a checkpoint, before the next one
                training.wait_for(lambda: len(checkpoint_steps(run_dir)) and checkpoint_steps(run_dir)[-1] > done
                                  and (run_dir / 'samples_8.png').exists(), 'checkpointed')
                time.sleep(1)
            else:
                training.wait_for(lambda: f'{done + 2}/14' in training.stderr_path.read_text(), 'trained')
            status = training.stop(stop)
        assert status == (-9 if stop == signal.SIGKILL else 0)
        newest = checkpoint_steps(run_dir)[-1]
        assert losses(run_dir)[:, 0].tolist()[:newest] == list(range(1, newest + 1))
    trained(tmp_path / 'stopped', *steps, '--resume')
    np.testing.assert_allclose(losses(run_dir), losses(reference), rtol=1e-5)
    ours, theirs = load(run_dir / 'mnist.pkl').generator_weights, load(reference / 'mnist.pkl').generator_weights
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_second_training_of_a_folder_is_refused_at_once_naming_the_holder(tmp_path):
    with Training(tmp_path, '--max-steps', 10_000, '--save-every', 1) as first:
        first.wait_for(lambda: (tmp_path / 'mnist' / 'mnist-1.index').exists(), 'checkpointed')
        before = folder_state(tmp_path / 'mnist' / 'run.json')
        for arguments in ([], ['--resume']):
            refused(run_mnist(tmp_path, *arguments, '--max-steps', 2),
                    f'mnist is in use by process {first.process.pid}: wait for it to end')
        assert folder_state(tmp_path / 'mnist' / 'run.json') == before
        first.stop(signal.SIGKILL)
    # The operating system released the lock with the process: the run goes on.
    reached = checkpoint_steps(tmp_path / 'mnist')[-1]
    trained(tmp_path, '--resume', '--max-steps', reached + 1)
    assert losses(tmp_path / 'mnist')[:, 0].tolist() == list(range(1, reached + 2))


def test_a_moved_or_fetched_run_resumes_generates_and_loads_where_it_now_lives(tmp_path):
    first = trained(tmp_path / 'runs', '--max-steps', 2, '--save-every', 1, '--seed', 0)
    shutil.move(tmp_path / 'runs', tmp_path / 'moved')
    run_dir = tmp_path / 'moved' / 'mnist'
    assert not first.exists()
    # As `python -m aws fetch` brings it: TensorFlow's record names the instance's paths.
    (run_dir / 'checkpoint').write_text('model_checkpoint_path: "/opt/cgan/runs/mnist/mnist-2"\n'
                                        'all_model_checkpoint_paths: "/opt/cgan/runs/mnist/mnist-2"\n')
    before = folder_state(run_dir)
    refused(run_mnist(tmp_path / 'moved', '--max-steps', 3), 'already holds a training run')
    assert folder_state(run_dir) == before
    trained(tmp_path / 'moved', '--resume', '--max-steps', 3)
    assert losses(run_dir)[:, 0].tolist() == [1, 2, 3]
    generated = subprocess.run([sys.executable, str(REPO / 'cgan.py'), 'generate', str(run_dir), '-o',
                                str(tmp_path / 'eights.png'), '--target-class', '8'],
                               capture_output=True, text=True, timeout=300, env=ENVIRONMENT)
    assert generated.returncode == 0, generated.stderr[-2000:]
    os.remove(run_dir / 'mnist.pkl')  # the checkpoint alone: its config.json describes the model
    gan = CGan.from_checkpoint(str(run_dir))
    assert (gan.classes, gan.generator_name) == (list(range(10)), 'mnist')
    assert gan.generate_new(target_class=3, rows=1, cols=2, plot=False).shape == (2, 28, 28, 1)


def test_resuming_a_finished_run_changes_nothing_and_says_so(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 2, '--save-every', 1, '--seed', 0)
    before = folder_state(run_dir)
    result = run_mnist(tmp_path, '--resume', '--max-steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'already reached step 2 of the 2 asked for: nothing to do' in result.stdout
    assert folder_state(run_dir) == before


def test_resume_refuses_settings_that_contradict_the_run_and_names_them(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 1, '--save-every', 1, '--seed', 0)
    before = folder_state(run_dir)
    refused(run_mnist(tmp_path, '--resume', '--batch-size', 4, '--max-steps', 2),
            'trained with other settings; resuming must keep them: batch_size 8 -> 4')
    refused(run_mnist(tmp_path, '--resume', '--seed', 5, '--max-steps', 2), 'seed 0 -> 5')
    refused(run_mnist(tmp_path, '--resume', '--z-dim', 10, '--max-steps', 2), 'z_dim 96 -> 10')
    assert folder_state(run_dir) == before
    # A learning rate may change on resume; it is recorded with the session's first checkpoint,
    # so a session that diverges before one leaves the record as it was.
    diverged = run_mnist(tmp_path, '--resume', '--learning-rate', 1e30, '--max-steps', 3)
    assert diverged.returncode == 1 and 'training diverged at step 2' in diverged.stderr
    assert folder_state(run_dir) == before


def test_resume_keeps_the_runs_own_learning_rate_and_beta1_unless_told(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 1, '--save-every', 1, '--seed', 0,
                      '--learning-rate', 0.001, '--beta1', 0.4)
    trained(tmp_path, '--resume', '--max-steps', 2, '--save-every', 1)  # neither flag given
    record = json.loads((run_dir / 'run.json').read_text())
    assert [(s['arguments']['learning_rate'], s['arguments']['beta1']) for s in record['sessions']] == [
        (0.001, 0.4), (0.001, 0.4)]
    trained(tmp_path, '--resume', '--max-steps', 3, '--save-every', 1, '--learning-rate', 0.0005)
    training = json.loads((run_dir / 'config.json').read_text())['training']
    assert (training['learning_rate'], training['beta1']) == (0.0005, 0.4)
    # So does fit(resume=True) in Python.
    gan = CGan(Dataset(*load_mnist('train'), channels=1, seed=0), out_dir=str(tmp_path),
               batch_size=8, generator_name='mnist', seed=0)
    gan.fit(resume=True, max_steps=4, save_every_n=1, plot=False)
    assert (gan.settings.learning_rate, gan.settings.beta1) == (0.0005, 0.4)
    gan.close()


def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_it_used(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 2, '--save-every', 1, '--seed', 0)
    expected = losses(run_dir)
    data_file = run_dir / 'mnist-2.data-00000-of-00001'
    data_file.write_bytes(data_file.read_bytes()[:1000])  # truncated, as by a full disk
    os.remove(run_dir / 'mnist.pkl')
    result = run_mnist(tmp_path, '--resume', '--max-steps', 3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'warning: checkpoint {run_dir / "mnist-2"} is damaged' in result.stderr
    np.testing.assert_allclose(losses(run_dir)[:2], expected, rtol=1e-5)  # step 2 trained again
    assert losses(run_dir)[:, 0].tolist() == [1, 2, 3]
    for data_file in run_dir.glob('mnist-*.data-*'):
        data_file.unlink()
    refused(run_mnist(tmp_path, '--resume', '--max-steps', 4),
            f'every checkpoint in {run_dir} is damaged: mnist-3: its .data file is missing;')


def test_disk_stays_bounded_across_resumes_and_crashes(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 6, '--save-every', 1, '--seed', 0)
    assert checkpoint_steps(run_dir) == [2, 3, 4, 5, 6]  # max_to_keep
    half_written = run_dir / 'mnist-7.data-00000-of-00001.tempstate123'  # a save a crash cut short
    half_written.write_bytes(b'\0' * 100)
    trained(tmp_path, '--resume', '--max-steps', 8, '--save-every', 1)
    assert checkpoint_steps(run_dir) == [4, 5, 6, 7, 8]
    assert not half_written.exists()
    assert not [name for name in os.listdir(run_dir) if name.endswith('.part')]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path):
    result = run_mnist(tmp_path / 'out', '--max-steps', 3, '--learning-rate', 1e30, '--seed', 0)
    lines = message_lines(result.stderr)
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert 'training diverged at step 1' in lines[0] and 'no checkpoint was written' in lines[0]
    assert not (tmp_path / 'out').exists()


def test_the_run_describes_itself_from_its_first_step(tmp_path):
    """A run killed before its end still tells which recipe, model and settings it is."""
    with Training(tmp_path, '--max-steps', 10_000, '--save-every', 1, '--seed', 4) as training:
        training.wait_for(lambda: (tmp_path / 'mnist' / 'mnist-1.index').exists(), 'checkpointed')
        training.stop(signal.SIGKILL)
    shutil.move(tmp_path / 'mnist', tmp_path / 'zalando')
    result = subprocess.run([sys.executable, str(REPO / 'run_zalando.py'), '--out-dir', str(tmp_path),
                             '--resume'], capture_output=True, text=True, timeout=300, env=ENVIRONMENT)
    refused(result, "holds a run of the 'mnist' recipe, not 'zalando'")
    record = json.loads((tmp_path / 'zalando' / 'config.json').read_text())
    assert record['training']['seed'] == 4 and record['training']['batch_size'] == 8
    assert record['model']['classes'] == list(range(10))
