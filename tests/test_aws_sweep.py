"""`python -m aws sweep`: SageMaker training jobs for variants x seeds, against moto's server on
127.0.0.1 (moto records the jobs, answers Completed at once and runs nothing)."""

import hashlib
import io
import json
import shutil
import tarfile

import boto3
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse

from condgan import folders
from condgan.commands import folder_training_parser
from condgan.hyperparameters import to_arguments
from condgan.recipes import RECIPES, training_parser

pytest_plugins = ["aws_fixtures"]
pytest.register_assert_rewrite("aws_fixtures")
from aws_fixtures import free_port  # noqa: E402
from synthetic import random_images, write_idx_pair  # noqa: E402
from test_aws_commands import (BUCKET, FOLDER_FLAGS, FOLDER_NAME, archive_members,  # noqa: E402
                               assert_nothing_in_the_account, assert_one_line_error, cli, error,
                               image_folder, recording_session, run,
                               without_tensorflow)
from test_folders import write_bad_folder  # noqa: E402

IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/"
         "tensorflow-training:2.21.0-gpu-py312-cu129-amzn2023-sagemaker")
SEEDS = (0, 1, 2)
JOBS = [f"cmp-{variant}-s{seed}" for variant in ("book", "modern") for seed in SEEDS]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "mnist-data"
    write_idx_pair(folder, random_images(20), np.arange(20, dtype=np.uint8) % 10)
    return folder


def sweep(*argv, data_dir):
    return cli("sweep", "launch", *argv, "--data-dir", str(data_dir))


def launch_comparison(data_dir, *extra):
    finished = sweep("cmp", "--recipe", "mnist", "--variants", "book", "modern", "--seeds",
                     *map(str, SEEDS), "--max-steps", "30000", *extra, data_dir=data_dir)
    assert finished.returncode == 0, finished.stderr
    return finished


def keys(prefix):
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_launch_creates_one_correct_job_per_variant_and_seed(local_aws, data):
    finished = launch_comparison(data, "--spot", "--max-hours", "3")
    assert "worst case  6 jobs x 3 h x $1.408/h = $25.34" in finished.stdout

    sagemaker = boto3.client("sagemaker")
    listed = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    assert sorted(job["TrainingJobName"] for job in listed) == sorted(JOBS)
    sweep_record = json.loads(boto3.client("s3").get_object(
        Bucket=BUCKET, Key="sweeps/cmp/sweep.json")["Body"].read())
    role = sweep_record["role"]
    for name in JOBS:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        variant, seed = name.split("-")[1], int(name.split("-s")[1])
        assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
        assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
        assert job["EnableManagedSpotTraining"] is True
        assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3 * 3600,
                                            "MaxWaitTimeInSeconds": 6 * 3600}
        assert job["CheckpointConfig"] == {
            "S3Uri": f"s3://{BUCKET}/sweeps/cmp/checkpoints/{name}",
            "LocalPath": "/opt/ml/checkpoints"}
        assert job["RoleArn"] == role
        [channel] = job["InputDataConfig"]
        assert channel["ChannelName"] == "training"
        assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/sweeps/cmp/data/"
        hyperparameters = job["HyperParameters"]
        assert hyperparameters["sagemaker_submit_directory"] == (
            f"s3://{BUCKET}/sweeps/cmp/code/project.tar.gz")
        assert hyperparameters["sagemaker_program"] == "sagemaker_train.py"
        assert to_arguments(hyperparameters)[:2] == ({"recipe": "mnist"}, 100)
        assert set(to_arguments(hyperparameters)[2]) == {
            "--max-steps", "30000", "--variant", variant, "--seed", str(seed)}
        tags = {tag["Key"]: tag["Value"] for tag in
                sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]}
        assert tags["cgan:sweep"] == "cmp" and tags["cgan:seed"] == str(seed)

    # The code and the data, once for the sweep, their checksums recorded.
    assert keys("sweeps/cmp/") == ["sweeps/cmp/code/project.tar.gz",
                                   "sweeps/cmp/data/train-images-idx3-ubyte.gz",
                                   "sweeps/cmp/data/train-labels-idx1-ubyte.gz",
                                   "sweeps/cmp/sweep.json"]
    from condgan.datasets import file_sha256
    assert sweep_record["data"]["sha256"] == {
        path.name: file_sha256(path) for path in sorted(data.iterdir())}
    code = boto3.client("s3").get_object(Bucket=BUCKET, Key="sweeps/cmp/code/project.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(code["Body"].read())) as tar:
        names = set(tar.getnames())
    assert {"sagemaker_train.py", "requirements.txt", "condgan/sagemaker_entry.py"} <= names

    # The role the sweep made may use the sweep's own prefix, no other.
    iam = boto3.client("iam")
    role_name = role.rsplit("/", 1)[1]
    policy = iam.get_role_policy(RoleName=role_name, PolicyName="sweep")["PolicyDocument"]
    actions = [[a] if isinstance(a, str) else a for a in
               (statement["Action"] for statement in policy["Statement"])]
    s3_resources = [statement["Resource"] for statement, its in zip(policy["Statement"], actions)
                    if any(action.startswith("s3:") for action in its)]
    assert s3_resources == [f"arn:aws:s3:::{BUCKET}/sweeps/cmp/*", f"arn:aws:s3:::{BUCKET}"]
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    assert "sagemaker.amazonaws.com" in json.dumps(trust)


def test_a_given_role_is_used_and_none_is_created(local_aws, data):
    role = "arn:aws:iam::123456789012:role/my-sagemaker-role"
    launch_comparison(data, "--role", role)
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=JOBS[0])
    assert job["RoleArn"] == role
    assert boto3.client("iam").list_roles(PathPrefix="/cgan/")["Roles"] == []


def model_archive(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


def evaluation(variant, seed, accuracies):
    return {"recipe": "mnist", "variant": variant, "seed": seed, "checkpoints": [
        {"step": 1000 * (number + 1), "conditional_accuracy": accuracy,
         "frechet_distance": 10 * (1 - accuracy), "diversity_ratio": 0.9}
        for number, accuracy in enumerate(accuracies)]}


def put_output(job, files):
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"sweeps/cmp/output/{job}/output/model.tar.gz",
                                  Body=model_archive(files))


def test_status_stop_fetch_and_report_follow_the_jobs_home(local_aws, data, tmp_path):
    launch_comparison(data)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"sweeps/cmp/checkpoints/{JOBS[0]}/mnist/mnist-2000.index",
                  Body=b"index")
    accuracy = {}
    for number, job in enumerate(JOBS):
        variant, seed = job.split("-")[1], int(job.split("-s")[1])
        accuracy[job] = [0.5, 0.6 + number / 100]
        put_output(job, {"mnist.pkl": b"pickle", "evaluation.json": json.dumps(
            evaluation(variant, seed, accuracy[job])).encode()})

    status = cli("sweep", "status", "cmp")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].split() == [JOBS[0], "Completed", "Completed", "step", "2000"]
    assert lines[1].split() == [JOBS[1], "Completed", "Completed", "no", "checkpoint", "yet"]

    stop = cli("sweep", "stop", "cmp")
    assert stop.returncode == 0, stop.stderr
    assert f"{JOBS[0]}: Completed already" in stop.stdout

    home = tmp_path / "home"
    fetched = cli("sweep", "fetch", "cmp", "--to", str(home))
    assert fetched.returncode == 0, fetched.stderr
    for job in JOBS:
        assert (home / job / "mnist.pkl").read_bytes() == b"pickle"

    report = cli("sweep", "report", "cmp", "--to", str(home))
    assert report.returncode == 0, report.stderr
    rows = {line.split()[0]: line.split() for line in report.stdout.splitlines() if line}
    assert rows[JOBS[0]][1:5] == ["book", "0", "2000", "60.0%"]
    book = [accuracy[job][-1] for job in JOBS[:3]]
    assert rows["book"][1] == "3"
    assert rows["book"][2:5] == [f"{np.mean(book):.1%}", "±", f"{np.std(book, ddof=1):.1%}"]
    assert (home / "report.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("../../planted.txt"),
    tarfile.TarInfo("/tmp/planted.txt"),
    "symlink",
])
def test_fetch_refuses_a_planted_archive_and_extracts_nothing(local_aws, data, tmp_path, member):
    launch_comparison(data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        good = tarfile.TarInfo("mnist.pkl")
        good.size = 6
        tar.addfile(good, io.BytesIO(b"pickle"))
        if member == "symlink":
            member = tarfile.TarInfo("evaluation.json")
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(member)
        else:
            member.size = 1
            tar.addfile(member, io.BytesIO(b"!"))
    boto3.client("s3").put_object(Bucket=BUCKET, Body=buffer.getvalue(),
                                  Key=f"sweeps/cmp/output/{JOBS[0]}/output/model.tar.gz")
    home = tmp_path / "deep" / "home"

    finished = cli("sweep", "fetch", "cmp", "--to", str(home))

    assert_one_line_error(finished, f"output/{JOBS[0]}/output/model.tar.gz holds",
                          member.name, "refused")
    assert not (home / JOBS[0]).exists()
    assert not list(tmp_path.rglob("planted.txt"))


# Every flag of run_<recipe>.py that a sweep passes on, with a value that tests its round
# trip through SageMaker's string hyperparameters (zeros included).
FLAG_VALUES = {"epochs": "3", "max_steps": "7", "batch_size": "5", "z_dim": "9",
               "learning_rate": "0.001", "beta1": "0", "save_every": "4"}
SWEEP_AXES = {"variant": ("--variants", "modern"), "seed": ("--seeds", "0")}


def test_the_round_trip_tests_cover_every_training_flag():
    parser = training_parser("mnist", RECIPES["mnist"])
    passed_on = set(vars(parser.parse_args([]))) - {"out_dir", "data_dir", "resume"}
    assert passed_on == set(FLAG_VALUES) | set(SWEEP_AXES)


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES) + sorted(SWEEP_AXES))
def test_every_flag_round_trips_through_the_jobs_hyperparameters(local_aws, data, flag):
    option, value = SWEEP_AXES.get(flag, ("--" + flag.replace("_", "-"), FLAG_VALUES.get(flag)))
    finished = sweep("flags", "--recipe", "mnist", option, value, data_dir=data)
    assert finished.returncode == 0, finished.stderr
    [job] = boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    hyperparameters = boto3.client("sagemaker").describe_training_job(
        TrainingJobName=job["TrainingJobName"])["HyperParameters"]
    assert all(isinstance(text, str) for text in hyperparameters.values())
    parser = training_parser("mnist", RECIPES["mnist"])
    on_the_instance = vars(parser.parse_args(to_arguments(hyperparameters)[2]))
    given_here = vars(parser.parse_args(["--" + flag.replace("_", "-"), value]))
    assert on_the_instance[flag] == given_here[flag] is not None


@pytest.mark.parametrize("argv, expected", [
    (["--variants", "fancy"], "argument --variants: invalid choice: 'fancy'"),
    (["--seeds"], "argument --seeds: expected at least one argument"),
    (["--seeds", "-1"], "argument --seeds: must be from 0"),
    (["--seeds", *map(str, range(11)), "--variants", "book", "modern"],
     "22 jobs (2 variants x 11 seeds) is more than --max-jobs 20"),
    (["--max-jobs", "2", "--seeds", "0", "1", "2"], "3 jobs"),
    (["--instance-type", "ml.p3.2xlarge"], "ml.p3.2xlarge is refused: its V100 (Volta)"),
    (["--instance-type", "g5.xlarge"], "g5.xlarge is not a SageMaker type"),
    (["--role", "my-role"], "argument --role: expected a role ARN"),
    (["--resume"], "--resume is not a flag of a sweep"),
    (["--out-dir", "x"], "--out-dir is the job's own"),
    (["--beta1", "1"], "argument --beta1: must lie in [0, 1)"),
    (["--evaluate-per-class", "1"], "expected 0 (no evaluation) or a whole number of at least 2"),
    (["--max-hours", "0.1"], "argument --max-hours: must be at least 0.5"),
    (["--region", "mars-north-1"], "knows no SageMaker TensorFlow image in mars-north-1"),
])
def test_a_bad_request_fails_before_any_aws_call(monkeypatch, tmp_path, data, argv, expected):
    # Any AWS request would go to a closed port, and end in another error than the request's.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert_one_line_error(sweep("cmp", "--recipe", "mnist", *argv, data_dir=data), expected)


@pytest.mark.parametrize("name, expected", [
    ("my_sweep", "sweep name 'my_sweep': use letters, digits and dashes"),
    ("x-", "sweep name 'x-'"),
    ("a" * 60, f"job name {'a' * 60}-book-s0 has 68 characters, more than SageMaker's 63"),
])
def test_a_bad_name_fails_before_any_aws_call(monkeypatch, tmp_path, data, name, expected):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert_one_line_error(sweep(name, "--recipe", "mnist", data_dir=data), expected)


def fail_the_third(operation, answer):
    """A session whose third call of `operation` gets `answer`, as AWS would send it; the
    other calls reach moto."""
    session, calls = boto3.Session(), []

    def answer_third(**_):
        calls.append(1)
        if len(calls) == 3:
            return AWSResponse("https://example.invalid", 400, {}, None), answer
        return None
    session.events.register(f"before-call.{operation}", answer_third)
    return session


def test_a_launch_that_fails_part_way_leaves_no_upload_or_role(local_aws, data):
    session = fail_the_third("sagemaker.CreateTrainingJob", error(
        "ResourceLimitExceeded", "The account-level service limit for ml.g5.xlarge is 2"))
    status, printed, errors = run("sweep", "launch", "cmp", "--recipe", "mnist", "--seeds",
                                  "0", "1", "2", "--data-dir", str(data), session=session)
    assert status == 1
    assert len(errors.splitlines()) == 1
    assert "ResourceLimitExceeded" in errors
    assert f"deleted s3://{BUCKET}/sweeps/cmp/" in errors
    assert "deleted the role cgan-sweep-cmp" in errors
    # moto cannot stop a job: the two it made are named, for the console.
    for job in ("cmp-book-s0", "cmp-book-s1"):
        assert f"job {job} still runs" in errors
    assert keys("sweeps/") == []
    assert boto3.client("iam").list_roles(PathPrefix="/cgan/")["Roles"] == []


def test_a_stop_that_aws_refuses_is_one_line_naming_the_jobs(local_aws, data):
    launch_comparison(data)
    session = boto3.Session()  # the jobs still run (moto's finish at once)
    session.events.register("after-call.sagemaker.DescribeTrainingJob",
                            lambda parsed, **_: parsed.update(TrainingJobStatus="InProgress"))
    status, _, errors = run("sweep", "stop", "cmp", session=session)
    assert status == 1
    assert len(errors.splitlines()) == 1
    assert "Could not stop 6 of the sweep's jobs" in errors and JOBS[0] in errors


def test_a_sweep_name_is_used_once(local_aws, data):
    launch_comparison(data)
    finished = sweep("cmp", "--recipe", "mnist", data_dir=data)
    assert_one_line_error(finished, "A sweep cmp exists already")
    assert len(boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]) == 6



def test_the_sweep_commands_import_no_tensorflow(local_aws, data, tmp_path, monkeypatch):
    without_tensorflow(tmp_path, monkeypatch)
    launch_comparison(data)
    for job in JOBS:
        put_output(job, {"evaluation.json": json.dumps(evaluation("book", 0, [0.5])).encode()})
    for command in ("status", "stop", "fetch", "report"):
        finished = cli("sweep", command, "cmp", *(["--to", str(tmp_path / "home")]
                                                  if command in ("fetch", "report") else []))
        assert finished.returncode == 0, finished.stderr


# ------------------------------------------------------------------ sweep launch --folder DIR

def test_a_folder_sweep_reads_the_folders_one_archive_in_every_job(local_aws, tmp_path):
    folder = image_folder(tmp_path)
    finished = cli("sweep", "launch", "fol", "--folder", str(folder), "--seeds", "0", "1",
                   "--evaluate-per-class", "0", *FOLDER_FLAGS)
    assert finished.returncode == 0, finished.stderr
    assert f"Sweep fol: the image folder {FOLDER_NAME}, 2 jobs" in finished.stdout
    [key] = keys("folders/")
    body, members = archive_members(key)
    sha256 = hashlib.sha256(body).hexdigest()
    assert key == f"folders/{sha256}.tar"
    assert sorted(members) == sorted(folders.scan(folder).manifest)
    assert keys("sweeps/fol/") == ["sweeps/fol/code/project.tar.gz", "sweeps/fol/sweep.json"]

    sagemaker = boto3.client("sagemaker")
    for seed in (0, 1):
        job = sagemaker.describe_training_job(TrainingJobName=f"fol-book-s{seed}")
        [channel] = job["InputDataConfig"]
        assert channel["ChannelName"] == "training"
        assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{key}"
        source, per_class, arguments = to_arguments(job["HyperParameters"])
        assert source == {"folder": FOLDER_NAME, "folder-sha256": sha256}
        on_the_instance = folder_training_parser("cgan.py train").parse_args(
            ["/opt/ml/input/folders/x", *arguments])
        assert (on_the_instance.size, on_the_instance.channels, on_the_instance.skip_unreadable,
                on_the_instance.max_steps, on_the_instance.seed) == (16, 3, True, 5, seed)
    record = json.loads(boto3.client("s3").get_object(
        Bucket=BUCKET, Key="sweeps/fol/sweep.json")["Body"].read())
    assert record["data"] == {"uri": f"s3://{BUCKET}/{key}", "sha256": sha256}
    policy = boto3.client("iam").get_role_policy(RoleName="cgan-sweep-fol", PolicyName="sweep")
    assert {"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/{key}"} in policy["PolicyDocument"]["Statement"]

    # `sweep status` finds the jobs' checkpoints in their folder-named run folders.
    boto3.client("s3").put_object(
        Bucket=BUCKET, Body=b"index",
        Key=f"sweeps/fol/checkpoints/fol-book-s0/{FOLDER_NAME}/{FOLDER_NAME}-20.index")
    status = cli("sweep", "status", "fol")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].split()[-2:] == ["step", "20"]

    # Another sweep of the same files reads the same object: nothing is uploaded again.
    calls = []
    status, _, errors = run("sweep", "launch", "again", "--folder", str(folder),
                            "--evaluate-per-class", "0", *FOLDER_FLAGS,
                            session=recording_session(calls))
    assert status == 0, errors
    assert [operation for operation, called in calls if called == key] == ["HeadObject"]
    job = sagemaker.describe_training_job(TrainingJobName="again-book-s0")
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{key}"


@pytest.mark.parametrize("case, expected", [
    ("text", "readme.png: unreadable (not an image Pillow reads)"),
    ("small", "a: 1 held-out images; the jobs' evaluate needs at least 2 of each class"),
    ("loose", "loose holds loose images, no classes: evaluate judges classes, so pass "
              "--evaluate-per-class 0"),
])
def test_a_bad_folder_sweep_is_refused_before_any_aws_call(local_aws, tmp_path, case, expected):
    folder = write_bad_folder(tmp_path, case)[0] if case == "text" else image_folder(tmp_path)
    if case == "loose":
        pictures = sorted(folder.rglob("*.png"))
        folder = tmp_path / "loose"
        folder.mkdir()
        for number, picture in enumerate(pictures):
            shutil.copy(picture, folder / f"{number}.png")
    finished = cli("sweep", "launch", "fol", "--folder", str(folder))
    assert_one_line_error(finished, expected)
    assert_nothing_in_the_account()
