"""python -m aws sweep: many runs at once (variants x seeds) as SageMaker training jobs.

One sweep is a name and one S3 prefix, s3://BUCKET/sweeps/NAME/:

    code/project.tar.gz    the project, packed once (the jobs run condgan/sagemaker_entry.py)
    data/                  the dataset, uploaded once, the `training` channel of every job
                           (an image folder is instead the one archive s3://BUCKET/folders/
                           SHA256.tar, shared by every run and sweep of the same files)
    checkpoints/JOB/       each job's run folder (its CheckpointConfig), kept across Spot restarts
    output/JOB/output/model.tar.gz   what each job leaves: pickle, pictures, evaluation.json
    sweep.json             the record: the jobs, their settings, the data's checksums

Everything is checked before the first AWS call; a launch that fails part-way stops the jobs
it started and deletes its uploads and its role.
"""

import argparse
import json
import os
import re
import statistics
import tempfile
import tomllib
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

from botocore.exceptions import ClientError

from condgan import archives
from condgan.datasets import file_sha256
from condgan.hyperparameters import FOLDER, FOLDER_SHA256, RECIPE, to_hyperparameters
from condgan.recipes import RECIPES

from . import catalog, resources, storage
from .catalog import MANAGED_TAG
from .cloud import CloudError, error_code

JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
MAX_JOB_NAME = 63
SWEEP_TAG = "cgan:sweep"
CHANNEL = "training"  # the entry point reads $SM_CHANNEL_TRAINING
CHECKPOINT_PATH = "/opt/ml/checkpoints"
# A Spot job may wait for capacity as long again as it may run.
SPOT_WAIT_FACTOR = 2
VOLUME_GB = 30
# The file that SageMaker's training toolkit runs (its `sagemaker_program`), at the top of the
# packed project so that `condgan` imports from beside it.
PROGRAM = "sagemaker_train.py"
LAUNCHER = "import sys\nfrom condgan.sagemaker_entry import main\nsys.exit(main())\n"
FINISHED = ("Completed", "Failed", "Stopped")


def sweep_prefix(name):
    return f"sweeps/{name}"


def job_name(sweep, variant, seed):
    return f"{sweep}-{variant}-s{seed}"


# ------------------------------------------------------------------------------- checks

def plan(options, region):
    """The jobs of a sweep launch, (name, variant, seed), once the request is checked: all
    of it before any AWS call."""
    if not JOB_NAME.fullmatch(options.name):
        raise CloudError(f"sweep name {options.name!r}: use letters, digits and dashes, "
                         "starting and ending with a letter or digit (it names the jobs).")
    jobs = [(job_name(options.name, variant, seed), variant, seed)
            for variant, seed in product(dict.fromkeys(options.variants),
                                         dict.fromkeys(options.seeds))]
    if len(jobs) > options.max_jobs:
        raise CloudError(f"{len(jobs)} jobs ({len(set(options.variants))} variants x "
                         f"{len(set(options.seeds))} seeds) is more than --max-jobs "
                         f"{options.max_jobs}: raise it if you mean it.")
    for name, _, _ in jobs:
        if len(name) > MAX_JOB_NAME:
            raise CloudError(f"job name {name} has {len(name)} characters, more than "
                             f"SageMaker's {MAX_JOB_NAME}: choose a shorter sweep name.")
    if options.image is None and catalog.sagemaker_image(region) is None:
        raise CloudError(f"The tool knows no SageMaker TensorFlow image in "
                         f"{region}: give one with --image, or use one of "
                         f"{', '.join(catalog.DLC_REGIONS)}.")
    return jobs


def sagemaker_instance_type(text):
    """--instance-type of a sweep (argparse type)."""
    if not text.startswith("ml."):
        raise argparse.ArgumentTypeError(f"{text} is not a SageMaker type: they start with ml. "
                                         f"(such as {catalog.SAGEMAKER_DEFAULT_INSTANCE_TYPE})")
    family = text.split(".")[1] if text.count(".") >= 2 else ""
    refused = catalog.REFUSED_SAGEMAKER_FAMILIES.get(f"ml.{family}")
    if refused:
        raise argparse.ArgumentTypeError(
            f"{text} is refused: its {refused} GPU is one that NVIDIA froze from CUDA 12.8 on, "
            f"and the pinned image ({catalog.SAGEMAKER_IMAGE_STACK}) was never checked on "
            f"it; use {catalog.SAGEMAKER_DEFAULT_INSTANCE_TYPE} (cheaper, and current)")
    return text


def data_folder(options):
    """The local dataset folder to upload: --data-dir, else $CGAN_DATA_DIR/<dataset>."""
    dataset = RECIPES[options.recipe].dataset
    folder = options.data_dir or (os.environ.get("CGAN_DATA_DIR") and
                                  str(Path(os.environ["CGAN_DATA_DIR"]) / dataset))
    if not folder or not Path(folder).is_dir():
        raise CloudError(f"A sweep uploads its data once for all its jobs: give the {dataset} "
                         "folder with --data-dir (or set CGAN_DATA_DIR).")
    files = sorted(path for path in Path(folder).rglob("*") if path.is_file())
    if not files:
        raise CloudError(f"--data-dir {folder} holds no file to upload.")
    return Path(folder), files


def check_judgeable(folder):
    """The jobs' evaluate figures of a folder model test its judge on the folder's held-out
    images: evaluate (Judge.for_folder) needs classes, and 2 held-out images of each."""
    if not folder.held_out:
        raise CloudError(f"{folder.name} holds loose images, no classes: evaluate judges "
                         "classes, so pass --evaluate-per-class 0.")
    name, count = min(folder.held_out.items(), key=lambda item: item[1])
    if count < 2:
        raise CloudError(f"{folder.name}/{name}: {count} held-out images; the jobs' evaluate "
                         "needs at least 2 of each class (a class of 15 images or more): add "
                         "images, or pass --evaluate-per-class 0.")


# ------------------------------------------------------------------------------- launch

def launch(cloud, options):
    jobs = plan(options, cloud.region)
    with tempfile.TemporaryDirectory() as scratch:
        if options.folder is not None:  # checked and packed here, before any AWS call
            folder, data = storage.pack_image_folder(options.folder, options.training, scratch), None
            if options.evaluate_per_class:
                check_judgeable(folder)
        else:
            folder, data = None, data_folder(options)
        image = options.image or catalog.sagemaker_image(cloud.region)
        show_plan(cloud, options, jobs, image, folder)

        bucket = options.bucket or resources.default_bucket(cloud)
        prefix = sweep_prefix(options.name)
        resources.ensure_bucket(cloud, bucket)
        if storage.list_objects(cloud, bucket, prefix):
            raise CloudError(f"A sweep {options.name} exists already (s3://{bucket}/{prefix}/): "
                             "choose another name, or see `python -m aws sweep status "
                             f"{options.name}`.")
        made = {"uploads": False, "role": None, "jobs": []}
        try:
            upload_code(cloud, bucket, prefix, options.folder or data[0], made)
            if folder:
                channel = storage.upload_once(cloud, folder, bucket)
                source = {FOLDER: folder.name, FOLDER_SHA256: folder.sha256}
                data_record = {"uri": channel, "sha256": folder.sha256}
            else:
                channel = f"s3://{bucket}/{prefix}/data/"
                source = {RECIPE: options.recipe}
                data_record = {"uri": f"s3://{bucket}/{prefix}/data",
                               "sha256": upload_data(cloud, bucket, prefix, *data)}
            role = options.role or create_role(cloud, options.name, bucket, prefix, made,
                                               folder and folder.key)
            for name, variant, seed in jobs:
                cloud.call("sagemaker", "create_training_job", **job_request(
                    cloud, options, bucket, prefix, image, role, name, variant, seed, source,
                    channel))
                made["jobs"].append(name)
                cloud.out(f"  created   {name}")
            cloud.call("s3", "put_object", Bucket=bucket, Key=f"{prefix}/sweep.json",
                       IfNoneMatch="*", ContentType="application/json", Body=json.dumps({
                           "sweep": options.name, "recipe": options.recipe,
                           "folder": folder and folder.name,
                           "run_folder": folder.name if folder else options.recipe,
                           "region": cloud.region, "image": image,
                           "instance_type": options.instance_type, "spot": options.spot,
                           "max_hours": options.max_hours, "role": role,
                           "training": {k: str(v) for k, v in options.training.items()},
                           "jobs": [{"job": name, "variant": variant, "seed": seed}
                                    for name, variant, seed in jobs],
                           "data": data_record,
                           "launched": datetime.now(timezone.utc).isoformat()}, indent=2))
        except (CloudError, ClientError, OSError) as error:
            raise CloudError(f"{one_line(error)}; {undo(cloud, bucket, prefix, made)}") from None
    cloud.out(f"Sweep {options.name}: {len(jobs)} jobs in {cloud.region}; next: "
              f"python -m aws sweep status {options.name}")


def one_line(error):
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"AWS refused {error.operation_name}: {details.get('Code')}: {details.get('Message')}"
    return str(error)


def short(text, length=160):
    """A message on one line, no longer than `length` (an error page says little more)."""
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length - 3] + "..."


def show_plan(cloud, options, jobs, image, folder):
    known = catalog.SAGEMAKER_INSTANCE_TYPES.get(options.instance_type)
    out = cloud.out
    trains = f"the image folder {folder.name}" if folder else options.recipe
    out(f"Sweep {options.name}: {trains}, {len(jobs)} jobs "
        f"({', '.join(dict.fromkeys(options.variants))} x seeds "
        f"{', '.join(map(str, dict.fromkeys(options.seeds)))})")
    for note in folder.notes if folder else []:
        out(f"  folder      {note}")
    out(f"  image       {image} ({catalog.SAGEMAKER_IMAGE_STACK})")
    out(f"  machine     {options.instance_type}{', spot' if options.spot else ''}, at most "
        f"{options.max_hours:g} h per job")
    if known:
        worst = len(jobs) * options.max_hours * known.on_demand_usd_per_hour
        out(f"  worst case  {len(jobs)} jobs x {options.max_hours:g} h x "
            f"${known.on_demand_usd_per_hour:.3f}/h = ${worst:.2f} on-demand (us-east-1 list "
            f"price of {catalog.SAGEMAKER_PRICES_READ}; spot costs less)")


def upload_code(cloud, bucket, prefix, data_folder, made):
    """The project, packed once (without the data folder, if it is inside it)."""
    requirements = "\n".join(dependency for dependency in tomllib.loads(
        (storage.PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if not dependency.startswith("tensorflow"))  # the image's own TensorFlow 2.21
    made["uploads"] = True
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "project.tar.gz"
        count = storage.pack_project(archive, skip=data_folder, extra={
            PROGRAM: LAUNCHER, "requirements.txt": requirements + "\n"})
        cloud.upload_file(archive, bucket, f"{prefix}/code/project.tar.gz",
                          what=f"<the project: {count} files>")


def upload_data(cloud, bucket, prefix, folder, data_files):
    """A recipe's data files, once for the sweep; returns their checksums."""
    checksums = {}
    for path in data_files:
        relative = path.relative_to(folder).as_posix()
        checksums[relative] = file_sha256(path)
        cloud.upload_file(path, bucket, f"{prefix}/data/{relative}", what=str(path))
    return checksums


def role_name(sweep):
    return f"cgan-sweep-{sweep}"[:64]


def create_role(cloud, sweep, bucket, prefix, made, folder_key=None):
    """A SageMaker execution role that may use the sweep's own S3 prefix, and read its image
    folder's archive (`folder_key`), and nothing else of the bucket; it pulls the image and
    writes the job's logs."""
    name = role_name(sweep)
    arn = cloud.call("iam", "create_role", RoleName=name, Path=resources.IAM_PATH,
                     Tags=resources.tags(**{SWEEP_TAG: sweep}),
                     Description=f"cgan sweep {sweep}: SageMaker training jobs",
                     AssumeRolePolicyDocument=json.dumps({
                         "Version": "2012-10-17", "Statement": [{
                             "Effect": "Allow", "Action": "sts:AssumeRole",
                             "Principal": {"Service": "sagemaker.amazonaws.com"}}]}),
                     assume={"Role": {"Arn": f"<arn of {name}>"}})["Role"]["Arn"]
    made["role"] = name
    cloud.call("iam", "put_role_policy", RoleName=name, PolicyName="sweep",
               PolicyDocument=json.dumps(role_policy(bucket, prefix, folder_key)))
    return arn


def role_policy(bucket, prefix, folder_key=None):
    folder = ([{"Effect": "Allow", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{folder_key}"}] if folder_key else [])
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*"},
        *folder,
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                       "ecr:GetDownloadUrlForLayer",
                                       "ecr:BatchCheckLayerAvailability"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
                                       "logs:PutLogEvents", "logs:DescribeLogStreams",
                                       "cloudwatch:PutMetricData"], "Resource": "*"}]}


def job_request(cloud, options, bucket, prefix, image, role, name, variant, seed, source,
                channel):
    """One job: `source` is what it trains on (hyperparameters.to_hyperparameters), `channel`
    the S3 URI of its data (a prefix, or the image folder's one archive)."""
    flags = {**options.training, "variant": variant, "seed": seed}
    hyperparameters = {
        **to_hyperparameters(source, flags, options.evaluate_per_class),
        "sagemaker_program": PROGRAM,
        "sagemaker_submit_directory": f"s3://{bucket}/{prefix}/code/project.tar.gz",
        "sagemaker_region": cloud.region}
    seconds = round(options.max_hours * 3600)
    stopping = {"MaxRuntimeInSeconds": seconds}
    if options.spot:
        stopping["MaxWaitTimeInSeconds"] = SPOT_WAIT_FACTOR * seconds
    return dict(
        TrainingJobName=name, HyperParameters=hyperparameters, RoleArn=role,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        InputDataConfig=[{"ChannelName": CHANNEL, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": channel,
            "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/{prefix}/output"},
        ResourceConfig={"InstanceType": options.instance_type, "InstanceCount": 1,
                        "VolumeSizeInGB": VOLUME_GB},
        StoppingCondition=stopping, EnableManagedSpotTraining=options.spot,
        CheckpointConfig={"S3Uri": f"s3://{bucket}/{prefix}/checkpoints/{name}",
                          "LocalPath": CHECKPOINT_PATH},
        Tags=[{"Key": MANAGED_TAG, "Value": "true"}, {"Key": SWEEP_TAG, "Value": options.name},
              {"Key": "cgan:variant", "Value": variant}, {"Key": "cgan:seed", "Value": str(seed)}])


def undo(cloud, bucket, prefix, made):
    """Stops the jobs a failed launch started and deletes what it uploaded and created; says
    what it did, and what it could not do."""
    done, left = [], []
    for name in made["jobs"]:
        try:
            cloud.call("sagemaker", "stop_training_job", TrainingJobName=name)
            done.append(f"stopped {name}")
        except ClientError as error:
            left.append(f"job {name} still runs ({error_code(error) or 'no answer'}): stop it in "
                        "the SageMaker console")
    if made["uploads"]:
        doomed = [{"Key": item["Key"]} for item in storage.list_objects(cloud, bucket, prefix)]
        for start in range(0, len(doomed), 1000):
            cloud.call("s3", "delete_objects", Bucket=bucket,
                       Delete={"Objects": doomed[start:start + 1000]})
        done.append(f"deleted s3://{bucket}/{prefix}/")
    if made["role"]:
        cloud.call("iam", "delete_role_policy", RoleName=made["role"], PolicyName="sweep")
        cloud.call("iam", "delete_role", RoleName=made["role"])
        done.append(f"deleted the role {made['role']}")
    return ", ".join(done + left) or "nothing had been created"


# ------------------------------------------------------------------ following a sweep

def record(cloud, options):
    bucket = options.bucket or resources.default_bucket(cloud)
    text = storage.read_text(cloud, bucket, f"{sweep_prefix(options.name)}/sweep.json")
    if text is None:
        raise CloudError(f"No sweep {options.name} in s3://{bucket}: check its name (or "
                         "launched with another --region or --bucket?).")
    return bucket, json.loads(text)


def describe(cloud, job):
    return cloud.call("sagemaker", "describe_training_job", TrainingJobName=job)


def status(cloud, options):
    bucket, sweep = record(cloud, options)
    prefix = sweep_prefix(options.name)
    run_folder = sweep.get("run_folder", sweep["recipe"])  # sweeps of before folders: a recipe
    for job in sweep["jobs"]:
        described = describe(cloud, job["job"])
        names = [item["Key"].rsplit("/", 1)[1] for item in storage.list_objects(
            cloud, bucket, f"{prefix}/checkpoints/{job['job']}/{run_folder}")]
        step = storage.newest_checkpoint_step(names)
        failure = described.get("FailureReason")
        cloud.out(f"{job['job']:<40} {described['TrainingJobStatus']:<11} "
                  f"{described.get('SecondaryStatus', '-'):<12} "
                  f"{'no checkpoint yet' if step is None else f'step {step}'}"
                  + (f" ({' '.join(failure.split())})" if failure else ""))


def stop(cloud, options):
    _, sweep = record(cloud, options)
    refused = {}  # the reason -> the jobs it stopped
    for job in sweep["jobs"]:
        state = describe(cloud, job["job"])["TrainingJobStatus"]
        if state in FINISHED:
            cloud.out(f"{job['job']}: {state} already")
            continue
        try:
            cloud.call("sagemaker", "stop_training_job", TrainingJobName=job["job"])
            cloud.out(f"{job['job']}: stopping (it saves a checkpoint first)")
        except ClientError as error:
            refused.setdefault(short(one_line(error)), []).append(job["job"])
    if refused:
        raise CloudError(f"Could not stop {sum(map(len, refused.values()))} of the sweep's "
                         "jobs: " + "; ".join(f"{', '.join(jobs)}: {reason}"
                                               for reason, jobs in refused.items()))


def fetch(cloud, options):
    """Each finished job's model.tar.gz, extracted safely into FOLDER/JOB/."""
    _, sweep = record(cloud, options)
    folder = Path(options.to or Path("runs") / "sweeps" / options.name)
    for job in sweep["jobs"]:
        name, target = job["job"], folder / job["job"]
        described = describe(cloud, name)
        artifact = described.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if target.exists():
            cloud.out(f"{name}: kept {target}/, fetched before")
            continue
        if described["TrainingJobStatus"] != "Completed" or not artifact:
            cloud.out(f"{name}: {described['TrainingJobStatus']}, nothing to fetch yet")
            continue
        bucket, key = artifact.removeprefix("s3://").split("/", 1)
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "model.tar.gz"
            try:
                cloud.download_file(bucket, key, archive)
            except ClientError as error:
                raise CloudError(f"{name}: cannot download {artifact} "
                                 f"({error_code(error)})") from None
            try:
                archives.extract_safely(archive, target, artifact)
            except archives.ArchiveError as error:
                raise CloudError(str(error)) from None
        cloud.out(f"{name}: {target}/")


# ------------------------------------------------------------------------------ report

FIGURES = (("conditional_accuracy", "cond. acc.", "{:.1%}"),
           ("frechet_distance", "Fréchet", "{:.2f}"),
           ("diversity_ratio", "diversity", "{:.2f}"))


def report(cloud, options):
    """The table of the jobs' last evaluate figures and their mean and spread per variant, and
    report.png: conditional accuracy against steps, a line per job. From the fetched folders
    (`sweep fetch`): no AWS call."""
    folder = Path(options.to or Path("runs") / "sweeps" / options.name)
    judged = []
    for path in sorted(folder.glob("*/evaluation.json")):
        try:
            evaluation = json.loads(path.read_text())
            evaluation["checkpoints"][-1]["step"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise CloudError(f"{path} is not an evaluation of the entry point ({error}).") from None
        judged.append((path.parent.name, evaluation))
    if not judged:
        raise CloudError(f"No {folder}/*/evaluation.json: fetch the sweep first "
                         f"(`python -m aws sweep fetch {options.name}`).")
    out = cloud.out
    header = f"{'job':<40} {'variant':<8} {'seed':>5} {'step':>7} " + " ".join(
        f"{title:>10}" for _, title, _ in FIGURES)
    out(header)
    for job, evaluation in judged:
        last = evaluation["checkpoints"][-1]
        out(f"{job:<40} {evaluation['variant']:<8} {evaluation['seed']:>5} {last['step']:>7} "
            + " ".join(f"{form.format(last[key]):>10}" for key, _, form in FIGURES))
    out("")
    out(f"{'variant':<8} {'jobs':>4}  " + "  ".join(f"{title + ' mean ± sd':>22}"
                                                 for _, title, _ in FIGURES))
    for variant in dict.fromkeys(evaluation["variant"] for _, evaluation in judged):
        lasts = [e["checkpoints"][-1] for _, e in judged if e["variant"] == variant]
        cells = []
        for key, _, form in FIGURES:
            values = [last[key] for last in lasts]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{form.format(statistics.fmean(values))} ± {form.format(spread)}")
        out(f"{variant:<8} {len(lasts):>4}  " + "  ".join(f"{cell:>22}" for cell in cells))
    plot = folder / "report.png"
    plot_accuracy(judged, plot)
    out(f"\nConditional accuracy against steps, a line per job: {plot}")


def plot_accuracy(judged, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4))
    for job, evaluation in judged:
        steps = [c["step"] for c in evaluation["checkpoints"]]
        axes.plot(steps, [c["conditional_accuracy"] for c in evaluation["checkpoints"]],
                  marker="o", label=job)
    axes.set_xlabel("step")
    axes.set_ylabel("conditional accuracy")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


COMMANDS = {"launch": launch, "status": status, "stop": stop, "fetch": fetch, "report": report}
