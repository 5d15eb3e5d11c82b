"""No dead ends (issue 24, items 3, 4, 5, 9 and 11): every stopped run folder is finished or
started again by the same command, --resume takes the run's own settings, a folder of
another recipe is refused, and a deleted .lock does not let a second trainer in. Driven as a
user would: the recipe commands in subprocesses, on the real data of CGAN_DATA_DIR."""
import json
import os
import shutil
import signal

from test_recipes import command, data_dir_flag, folder_state
from test_runs import Training, checkpoint_steps, losses, message_lines, refused, run_mnist, trained

FINAL_OUTPUTS = ('mnist.pkl', 'losses.png', 'classes.png', 'progress.gif', 'interpolation.gif')


def record(run_dir, name='run.json'):
    return json.loads((run_dir / name).read_text())


def part_files(run_dir):
    return [name for name in os.listdir(run_dir) if name.endswith('.part')]


def assert_finished_without_training(run_dir, before, steps):
    """Every final output is there, run.json completed, and nothing trained again: the
    losses and checkpoints are those of before."""
    assert all((run_dir / name).exists() for name in FINAL_OUTPUTS)
    finished = record(run_dir)
    assert finished['steps'] == steps and 'finished' in finished
    assert finished['sessions'][-1]['reached_step'] == steps
    for name, state in before.items():
        if name.endswith(('.index', '.data-00000-of-00001')) or name == 'losses.csv':
            assert folder_state(run_dir)[name] == state, name
    assert not part_files(run_dir)


# ------------------------------------------------------------------ item 3: a stop after the last step

def test_a_run_killed_after_its_last_checkpoint_is_finished_by_resume_without_training(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 3, '--save-every', 1, '--seed', 0)
    # What kill -9 (or a full disk) after the last checkpoint leaves: no pickle, no pictures,
    # a run.json that was never completed.
    for name in FINAL_OUTPUTS:
        (run_dir / name).unlink()
    unfinished = record(run_dir)
    for key in ('steps', 'finished'):
        del unfinished[key]
    (run_dir / 'run.json').write_text(json.dumps(unfinished))
    before = folder_state(run_dir)

    result = run_mnist(tmp_path, '--resume', '--max-steps', 3)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'step 3 was trained; writing what the run lacks: mnist.pkl, losses.png' in result.stdout
    assert_finished_without_training(run_dir, before, 3)
    # Now it is complete: a resume has nothing to do, and changes nothing.
    complete = folder_state(run_dir)
    again = run_mnist(tmp_path, '--resume', '--max-steps', 3)
    assert again.returncode == 0 and 'already reached step 3 of the 3 asked for: nothing to do' in again.stdout
    assert folder_state(run_dir) == complete


def test_sigterm_while_the_pickle_and_pictures_are_written_says_so_and_resume_finishes(tmp_path):
    run_dir = tmp_path / 'mnist'
    with Training(tmp_path, '--max-steps', 2, '--save-every', 1, '--seed', 0) as training:
        training.wait_for(lambda: (run_dir / 'mnist.pkl').exists(), 'pickled')
        status = training.stop(signal.SIGTERM)  # while classes.png and the GIFs are drawn
    lines = message_lines(training.stderr_path.read_text())
    assert status == 143, training.stderr_path.read_text()[-3000:]
    assert lines[-1] == ("run_mnist.py: error: stopped by SIGTERM while writing mnist.pkl, its pictures "
                         "and run.json: the checkpoints are whole; run the same command with --resume "
                         "to write them"), lines
    assert not part_files(run_dir)
    assert 'finished' not in record(run_dir)
    before = folder_state(run_dir)
    result = run_mnist(tmp_path, '--resume', '--max-steps', 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_finished_without_training(run_dir, before, 2)


# ------------------------------------------------------------------ item 4: a stop before the first checkpoint

def test_a_run_killed_before_its_first_checkpoint_starts_afresh_with_or_without_resume(tmp_path):
    run_dir = tmp_path / 'mnist'
    with Training(tmp_path, '--max-steps', 10_000, '--save-every', 5000, '--seed', 0) as training:
        training.wait_for(lambda: (run_dir / 'config.json').exists(), 'started')
        training.stop(signal.SIGKILL)
    assert {'config.json', 'run.json'} <= set(os.listdir(run_dir)) and not checkpoint_steps(run_dir)
    stuck = tmp_path / 'stuck'
    shutil.copytree(tmp_path, stuck, ignore=shutil.ignore_patterns('stderr-*'))

    trained(tmp_path, '--max-steps', 2, '--save-every', 1, '--seed', 1)  # the same command, anew
    assert record(run_dir)['seed'] == 1 and losses(run_dir)[:, 0].tolist() == [1, 2]

    result = run_mnist(stuck, '--resume', '--max-steps', 2, '--save-every', 1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'{stuck / "mnist"} holds no checkpoint to resume: starting the run afresh' in \
        message_lines(result.stderr)
    # Afresh, with the run's own settings: its seed, and a new record.
    assert record(stuck / 'mnist')['seed'] == 0 and len(record(stuck / 'mnist')['sessions']) == 1
    assert checkpoint_steps(stuck / 'mnist') == [1, 2]


# ------------------------------------------------------------------ item 5: --resume takes the run's own settings

def test_resume_without_repeating_a_setting_takes_the_runs_own(tmp_path):
    def run(*arguments):
        return command('run_mnist.py', '--out-dir', tmp_path, *data_dir_flag('mnist'), *arguments, cwd=tmp_path)

    first = run('--batch-size', 4, '--z-dim', 10, '--epochs', 3, '--max-steps', 1, '--save-every', 1)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run('--resume', '--max-steps', 2, '--save-every', 1)  # no --batch-size, --z-dim, --epochs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_dir = tmp_path / 'mnist'
    config = record(run_dir, 'config.json')
    assert (config['training']['batch_size'], config['training']['epochs'], config['model']['z_dim']) == (4, 3, 10)
    arguments = record(run_dir)['sessions'][-1]['arguments']
    assert (arguments['batch_size'], arguments['z_dim'], arguments['epochs']) == (4, 10, 3)
    # A value the user gives that contradicts the run is still refused, naming it.
    before = folder_state(run_dir)
    refused(run('--resume', '--batch-size', 32, '--max-steps', 3), 'batch_size 4 -> 32')
    assert folder_state(run_dir) == before


# ------------------------------------------------------------------ item 9: the recipe's classes and data

def test_an_mnist_run_without_its_run_json_is_not_resumed_as_zalando(tmp_path):
    run_dir = trained(tmp_path, '--max-steps', 1, '--save-every', 1, '--seed', 0)
    zalando = tmp_path / 'copy' / 'zalando'
    shutil.copytree(run_dir, zalando)
    (zalando / 'run.json').unlink()
    before = folder_state(zalando)
    result = command('run_zalando.py', '--out-dir', zalando.parent, '--resume', '--max-steps', 2,
                     *data_dir_flag('fashion'), cwd=tmp_path)
    refused(result, "was trained with other settings; resuming must keep them: class_names ['0', '1'")
    assert "'T-shirt/top'" in message_lines(result.stderr)[0]
    assert folder_state(zalando) == before


# ------------------------------------------------------------------ item 11: a deleted .lock

def test_a_deleted_lock_file_lets_no_second_trainer_in(tmp_path):
    run_dir = tmp_path / 'mnist'
    with Training(tmp_path, '--max-steps', 10_000, '--save-every', 1) as first:
        first.wait_for(lambda: (run_dir / 'mnist-1.index').exists(), 'checkpointed')
        (run_dir / '.lock').unlink()
        for arguments in ([], ['--resume']):
            refused(run_mnist(tmp_path, *arguments, '--max-steps', 2), 'mnist is in use by')
        assert first.process.poll() is None  # the first trains on, alone
        first.stop(signal.SIGKILL)
    reached = checkpoint_steps(run_dir)[-1]
    trained(tmp_path, '--resume', '--max-steps', reached + 1)
    assert losses(run_dir)[:, 0].tolist() == list(range(1, reached + 2))
