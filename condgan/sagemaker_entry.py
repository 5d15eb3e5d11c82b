"""What a SageMaker training job of `python -m aws sweep` runs: one recipe or image folder,
resumable, judged.

SageMaker lays out /opt/ml (or $CGAN_SAGEMAKER_ROOT, for tests) and runs this in the TensorFlow
training image. It

- reads the job's hyperparameters (/opt/ml/input/config/hyperparameters.json, strings, else
  $SM_HPS) back into run_<recipe>.py's or `cgan.py train`'s flags (condgan/hyperparameters.py);
- for an image folder, finds its archive in the `training` channel, checks its SHA-256 and
  unpacks it safely into /opt/ml/input/folders/<the folder's name>/ (condgan/archives.py);
- trains with the data of the `training` channel ($SM_CHANNEL_TRAINING), or that folder, into
  the run folder /opt/ml/checkpoints/<recipe or folder name>/, which SageMaker copies to the
  job's CheckpointConfig S3 URI and back: a job that a Spot interruption restarted finds its
  run there and resumes it, at the step of its newest checkpoint;
- on SIGTERM (a Spot interruption, a stop) passes it on to training, which saves a checkpoint
  after the step it is in (seconds, well within SageMaker's 120 s), and exits 143;
- at the end writes the pickle, the pictures, the run's record and the evaluate figures of
  every checkpoint the run keeps (evaluation.json) to /opt/ml/model, which SageMaker packs
  into the job's model.tar.gz;
- when training fails, writes its last line to /opt/ml/output/failure: the job's
  FailureReason, which `python -m aws sweep status` shows.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from condgan.archives import ArchiveError, unpack_folder
from condgan.hyperparameters import FOLDER, FOLDER_SHA256, RECIPE, to_arguments

ROOT_VARIABLE = "CGAN_SAGEMAKER_ROOT"
CHANNEL = "training"
EVALUATION_FILE = "evaluation.json"
STOPPED = 128 + signal.SIGTERM  # the exit status of a job stopped by SIGTERM
# Training runs in a child process, so that this one hears SIGTERM whatever training does.
TRAIN_RECIPE = "import sys; from condgan.commands import train_recipe; train_recipe(sys.argv[1], sys.argv[2:])"
TRAIN_FOLDER = "import sys; from condgan.commands import train_folder; train_folder(sys.argv[1:])"


def main():
    root = Path(os.environ.get(ROOT_VARIABLE, "/opt/ml"))
    source, per_class, arguments = to_arguments(hyperparameters(root))
    data_dir = os.environ.get(f"SM_CHANNEL_{CHANNEL.upper()}", str(root / "input" / "data" / CHANNEL))
    checkpoints = root / "checkpoints"
    if FOLDER in source:
        try:
            folder = unpacked_folder(root, data_dir, source[FOLDER], source[FOLDER_SHA256])
        except ArchiveError as error:
            print(error, file=sys.stderr)
            return failed(root, str(error), 2)
        run_name, command = source[FOLDER], [TRAIN_FOLDER, str(folder)]
    else:
        run_name, command = source[RECIPE], [TRAIN_RECIPE, source[RECIPE], "--data-dir", data_dir]
    run_dir = checkpoints / run_name
    resume = ["--resume"] if any(run_dir.glob("*.index")) else []
    status, last_line = train([sys.executable, "-c", *command, *arguments, "--out-dir",
                               str(checkpoints), *resume])
    if status == STOPPED:
        return status
    if status:
        return failed(root, last_line or f"training ended with exit status {status}", status)
    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    copy_results(run_dir, model_dir)
    if per_class:
        evaluation = evaluate_checkpoints(run_dir, data_dir, per_class)
        (model_dir / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2))
    return 0


def failed(root, reason, status):
    """Writes the file that SageMaker shows as the job's FailureReason (`sweep status`)."""
    failure = root / "output" / "failure"
    failure.parent.mkdir(parents=True, exist_ok=True)
    failure.write_text(reason)
    return status


def unpacked_folder(root, channel, name, sha256):
    """The image folder of the channel's archive (SHA256.tar, wherever SageMaker put it in the
    channel), checked and unpacked into root/input/folders/NAME: anew at each start, so that a
    restarted job trains on the archive's files and nothing else."""
    archive = next(Path(channel).rglob(f"{sha256}.tar"), None)
    if archive is None:
        raise ArchiveError(f"the training channel {channel} holds no {sha256}.tar, the image "
                           "folder's archive the job was launched with")
    folder = root / "input" / "folders" / name
    if folder.exists():
        shutil.rmtree(folder)
    unpack_folder(archive, sha256, folder)
    return folder


def hyperparameters(root):
    path = root / "input" / "config" / "hyperparameters.json"
    if path.exists():
        return json.loads(path.read_text())
    return json.loads(os.environ.get("SM_HPS", "{}"))


def train(command):
    """Runs training, its stderr passed through; returns the exit status to end with (0: it
    finished) and the last line training wrote on stderr."""
    stopped, children = [], []

    def pass_on(signum, frame):
        stopped.append(signum)
        for child in children:
            child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, pass_on)
    try:
        children.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                          errors="replace"))
        if stopped:  # before training started: it stops at once, at the step it resumes
            children[0].send_signal(signal.SIGTERM)
        last_line = ""
        for line in children[0].stderr:  # the progress bar's updates end in \r
            sys.stderr.write(line)
            said = line.strip().split("\r")[-1].strip()
            last_line = said or last_line
        status = children[0].wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        print(f"stopped by SIGTERM: training saved a checkpoint in the run folder (exit status "
              f"{status}); the job resumes from it when it starts again", file=sys.stderr)
        return STOPPED, last_line
    return status, last_line


def copy_results(run_dir, model_dir):
    """Everything of the run folder but its checkpoints (those stay in the checkpoint URI)."""
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and not is_checkpoint_file(path.name) and not path.name.startswith("."):
            shutil.copy2(path, model_dir / path.name)


def is_checkpoint_file(name):
    return ".index" in name or ".data-" in name or name == "checkpoint" or ".tempstate" in name


def evaluate_checkpoints(run_dir, data_dir, per_class):
    """The evaluate figures of each checkpoint the run keeps, oldest first, with the run's
    recipe, variant and seed, as `python -m aws sweep report` reads them."""
    from condgan import checkpoints
    from condgan.evaluate import evaluate_model
    from condgan.gan import CGan
    from condgan.runs import read_json
    record = read_json(run_dir / "run.json")
    config = read_json(run_dir / "config.json")
    judged = []
    for prefix in reversed(checkpoints.checkpoint_prefixes(run_dir)):
        with tempfile.TemporaryDirectory() as alone:  # a folder that holds this checkpoint only
            for path in [run_dir / "config.json", *Path(prefix).parent.glob(Path(prefix).name + ".*")]:
                os.symlink(path.resolve(), Path(alone) / path.name)
            gan = CGan.from_checkpoint(alone, generator_name=config.get("checkpoint_name"))
            figures = evaluate_model(gan, data_dir, per_class, seed=record.get("seed", 0))
            gan.close()
        step = int(prefix.rsplit("-", 1)[1])
        judged.append({"step": step, **{name: value for name, value in figures.items()
                                        if name != "per_class"}})
    return {"recipe": record["recipe"], "seed": record.get("seed"),
            "variant": config.get("training", {}).get("variant",
                                                       config.get("model", {}).get("variant")),
            "checkpoints": judged}


if __name__ == "__main__":
    sys.exit(main())
