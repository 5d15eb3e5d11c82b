"""The entry point of a sweep's SageMaker jobs, for real: SageMaker's /opt/ml tree under a
temporary root, its SM_* variables, a few training steps of tiny MNIST-shaped data, a SIGTERM
(a Spot interruption) mid-run and a second start on the same checkpoint folder; and an image
folder's archive as the channel, unpacked, trained on and resumed."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from condgan import archives, folders
from condgan.hyperparameters import to_hyperparameters
from synthetic import random_images, write_idx_pair
from test_folders import write_folder

STEPS, SAVE_EVERY = 40, 4
FLAGS = {"max_steps": STEPS, "save_every": SAVE_EVERY, "batch_size": 8, "z_dim": 8, "seed": 3}


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    """A data channel: MNIST's file names, 40 random images of the 10 digits."""
    folder = tmp_path_factory.mktemp("channel")
    labels = np.arange(40, dtype=np.uint8) % 10
    write_idx_pair(folder, random_images(40), labels)
    write_idx_pair(folder, random_images(20, seed=1), labels[:20], prefix="t10k")
    return folder


def opt_ml(root, channel, flags=FLAGS, evaluate_per_class=0, source={"recipe": "mnist"}):
    """SageMaker's tree: the hyperparameters as strings, the channel, empty checkpoints."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {**to_hyperparameters(source, flags, evaluate_per_class),
                       "sagemaker_program": "sagemaker_train.py"}  # the toolkit's own keys
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "checkpoints").mkdir()
    return {**os.environ, "CGAN_SAGEMAKER_ROOT": str(root), "SM_CHANNEL_TRAINING": str(channel),
            "SM_HPS": json.dumps(hyperparameters), "PYTHONPATH": os.getcwd()}


def entry_point(environment):
    return subprocess.Popen([sys.executable, "-m", "condgan.sagemaker_entry"], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_spot_interruption_resumes_to_the_losses_of_an_uninterrupted_run(tmp_path, channel):
    whole = entry_point(opt_ml(tmp_path / "whole", channel))
    interrupted_root = tmp_path / "interrupted"
    environment = opt_ml(interrupted_root, channel)
    interrupted = entry_point(environment)
    run_dir = interrupted_root / "checkpoints" / "mnist"
    deadline = time.monotonic() + 300
    while not list(run_dir.glob("mnist-*.index")):  # mid-run: after its first checkpoint
        assert interrupted.poll() is None and time.monotonic() < deadline, interrupted.communicate()
        time.sleep(0.05)
    sent = time.monotonic()
    interrupted.send_signal(signal.SIGTERM)
    _, stderr = interrupted.communicate(timeout=120)
    assert time.monotonic() - sent < 60  # SageMaker kills the container 120 s after SIGTERM
    assert interrupted.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    steps_saved = max(int(p.name[len("mnist-"):-len(".index")]) for p in run_dir.glob("*.index"))
    assert steps_saved < STEPS
    assert not (interrupted_root / "model" / "mnist.pkl").exists()

    again = entry_point(environment)  # SageMaker restores the checkpoint folder, starts again
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    _, stderr = whole.communicate(timeout=300)
    assert whole.returncode == 0, stderr

    resumed = np.loadtxt(interrupted_root / "model" / "losses.csv", delimiter=",", skiprows=1)
    uninterrupted = np.loadtxt(tmp_path / "whole" / "model" / "losses.csv", delimiter=",",
                               skiprows=1)
    assert resumed.shape == (STEPS, 3)
    np.testing.assert_array_equal(resumed, uninterrupted)
    model = sorted(p.name for p in (interrupted_root / "model").iterdir())
    assert {"mnist.pkl", "classes.png", "progress.gif", "run.json", "losses.csv"} <= set(model)
    assert not any(name.endswith(".index") for name in model)  # checkpoints stay in their URI


def test_every_kept_checkpoint_is_judged_into_evaluation_json(tmp_path, channel):
    environment = opt_ml(tmp_path, channel, {**FLAGS, "max_steps": 8}, evaluate_per_class=2)
    finished = subprocess.run([sys.executable, "-c", CHEAP_CLASSIFIER], env=environment,
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    evaluation = json.loads((tmp_path / "model" / "evaluation.json").read_text())
    assert (evaluation["recipe"], evaluation["seed"]) == ("mnist", 3)
    assert evaluation["variant"] == "book"
    assert [c["step"] for c in evaluation["checkpoints"]] == [4, 8]
    for figures in evaluation["checkpoints"]:
        assert 0 <= figures["conditional_accuracy"] <= 1
        assert figures["images_per_class"] == 2


# The entry point with a classifier of 20 training steps: its figures mean little, but they
# are computed as on the instance, at a fraction of the cost.
CHEAP_CLASSIFIER = """import sys
from condgan import evaluate, sagemaker_entry
evaluate.TRAIN_STEPS['mnist'] = 20
sys.exit(sagemaker_entry.main())
"""


def test_a_failed_job_says_why_in_sagemakers_failure_file(tmp_path, channel):
    environment = opt_ml(tmp_path, channel, {**FLAGS, "beta1": 2})
    finished = subprocess.run([sys.executable, "-m", "condgan.sagemaker_entry"], env=environment,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert "argument --beta1: must lie in [0, 1), got 2.0" in finished.stderr  # the job's log
    assert "argument --beta1: must lie in [0, 1), got 2.0" in (
        tmp_path / "output" / "failure").read_text()
    assert not (tmp_path / "model").exists()


FOLDER_NAME = "Mes images été"


@pytest.fixture(scope="module")
def folder_channel(tmp_path_factory):
    """An image folder and a channel that holds its archive, as `sweep launch --folder` packs
    it and SageMaker downloads it (SHA256.tar)."""
    root = tmp_path_factory.mktemp("folder-channel")
    folder = write_folder(root / FOLDER_NAME, per_class=4, classes=("a", "b"))
    channel = root / "channel"
    channel.mkdir()
    sha256 = archives.pack_folder(folder, folders.scan(folder).manifest, root / "packed.tar")
    (root / "packed.tar").rename(channel / f"{sha256}.tar")
    return folder, channel, sha256


def run_entry_point(environment):
    return subprocess.run([sys.executable, "-m", "condgan.sagemaker_entry"], env=environment,
                          capture_output=True, text=True, timeout=300)


def test_a_folder_job_trains_on_its_archive_and_resumes_on_the_same_files(tmp_path,
                                                                          folder_channel):
    folder, channel, sha256 = folder_channel
    source = {"folder": FOLDER_NAME, "folder-sha256": sha256}
    flags = {"max_steps": 2, "save_every": 2, "batch_size": 4, "z_dim": 8, "seed": 3,
             "size": 16, "skip_unreadable": True}
    environment = opt_ml(tmp_path, channel, flags, source=source)
    first = run_entry_point(environment)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "checkpoints" / FOLDER_NAME
    record = json.loads((run_dir / "run.json").read_text())
    assert record["data"]["files"] == folders.scan(folder).manifest  # the same files, the same layout
    assert record["data"]["image_shape"] == [16, 16, 3]
    assert (tmp_path / "model" / f"{FOLDER_NAME}.pkl").exists()

    # SageMaker starts the job again (a Spot restart), here with more steps: the archive is
    # unpacked anew, and the run's manifest check lets it resume.
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        to_hyperparameters(source, {**flags, "max_steps": 4}, evaluate_per_class=0)))
    again = run_entry_point(environment)
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert [session["arguments"]["resume"] for session in record["sessions"]] == [False, True]
    losses = np.loadtxt(tmp_path / "model" / "losses.csv", delimiter=",", skiprows=1)
    assert losses.shape == (4, 3)


def test_a_folder_archive_that_is_not_the_launched_one_is_refused(tmp_path, folder_channel):
    _, channel, sha256 = folder_channel
    planted = tmp_path / "channel"
    planted.mkdir()
    (planted / f"{sha256}.tar").write_bytes((channel / f"{sha256}.tar").read_bytes() + b"\0")
    finished = run_entry_point(opt_ml(tmp_path / "ml", planted,
                                      source={"folder": FOLDER_NAME, "folder-sha256": sha256}))
    assert finished.returncode == 2
    assert f"not the {sha256} it was uploaded with" in finished.stderr
    assert f"not the {sha256}" in (tmp_path / "ml" / "output" / "failure").read_text()
    assert not (tmp_path / "ml" / "checkpoints" / FOLDER_NAME).exists()
