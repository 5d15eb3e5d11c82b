"""The instance's first-boot script (EC2 user data): install, train, copy to S3, power off."""

import re
import shlex

WORK_DIR = "/opt/cgan"
# Where an image folder's archive is unpacked on the instance: WORK_DIR/folders/<its name>, so
# that the run folder takes the folder's name, as `cgan.py train DIR` does at home.
FOLDERS_DIR = "folders"

# Python for the project (TensorFlow 2.21 and numpy 2.4 need Python >= 3.11 and glibc >=
# 2.27), from AWS's mirror of Docker's official images, so that the pull is not rate-limited.
PYTHON_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim-bookworm"
JUPYTERLAB = "jupyterlab==4.6.6"

# Training stops this long before --max-hours, to leave time for the last copy to S3.
UPLOAD_MARGIN_MINUTES = 10

# The GPU check before the long run: this many training steps of the user's model, then a
# generate. A GPU stack that cannot train fails here, minutes after the boot, not hours later.
GPU_CHECK_STEPS = 20

# Run in the container with `python -c`: fails, with the reason as its last line, when
# TensorFlow does not see the GPU (it would otherwise train on the CPU at GPU prices).
GPU_VISIBLE = """import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"GPU check: TensorFlow {tf.__version__} sees {[gpu.name for gpu in gpus]}")
sys.exit(None if gpus else "GPU check: TensorFlow sees no GPU (is the CUDA stack installed?)")
"""
# Reads the check run's run.json (argv[1]) and writes its step rate into the log.
STEP_RATE = """import json, sys
run = json.load(open(sys.argv[1]))
rate = run["steps"] / run["training_seconds"]
print(f"GPU check: {run['steps']} training steps in {run['training_seconds']} s, "
      f"{rate:.1f} steps/s with the graph set-up; the GPU trains, the long run starts")
"""
# Run in the container with `python -c ARCHIVE SHA256 FOLDER`: the image folder's archive,
# its SHA-256 checked, unpacked safely (condgan/archives.py); a refusal is its last line.
UNPACK_FOLDER = """import sys
from condgan.archives import ArchiveError, unpack_folder
try:
    unpack_folder(*sys.argv[1:])
except ArchiveError as error:
    sys.exit(str(error))
"""

TEMPLATE = r"""#!/bin/bash
# First boot of a cgan training instance, written by `python -m aws launch`.
#
# The Deep Learning AMI brings the NVIDIA driver, Docker and NVIDIA's container toolkit; the
# project runs in a Python container on top, whatever the AMI's own Python and glibc. The
# script trains one recipe or image folder, copies the run folder to S3 as it goes, then
# powers the machine off. The instance terminates on shutdown, so it stops costing money
# whether training ends, fails, or runs into the time limit.
set -euo pipefail

readonly RUN_URI={{run_uri}}
readonly PROJECT_URI={{project_uri}}
readonly DATA_URI={{data_uri}}
readonly RESUME_URI={{resume_uri}}
readonly FOLDER_URI={{folder_uri}}
readonly FOLDER_SHA256={{folder_sha256}}
readonly FOLDER_DIR={{folder_dir}}
readonly RUN_NAME={{run_name}}
readonly TRAIN_SCRIPT=({{train_script}})
readonly IMAGE={{image}}
readonly WORK={{work_dir}}
readonly MAX_MINUTES={{max_minutes}}
readonly SYNC_SECONDS={{sync_seconds}}
readonly TRAIN_ARGS=({{train_args}})
readonly GPU_CHECK_ARGS=({{gpu_check_args}})
readonly GPU_CHECK_DIR={{gpu_check_dir}}
readonly GPU_STACK=({{gpu_stack}})
readonly GPU_VISIBLE={{gpu_visible}}
readonly STEP_RATE={{step_rate}}
readonly UNPACK_FOLDER={{unpack_folder}}
export AWS_DEFAULT_REGION={{region}}

readonly LOGS="$WORK/logs"

upload_run() {
    aws s3 sync --only-show-errors "$WORK/runs/$RUN_NAME" "$RUN_URI/output/$RUN_NAME"
    aws s3 sync --only-show-errors "$LOGS" "$RUN_URI/logs"
}

report() {  # the state that `python -m aws status` shows
    echo "$1" > "$LOGS/state"
    echo "$(date -u +%FT%TZ) $1"
    aws s3 cp --only-show-errors "$LOGS/state" "$RUN_URI/logs/state"
}

upload_every_few_minutes() {
    while sleep "$SYNC_SECONDS"; do
        upload_run || echo "copying to S3 failed; trying again in $SYNC_SECONDS s"
    done
}

# Why the run ended, when it ended early for a reason the script knows.
FAILURE=""

finish() {
    local status=$?
    set +e
    trap - EXIT
    if [ -n "$UPLOADER" ]; then  # its sleep first, which ends its loop, then itself
        pkill -P "$UPLOADER"
        kill "$UPLOADER" 2> /dev/null
    fi
    docker stop cgan-train cgan-jupyter > /dev/null 2>&1
    case "$status" in
        0) report "finished" ;;
        124) report "stopped at the --max-hours limit" ;;
        *) report "${FAILURE:-failed with exit status $status: see python -m aws logs}" ;;
    esac
    upload_run
    shutdown -h now
}
UPLOADER=""
trap finish EXIT

mkdir -p "$WORK/src" "$WORK/data" "$WORK/runs/$RUN_NAME" "$LOGS"
exec >> "$LOGS/bootstrap.log" 2>&1
# The hard limit comes first, so that nothing below can keep the machine up past it.
shutdown -h "+$MAX_MINUTES"
readonly TRAIN_DEADLINE=$(( $(date +%s) + (MAX_MINUTES - {{upload_margin}}) * 60 ))

report "installing"
FAILURE="no NVIDIA driver answers (nvidia-smi failed): nothing was trained"
nvidia-smi  # without a GPU, training would cost GPU prices for days: stop here
FAILURE=""
systemctl start docker
aws s3 cp --only-show-errors "$PROJECT_URI" - | tar -xz -C "$WORK/src"
if [ -n "$DATA_URI" ]; then
    aws s3 sync --only-show-errors "$DATA_URI" "$WORK/data"
fi
if [ -n "$RESUME_URI" ]; then  # the run folder of the run that this one continues
    aws s3 sync --only-show-errors "$RESUME_URI" "$WORK/runs/$RUN_NAME"
fi

# Both containers see the GPU and the work folder; TensorFlow takes GPU memory as it needs
# it, so that a notebook can share the GPU with training.
readonly IN_CONTAINER=(docker run --gpus all --env TF_FORCE_GPU_ALLOW_GROWTH=true
                       --volume "$WORK:$WORK" --workdir "$WORK/src")
"${IN_CONTAINER[@]}" --rm "$IMAGE" python -m venv "$WORK/venv"
"${IN_CONTAINER[@]}" --rm "$IMAGE" "$WORK/venv/bin/pip" install --quiet \
    --editable . "${GPU_STACK[@]}" {{jupyterlab}}
in_venv() {
    "${IN_CONTAINER[@]}" --rm "$IMAGE" "$WORK/venv/bin/python" "$@"
}

if [ -n "$FOLDER_URI" ]; then  # the image folder: one archive, checked, unpacked safely
    aws s3 cp --only-show-errors "$FOLDER_URI" "$WORK/folder.tar"
    if ! unpacked=$(in_venv -c "$UNPACK_FOLDER" "$WORK/folder.tar" "$FOLDER_SHA256" \
                    "$FOLDER_DIR" 2>&1); then
        echo "$unpacked"
        FAILURE="the image folder was not unpacked, nothing was trained: $(echo "$unpacked" | tail -n 1 | cut -c 1-300)"
        exit 3
    fi
    rm "$WORK/folder.tar"
fi

# A few steps and a generate on the GPU, into the training log: a stack that cannot train
# ends the run now, with the reason in `status`, instead of after the hours paid for.
report "checking the GPU"
gpu_check() {
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader &&
    in_venv -c "$GPU_VISIBLE" &&
    in_venv "${TRAIN_SCRIPT[@]}" "${GPU_CHECK_ARGS[@]}" &&
    in_venv cgan.py generate "$GPU_CHECK_DIR/$RUN_NAME/$RUN_NAME.pkl" -o "$GPU_CHECK_DIR/generated.png" &&
    in_venv -c "$STEP_RATE" "$GPU_CHECK_DIR/$RUN_NAME/run.json"
}
if ! gpu_check >> "$LOGS/train.log" 2>&1; then
    reason=$(grep -v '^[[:space:]]*$' "$LOGS/train.log" | tail -n 1 | cut -c 1-300)
    FAILURE="GPU check failed, nothing was trained, the machine terminates: $reason"
    exit 3
fi

# Jupyter listens on the instance's loopback only: `python -m aws jupyter` tunnels to it.
openssl rand -hex 24 > "$WORK/jupyter-token"
chmod 600 "$WORK/jupyter-token"
"${IN_CONTAINER[@]}" --detach --name cgan-jupyter --publish 127.0.0.1:8888:8888 "$IMAGE" \
    "$WORK/venv/bin/jupyter" lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
    --ServerApp.root_dir="$WORK" --IdentityProvider.token="$(cat "$WORK/jupyter-token")"

report "training"
upload_every_few_minutes &
UPLOADER=$!
train_seconds=$(( TRAIN_DEADLINE - $(date +%s) ))
if [ "$train_seconds" -le 0 ]; then
    exit 124
fi
timeout "$train_seconds" "${IN_CONTAINER[@]}" --rm --name cgan-train "$IMAGE" \
    "$WORK/venv/bin/python" "${TRAIN_SCRIPT[@]}" "${TRAIN_ARGS[@]}" >> "$LOGS/train.log" 2>&1
"""


def unpacked_folder(name, work_dir=WORK_DIR):
    return f"{work_dir}/{FOLDERS_DIR}/{name}"


def training_script(recipe=None, folder_name=None, work_dir=WORK_DIR):
    """What trains, before its flags: run_<recipe>.py, or `cgan.py train` the unpacked folder."""
    if folder_name is None:
        return [f"run_{recipe}.py"]
    return ["cgan.py", "train", unpacked_folder(folder_name, work_dir)]


def training_arguments(flags, work_dir=WORK_DIR, out_dir="runs", data_dir=True):
    """The training command line after its script: the folders on the instance (no --data-dir
    for an image folder), then every flag the user gave (name -> value, as the training
    parser read it), zero values included."""
    arguments = ["--out-dir", f"{work_dir}/{out_dir}"] + (
        ["--data-dir", f"{work_dir}/data"] if data_dir else [])
    for name, value in flags.items():
        option = "--" + name.replace("_", "-")
        arguments += [option] if value is True else [option, str(value)]
    return arguments


def gpu_check_arguments(flags, work_dir=WORK_DIR, data_dir=True):
    """The GPU check's command line: the user's model and data, a few steps, its own folder."""
    model = {name: value for name, value in flags.items()
             if name not in ("epochs", "max_steps", "save_every", "resume", "folder_changed")}
    return training_arguments({**model, "max_steps": GPU_CHECK_STEPS,
                               "save_every": GPU_CHECK_STEPS}, work_dir, "gpu-check", data_dir)


def render_user_data(*, run_uri, project_uri, data_uri, resume_uri, flags, gpu_stack,
                     max_hours, region, recipe=None, folder=None, work_dir=WORK_DIR,
                     sync_seconds=300):
    """The script; `folder`, for an image folder: (its name, its archive's S3 URI, the
    archive's SHA-256), else `recipe`."""
    folder_name, folder_uri, folder_sha256 = folder or (None, "", "")
    values = {
        "run_uri": run_uri,
        "project_uri": project_uri,
        "data_uri": data_uri or "",
        "resume_uri": resume_uri or "",
        "folder_uri": folder_uri,
        "folder_sha256": folder_sha256,
        "folder_dir": unpacked_folder(folder_name, work_dir) if folder else "",
        "run_name": folder_name or recipe,
        "image": PYTHON_IMAGE,
        "work_dir": work_dir,
        "max_minutes": str(round(max_hours * 60)),
        "sync_seconds": str(sync_seconds),
        "region": region,
        "upload_margin": str(UPLOAD_MARGIN_MINUTES),
        "jupyterlab": JUPYTERLAB,
        "gpu_check_dir": f"{work_dir}/gpu-check",
        "gpu_visible": GPU_VISIBLE,
        "step_rate": STEP_RATE,
        "unpack_folder": UNPACK_FOLDER,
    }
    quoted = {name: shlex.quote(value) for name, value in values.items()}
    data_dir = folder is None
    for name, words in [("train_script", training_script(recipe, folder_name, work_dir)),
                        ("train_args", training_arguments(flags, work_dir, data_dir=data_dir)),
                        ("gpu_check_args", gpu_check_arguments(flags, work_dir, data_dir)),
                        ("gpu_stack", gpu_stack.requirements)]:
        quoted[name] = " ".join(shlex.quote(word) for word in words)
    return re.sub(r"\{\{(\w+)\}\}", lambda match: quoted[match.group(1)], TEMPLATE)
