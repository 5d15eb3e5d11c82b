"""Every `python -m aws` command, against moto's server on 127.0.0.1 (never the real AWS)."""

import base64
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from condgan import folders
from condgan.aws.__main__ import main
from condgan.aws.resources import MANAGED
from condgan.recipes import RECIPES, training_parser

pytest_plugins = ["aws_fixtures"]  # moto's server, and an environment sealed off from AWS
pytest.register_assert_rewrite("aws_fixtures")
from aws_fixtures import OPEN_DRIVER_NEW, free_port  # noqa: E402 (after the line above)
from test_aws_bootstrap import bash_array  # noqa: E402
from test_folders import write_bad_folder, write_folder  # noqa: E402
from test_recipes import command  # noqa: E402

MY_ADDRESS = "203.0.113.7/32"
WORLD = ("0.0.0.0/0", "::/0")
BUCKET = "cgan-runs-123456789012-us-east-1"


def run(*argv, session=None):
    """Runs the command line in this process; returns its exit status, what it printed,
    and its errors (stderr's lines)."""
    printed, errors = [], []
    status = main(list(argv), session=session, out=printed.append, err=errors.append)
    return status, "\n".join(printed), "\n".join(errors)


def cli(*argv, **options):
    """Runs `python -m condgan.aws` as a user would, in this test's environment."""
    return subprocess.run([sys.executable, "-m", "condgan.aws", *argv], capture_output=True,
                          text=True, timeout=120, **options)


def assert_one_line_error(finished, *expected):
    assert finished.returncode != 0, finished.stdout
    assert "Traceback" not in finished.stderr
    assert "error" not in finished.stdout.lower()
    assert len(finished.stderr.splitlines()) == 1, finished.stderr
    for text in expected:
        assert text in finished.stderr


LAUNCH = ("launch", "--recipe", "mnist", "--instance-type", "g5.xlarge", "--ssh-cidr",
          MY_ADDRESS)


def try_launch(*extra, session=None):
    """Launches MNIST on a g5.xlarge, SSH from MY_ADDRESS; later options override these."""
    return run(*LAUNCH, *extra, session=session)


def launch(*extra, session=None):
    status, printed, errors = try_launch(*extra, session=session)
    assert status == 0, errors
    return printed.split("Launched run ")[1].split()[0], printed


def user_data_of(run_id):
    return base64.b64decode(boto3.client("ec2").describe_instance_attribute(
        InstanceId=only(instances_of(run_id))["InstanceId"], Attribute="userData"
    )["UserData"]["Value"]).decode()


def assert_nothing_in_the_account():
    ec2, iam = boto3.client("ec2"), boto3.client("iam")
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert ec2.describe_security_groups(Filters=MANAGED)["SecurityGroups"] == []
    assert iam.list_roles(PathPrefix="/cgan/")["Roles"] == []
    assert ec2.describe_instances()["Reservations"] == []


def only(items):
    assert len(items) == 1, items
    return items[0]


def instances_of(run_id):
    reservations = boto3.client("ec2").describe_instances(
        Filters=[{"Name": "tag:cgan:run", "Values": [run_id]}])["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def the_tool_security_group():
    return only(boto3.client("ec2").describe_security_groups(Filters=MANAGED)["SecurityGroups"])


def ingress_cidrs(group):
    return ([r["CidrIp"] for rule in group["IpPermissions"] for r in rule.get("IpRanges", [])]
            + [r["CidrIpv6"] for rule in group["IpPermissions"]
               for r in rule.get("Ipv6Ranges", [])])


def answer_as_aws(session, operation, answer, http_status=400):
    """Makes one AWS operation give this answer, as AWS would; the other calls reach moto."""
    session.events.register(f"before-call.{operation}", lambda **_: (
        AWSResponse("https://example.invalid", http_status, {}, None), answer))
    return session


def error(code, message):
    return {"Error": {"Code": code, "Message": message}}


def test_dry_run_shows_every_call_and_needs_no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Any request would go to a closed port and fail the command.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HOME", str(tmp_path))

    status, printed, errors = run("launch", "--recipe", "mnist", "--spot", "--dry-run")

    assert status == 0, errors
    assert "nothing is created" in printed
    assert "g6.xlarge (1x L4 24 GB), spot, in us-east-1" in printed  # the default
    assert "cuDNN 9.28.0.42, pinned for the L4 (compute capability 8.9)" in printed
    assert "worst case  $4.83" in printed
    for call in ("sts.get_caller_identity", "ssm.get_parameter", "s3.create_bucket",
                 "s3.put_public_access_block", "s3.upload_file", "ec2.create_key_pair",
                 "ec2.create_security_group", "ec2.authorize_security_group_ingress",
                 "iam.create_role", "iam.create_instance_profile", "ec2.run_instances"):
        assert f". {call}(" in printed
    assert 'InstanceInitiatedShutdownBehavior="terminate"' in printed
    assert '"HttpTokens": "required"' in printed
    assert '"Encrypted": true' in printed
    assert '"MarketType": "spot"' in printed
    assert "<your public IP>/32" in printed
    assert not any(world in printed for world in WORLD)
    assert "  | readonly RUN_NAME=mnist" in printed
    assert not (tmp_path / ".ssh").exists()


def test_the_books_p3_is_a_choice_that_warns_about_its_image_and_price(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HOME", str(tmp_path))
    status, printed, errors = run("launch", "--recipe", "mnist", "--instance-type",
                                  "p3.2xlarge", "--dry-run")
    assert status == 0, errors
    assert "cuDNN 9.10.2.21, pinned for the V100 (compute capability 7.0)" in printed
    assert "Amazon Linux 2" in printed and "support ended on 2026-06-30" in printed
    assert "$3.06/h on-demand against $0.80/h for a g6.xlarge" in printed


def without_tensorflow(tmp_path, monkeypatch):
    """A laptop without TensorFlow, for the subprocesses: importing it fails."""
    fake = tmp_path / "no-tensorflow" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the aws commands imported tensorflow')")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))


def test_a_launch_command_does_not_import_tensorflow(tmp_path, monkeypatch):
    without_tensorflow(tmp_path, monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HOME", str(tmp_path))
    finished = cli("launch", "--recipe", "emnist", "--seed", "0", "--dry-run")
    assert finished.returncode == 0, finished.stderr
    assert "run_emnist.py --out-dir /opt/cgan/runs --data-dir /opt/cgan/data --seed 0" in (
        finished.stdout)


def test_launch_starts_a_locked_down_instance_that_terminates_itself(local_aws, tmp_path):
    run_id, printed = launch("--spot", "--epochs", "2", "--max-hours", "3")
    ec2 = boto3.client("ec2")
    instance = only(instances_of(run_id))
    instance_id = instance["InstanceId"]

    assert instance["InstanceType"] == "g5.xlarge"
    assert instance["ImageId"] == OPEN_DRIVER_NEW  # the newest Deep Learning AMI
    assert instance["KeyName"] == "cgan"
    tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
    bucket = "cgan-runs-123456789012-us-east-1"
    assert tags == {"cgan:managed": "true", "cgan:run": run_id, "Name": f"cgan {run_id}",
                    "cgan:bucket": bucket, "cgan:login-user": "ubuntu"}
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["IamInstanceProfile"]["Arn"].endswith("instance-profile/cgan/cgan-training")
    assert ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    volume = only(ec2.describe_volumes(Filters=[
        {"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"])
    assert volume["Encrypted"] and volume["Size"] == 100

    group = only(ec2.describe_security_groups(
        GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]])["SecurityGroups"])
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"])
            for rule in group["IpPermissions"]] == [("tcp", 22, 22)]
    assert ingress_cidrs(group) == [MY_ADDRESS]
    for any_group in ec2.describe_security_groups()["SecurityGroups"]:
        assert not set(ingress_cidrs(any_group)) & set(WORLD)

    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]).decode()
    assert "readonly RUN_NAME=mnist" in user_data
    assert f"readonly RUN_URI=s3://{bucket}/runs/{run_id}" in user_data
    assert bash_array(user_data, "TRAIN_ARGS") == [
        "--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data", "--epochs", "2"]
    assert "nvidia-cudnn-cu12==9.28.0.42" in bash_array(user_data, "GPU_STACK")
    assert "readonly MAX_MINUTES=180" in user_data
    script = tmp_path / "user-data.sh"
    script.write_text(user_data)
    subprocess.run(["bash", "-n", str(script)], check=True)

    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"runs/{run_id}/project.tar.gz", f"runs/{run_id}/launch.json"}
    key_file = tmp_path / "home" / ".ssh" / "cgan-us-east-1.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert f"python -m aws status {run_id} --region us-east-1" in printed


def test_a_second_launch_reuses_what_the_first_created(local_aws):
    launch()
    launch("--ssh-cidr", "198.51.100.0/24")  # from another network now
    ec2 = boto3.client("ec2")
    assert len(boto3.client("s3").list_buckets()["Buckets"]) == 1
    assert len(ec2.describe_key_pairs(Filters=MANAGED)["KeyPairs"]) == 1
    group = the_tool_security_group()
    assert ingress_cidrs(group) == ["198.51.100.0/24"]  # the old address is shut out
    assert len(boto3.client("iam").list_roles(PathPrefix="/cgan/")["Roles"]) == 1


def test_a_run_can_be_continued_on_a_new_instance(local_aws):
    earlier, _ = launch("--spot")
    status, printed, errors = try_launch("--resume", earlier)
    assert status == 1  # nothing to continue from yet
    assert f"--resume {earlier}: s3://" in errors and "holds no mnist run" in errors
    runs = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]
    assert {o["Key"].split("/")[1] for o in runs} == {earlier}  # nothing of the failed launch
    assert len(boto3.client("ec2").describe_instances()["Reservations"]) == 1

    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"runs/{earlier}/output/mnist/run.json",
                                  Body=b"{}")
    later, _ = launch("--resume", earlier)
    user_data = user_data_of(later)
    assert f"readonly RESUME_URI=s3://{BUCKET}/runs/{earlier}/output/mnist" in user_data
    assert bash_array(user_data, "TRAIN_ARGS") == [
        "--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data", "--resume"]


def test_every_training_flag_reaches_the_instance_zero_values_included(local_aws, tmp_path):
    data = tmp_path / "mnist-data"
    data.mkdir()
    values = {"epochs": "3", "max_steps": "7", "batch_size": "5", "z_dim": "9", "variant": "modern",
              "learning_rate": "0.001", "beta1": "0.0", "save_every": "4", "seed": "0"}
    parser = training_parser("mnist", RECIPES["mnist"])
    # Every flag of run_mnist.py: those the instance sets itself, and the values above.
    assert set(vars(parser.parse_args([]))) == {"out_dir", "data_dir", "resume", *values}
    flags = [word for name, value in values.items()
             for word in ("--" + name.replace("_", "-"), value)]

    run_id, printed = launch(*flags, "--data-dir", str(data))

    assert bash_array(user_data_of(run_id), "TRAIN_ARGS") == [
        "--out-dir", "/opt/cgan/runs", "--data-dir", "/opt/cgan/data", *flags]
    assert f"python run_mnist.py --out-dir /opt/cgan/runs --data-dir /opt/cgan/data " \
           f"{' '.join(flags)}" in printed


@pytest.mark.parametrize("flags, expected", [
    (["--epochs", "-1"], "run_mnist.py: error: argument --epochs: must be at least 1, got -1"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a finite number"),
    (["--beta1", "1"], "argument --beta1: must lie in [0, 1)"),
    (["--variant", "new"], "argument --variant: invalid choice: 'new' (choose from 'book', 'modern')"),
    (["--data-dir", "/no/such/folder"], "argument --data-dir: no folder /no/such/folder"),
    (["--out-dir", "elsewhere"], "--out-dir is the instance's own"),
    (["--max-hours", "nan"], "argument --max-hours: expected a finite number, got 'nan'"),
    (["--max-hours", "inf"], "argument --max-hours: expected a finite number, got 'inf'"),
    (["--max-hours", "0.25"], "argument --max-hours: must be at least 0.5"),
    (["--ssh-cidr", "not-an-ip"], "argument --ssh-cidr: expected an IP address or network"),
    (["--ssh-cidr", "0.0.0.0/0"], "0.0.0.0/0 would let 4,294,967,296 addresses try SSH"),
    (["--ssh-cidr", "::/0"], "::/0 would let"),
    (["--ssh-cidr", "10.0.0.0/8"], "10.0.0.0/8 would let 16,777,216 addresses"),
    (["--instance-type", "g3.4xlarge"], "g3.4xlarge is not a GPU type the tool can train on"),
    (["--epocs", "3"], "unrecognized arguments: --epocs 3"),
])
def test_bad_flags_fail_before_any_aws_call(monkeypatch, tmp_path, flags, expected):
    # Any AWS request would go to a closed port, and end in another error than the flag's.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("HOME", str(tmp_path))
    finished = cli(*LAUNCH, *flags)
    assert_one_line_error(finished, expected)
    assert finished.returncode == 2
    assert not (tmp_path / ".ssh").exists()


@pytest.mark.parametrize("flags", [["--max-hours", "nan"], ["--epochs", "-1"],
                                   ["--resume", "mnist-20260101-000000"]])
def test_a_launch_that_fails_its_checks_leaves_nothing_in_the_account(local_aws, flags):
    finished = cli(*LAUNCH, *flags)
    assert_one_line_error(finished)
    assert "$nan" not in finished.stdout  # no worst case of "$nan" before the error
    assert_nothing_in_the_account()


def test_launch_lets_ssh_in_from_the_address_the_lookup_reports(local_aws):
    class MyAddress(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"192.0.2.44\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), MyAddress)
    threading.Thread(target=server.handle_request, daemon=True).start()
    status, printed, errors = run("launch", "--recipe", "zalando", "--instance-type",
                                  "g6.xlarge", "--ip-url",
                                  f"http://127.0.0.1:{server.server_port}/")
    server.server_close()
    assert status == 0, errors
    group = the_tool_security_group()
    assert ingress_cidrs(group) == ["192.0.2.44/32"]


def test_a_region_without_the_instance_type_is_named_with_alternatives(local_aws):
    # moto's catalogue, like AWS's own today, has no p3.2xlarge in us-east-1.
    status, _, errors = run("launch", "--recipe", "mnist", "--instance-type", "p3.2xlarge",
                            "--ssh-cidr", MY_ADDRESS)
    assert status == 1
    assert "p3.2xlarge is not offered in us-east-1" in errors
    assert "g5.xlarge, g6.xlarge, g6e.xlarge" in errors
    assert_nothing_in_the_account()


def test_no_credentials_is_said_plainly(local_aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    finished = cli("status", "mnist-20260301-120000")
    assert_one_line_error(finished, "No AWS credentials found", "aws configure")


def test_a_bucket_of_another_account_is_refused(local_aws):
    other_account = boto3.client("sts").assume_role(
        RoleArn="arn:aws:iam::111111111111:role/someone", RoleSessionName="someone"
    )["Credentials"]
    boto3.client("s3", aws_access_key_id=other_account["AccessKeyId"],
                 aws_secret_access_key=other_account["SecretAccessKey"],
                 aws_session_token=other_account["SessionToken"]
                 ).create_bucket(Bucket="popular-name")
    status, _, errors = try_launch("--bucket", "popular-name")
    assert status == 1
    assert "popular-name belongs to another AWS account" in errors


def test_a_quota_of_zero_p_instances_says_how_to_ask_for_more(local_aws):
    session = answer_as_aws(boto3.Session(), "service-quotas.GetServiceQuota",
                            {"Quota": {"QuotaCode": "L-417A185B", "Value": 0.0}}, 200)
    status, _, errors = try_launch("--instance-type", "p5.4xlarge", session=session)
    assert status == 1
    assert len(errors.splitlines()) == 1
    assert 'may run 0 vCPUs of "Running On-Demand P instances"' in errors
    assert ("aws service-quotas request-service-quota-increase --region us-east-1 "
            "--service-code ec2 --quota-code L-417A185B --desired-value 16") in errors
    assert_nothing_in_the_account()


def test_a_vcpu_limit_met_at_launch_says_how_to_ask_for_more(local_aws):
    session = answer_as_aws(boto3.Session(), "ec2.RunInstances", error(
        "VcpuLimitExceeded", "You have requested more vCPU capacity than your limit allows"))
    status, _, errors = try_launch(session=session)
    assert status == 1
    assert 'has too few vCPUs left of "Running On-Demand G and VT instances"' in errors
    assert "--quota-code L-DB2E81BA --desired-value 4" in errors
    # The run never started: its uploaded project is deleted again.
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_an_unfulfilled_spot_request_says_what_to_try(local_aws):
    session = answer_as_aws(boto3.Session(), "ec2.RunInstances", error(
        "InsufficientInstanceCapacity", "There is no Spot capacity that matches your request."))
    status, _, errors = try_launch("--spot", session=session)
    assert status == 1
    assert "The spot request for a g5.xlarge in us-east-1 was not fulfilled" in errors
    assert "Nothing is running" in errors and "on-demand (without --spot)" in errors


def put_run_folder(run_id, files):
    s3 = boto3.client("s3")
    for name, content in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"runs/{run_id}/{name}", Body=content)


def test_status_logs_and_fetch_follow_a_run_home(local_aws, tmp_path):
    run_id, _ = launch("--spot")
    put_run_folder(run_id, {"logs/state": b"training\n", "logs/train.log": b"epoch 1/16 ...\n"})
    run_folder = {"mnist/mnist.pkl": b"pickle", "mnist/losses.csv": b"d,g\n",
                  "mnist/checkpoints/generator.index": b"index"}
    put_run_folder(run_id, {f"output/{name}": content for name, content in run_folder.items()})

    status, printed, errors = run("status", run_id)
    assert status == 0, errors
    instance_id = only(instances_of(run_id))["InstanceId"]
    assert f"{run_id}: mnist on a g5.xlarge, spot, launched" in printed
    assert f"instance  {instance_id} running" in printed
    assert "training  training" in printed
    assert "cost      about $" in printed
    assert "(3 files)" in printed

    assert run("logs", run_id) == (0, "epoch 1/16 ...", "")

    status, printed, errors = run("fetch", run_id, "--to", str(tmp_path / "home-run"))
    assert status == 0, errors
    for name, content in run_folder.items():
        assert (tmp_path / "home-run" / name).read_bytes() == content
    assert f"the trained model: {tmp_path / 'home-run' / 'mnist' / 'mnist.pkl'}" in printed


def test_a_failed_gpu_check_shows_in_status_and_logs(local_aws):
    run_id, _ = launch()
    reason = ("GPU check failed, nothing was trained, the machine terminates: "
              "InternalError: CUDNN_STATUS_EXECUTION_FAILED")
    put_run_folder(run_id, {"logs/state": f"{reason}\n".encode(),
                            "logs/train.log": b"InternalError: CUDNN_STATUS_EXECUTION_FAILED\n"})
    assert f"training  {reason}" in run("status", run_id)[1]
    assert "CUDNN_STATUS_EXECUTION_FAILED" in run("logs", run_id)[1]


def test_fetch_refuses_a_key_that_would_land_outside_the_folder(local_aws, tmp_path):
    run_id, _ = launch()
    planted = "mnist/../../../../planted.txt"  # written by whoever may write to the bucket
    put_run_folder(run_id, {"output/mnist/mnist.pkl": b"pickle", f"output/{planted}": b"!"})
    target = tmp_path / "deep" / "er" / "run"

    finished = cli("fetch", run_id, "--to", str(target))

    assert_one_line_error(finished, f"runs/{run_id}/output/{planted} would be written "
                                    f"outside {target}/: refused")
    assert not (tmp_path / "planted.txt").exists()
    assert not list(tmp_path.rglob("planted.txt"))
    assert not target.exists()  # nothing was downloaded


@pytest.mark.parametrize("command", ["status", "logs", "fetch"])
def test_a_run_that_does_not_exist_is_said_so_without_asking_to_wait(local_aws, command):
    launch()
    finished = cli(command, "mnist-20990101-000000")
    assert_one_line_error(finished, f"No run mnist-20990101-000000 in s3://{BUCKET}")
    assert "yet" not in finished.stderr and "wait" not in finished.stderr


@pytest.mark.parametrize("command", ["status", "logs", "fetch"])
def test_a_bucket_that_does_not_exist_is_said_so(local_aws, command):
    finished = cli(command, "mnist-20260301-120000", "--bucket", "no-such-cgan-bucket")
    assert_one_line_error(finished, "No bucket s3://no-such-cgan-bucket in this account")


def test_fetch_to_a_file_is_refused_and_the_file_kept(local_aws, tmp_path):
    run_id, _ = launch()
    put_run_folder(run_id, {"output/mnist/mnist.pkl": b"pickle"})
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert_one_line_error(cli("fetch", run_id, "--to", str(a_file)),
                          f"--to {a_file} is a file")
    assert a_file.read_text() == "mine"


def test_jupyter_gives_a_tunnel_not_an_open_port(local_aws, tmp_path):
    run_id, _ = launch()
    address = only(instances_of(run_id))["PublicIpAddress"]
    status, printed, errors = run("jupyter", run_id, "--ssh-cidr", MY_ADDRESS)
    assert status == 0, errors
    key = tmp_path / "home" / ".ssh" / "cgan-us-east-1.pem"
    assert f"ssh -i {key} -N -L 8888:localhost:8888 ubuntu@{address}" in printed
    group = the_tool_security_group()
    assert 8888 not in [rule["FromPort"] for rule in group["IpPermissions"]]


def test_terminate_stops_the_run_and_keeps_its_results(local_aws):
    run_id, _ = launch()
    assert run("terminate", run_id)[0] == 0
    assert only(instances_of(run_id))["State"]["Name"] == "terminated"
    boto3.client("s3").head_object(Bucket=BUCKET, Key=f"runs/{run_id}/launch.json")
    assert run("terminate", run_id) == (
        0, f"Run {run_id} has no live instance in us-east-1: nothing to do.", "")


def test_cleanup_without_a_terminal_says_to_use_yes(local_aws):
    launch()
    finished = cli("cleanup", stdin=subprocess.DEVNULL)
    assert_one_line_error(finished, "Nothing was deleted", "`cleanup --yes`")
    assert boto3.client("s3").list_buckets()["Buckets"]


def test_cleanup_leaves_nothing_behind_and_can_run_again(local_aws, tmp_path, monkeypatch):
    data = tmp_path / "mnist-data"
    data.mkdir()
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"images")
    launch("--data-dir", str(data))
    launch("--spot")
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert run("cleanup")[0] == 1  # the results are not deleted without a yes
    assert boto3.client("s3").list_buckets()["Buckets"]

    status, printed, errors = run("cleanup", "--yes")

    assert status == 0, errors
    ec2 = boto3.client("ec2")
    states = {i["State"]["Name"] for r in ec2.describe_instances(Filters=MANAGED)["Reservations"]
              for i in r["Instances"]}
    assert states == {"terminated"}
    assert ec2.describe_security_groups(Filters=MANAGED)["SecurityGroups"] == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    iam = boto3.client("iam")
    assert iam.list_roles(PathPrefix="/cgan/")["Roles"] == []
    assert iam.list_instance_profiles(PathPrefix="/cgan/")["InstanceProfiles"] == []
    assert not (tmp_path / "home" / ".ssh" / "cgan-us-east-1.pem").exists()
    assert run("cleanup", "--yes") == (0, "Nothing of the tool's is left in us-east-1.", "")


# ------------------------------------------------------------------ launch --folder DIR

FOLDER_NAME = "Mes images été"  # spaces and Unicode: the run folder's name on the instance
FOLDER_FLAGS = ("--size", "16", "--channels", "3", "--skip-unreadable", "--max-steps", "5")


def image_folder(tmp_path):
    """Two classes of three 16x16 PNGs, one nested; and files that are no images."""
    folder = write_folder(tmp_path / FOLDER_NAME, per_class=3, classes=("a", "b"))
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "b" / "notes.txt").write_text("not an image")
    return folder


def recording_session(calls):
    """A boto3 session that writes down (operation, Key) of every S3 call it makes."""
    session = boto3.Session()
    session.events.register("provide-client-params.s3", lambda params, model, **_: calls.append(
        (model.name, params.get("Key"))))
    return session


def archive_members(key):
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return body, {member.name: tar.extractfile(member).read() for member in tar}


def test_launch_from_a_folder_uploads_it_once_and_trains_from_it(local_aws, tmp_path):
    folder = image_folder(tmp_path)
    finished = cli(*LAUNCH_FOLDER, str(folder), *FOLDER_FLAGS)
    assert finished.returncode == 0, finished.stderr
    run_id = finished.stdout.split("Launched run ")[1].split()[0]
    assert run_id.startswith("mes-images-ete-2")
    assert f"{folder}: 6 images of 2 classes, as 16x16x3" in finished.stdout

    # One archive of the folder's images, named by its SHA-256, with nothing else in it.
    [key] = keys_under("folders/")
    body, members = archive_members(key)
    sha256 = hashlib.sha256(body).hexdigest()
    assert key == f"folders/{sha256}.tar"
    manifest = folders.scan(folder).manifest
    assert sorted(members) == sorted(manifest)
    assert {path: hashlib.sha256(content).hexdigest() for path, content in members.items()} == manifest

    user_data = user_data_of(run_id)
    assert f"readonly FOLDER_URI=s3://{BUCKET}/{key}" in user_data
    assert f"readonly FOLDER_SHA256={sha256}" in user_data
    assert bash_array(user_data, "TRAIN_SCRIPT") == ["cgan.py", "train",
                                                     f"/opt/cgan/folders/{FOLDER_NAME}"]
    assert bash_array(user_data, "TRAIN_ARGS") == ["--out-dir", "/opt/cgan/runs", *FOLDER_FLAGS]
    assert f"readonly RUN_NAME='{FOLDER_NAME}'" in user_data
    script = tmp_path / "user-data.sh"
    script.write_text(user_data)
    subprocess.run(["bash", "-n", str(script)], check=True)
    record = json.loads(boto3.client("s3").get_object(
        Bucket=BUCKET, Key=f"runs/{run_id}/launch.json")["Body"].read())
    assert record["folder"] == {"name": FOLDER_NAME, "uri": f"s3://{BUCKET}/{key}",
                                "sha256": sha256}
    assert f"{run_id}: the image folder {FOLDER_NAME} on a g5.xlarge" in cli("status", run_id).stdout
    put_run_folder(run_id, {f"output/{FOLDER_NAME}/{FOLDER_NAME}.pkl": b"pickle"})
    fetched = cli("fetch", run_id, "--to", str(tmp_path / "home"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "home" / FOLDER_NAME / f"{FOLDER_NAME}.pkl").read_bytes() == b"pickle"

    # The same files again, touched since (the archive holds no times): it is re-used, not
    # uploaded again.
    for path in folder.rglob("*.png"):
        os.utime(path, (1e9, 1e9))
    calls = []
    status, printed, errors = run(*LAUNCH_FOLDER, str(folder), *FOLDER_FLAGS,
                                  session=recording_session(calls))
    assert status == 0, errors
    assert [operation for operation, called in calls if called == key] == ["HeadObject"]
    assert "uploaded before, re-used" in printed
    second = printed.split("Launched run ")[1].split()[0]
    assert f"readonly FOLDER_URI=s3://{BUCKET}/{key}" in user_data_of(second)
    assert keys_under("folders/") == [key]

    # A changed folder is a new archive, uploaded.
    (folder / "a" / "000.png").unlink()
    calls.clear()
    assert run(*LAUNCH_FOLDER, str(folder), session=recording_session(calls))[0] == 0
    [new_key] = set(keys_under("folders/")) - {key}
    assert [operation for operation, called in calls if called == new_key] == [
        "HeadObject", "PutObject"]


def test_a_folder_run_continues_from_its_own_run_folder_on_the_same_files(local_aws, tmp_path):
    folder = image_folder(tmp_path)
    earlier = cli(*LAUNCH_FOLDER, str(folder)).stdout.split("Launched run ")[1].split()[0]
    run_record = {"recipe": "folder", "data": {"files": folders.scan(folder).manifest}}
    put_run_folder(earlier, {f"output/{FOLDER_NAME}/run.json": json.dumps(run_record).encode()})
    status, printed, errors = run(*LAUNCH_FOLDER, str(folder), "--resume", earlier)
    assert status == 0, errors
    user_data = user_data_of(printed.split("Launched run ")[1].split()[0])
    assert f"readonly RESUME_URI='s3://{BUCKET}/runs/{earlier}/output/{FOLDER_NAME}'" in user_data
    assert bash_array(user_data, "TRAIN_ARGS") == ["--out-dir", "/opt/cgan/runs", "--resume"]

    # The folder changed since: refused here, as cgan.py train --resume would refuse it there.
    (folder / "a" / "extra.png").write_bytes((folder / "a" / "000.png").read_bytes())
    before = len(boto3.client("ec2").describe_instances()["Reservations"])
    finished = cli(*LAUNCH_FOLDER, str(folder), "--resume", earlier)
    assert_one_line_error(finished, f"{FOLDER_NAME} changed since run {earlier} started on it: "
                                    "1 added (a/extra.png)", "--folder-changed")
    assert len(boto3.client("ec2").describe_instances()["Reservations"]) == before
    status, printed, errors = run(*LAUNCH_FOLDER, str(folder), "--resume", earlier,
                                  "--folder-changed")
    assert status == 0, errors
    assert bash_array(user_data_of(printed.split("Launched run ")[1].split()[0]), "TRAIN_ARGS") == [
        "--out-dir", "/opt/cgan/runs", "--folder-changed", "--resume"]


def keys_under(prefix):
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


LAUNCH_FOLDER = ("launch", "--instance-type", "g5.xlarge", "--ssh-cidr", MY_ADDRESS, "--folder")


@pytest.mark.parametrize("case", ["truncated", "text", "unreadable", "empty class", "mixed",
                                  "no images", "size"])
def test_a_bad_folder_is_refused_as_cgan_train_refuses_it_before_any_aws_call(local_aws,
                                                                             tmp_path, case):
    folder_flags = ["--size", "18"] if case == "size" else []
    if case == "no images":
        folder = tmp_path / "empty"
        folder.mkdir()
        (folder / "notes.txt").write_text("no picture here")
    else:
        folder, _ = write_bad_folder(tmp_path, "truncated" if case == "size" else case)
    finished = cli(*LAUNCH_FOLDER, str(folder), *folder_flags)
    assert_one_line_error(finished)
    trained_here = command("cgan.py", "train", folder, "--out-dir", tmp_path / "runs",
                           *folder_flags, cwd=tmp_path)
    said_here = trained_here.stderr.strip().splitlines()[-1]
    assert said_here.startswith("cgan.py train: error: ")
    assert finished.stderr.strip() == "error: " + said_here.removeprefix("cgan.py train: error: ")
    assert_nothing_in_the_account()


@pytest.mark.parametrize("argv, expected", [
    (["--recipe", "mnist", "--folder", "x"], "argument --folder: not allowed with argument --recipe"),
    ([], "one of the arguments --recipe --folder is required"),
    (["--folder", "x", "--data-dir", "y"], "cgan.py train: error: unrecognized arguments: --data-dir y"),
    (["--folder", "x", "--channels", "2"], "argument --channels: invalid choice: 2"),
])
def test_a_launch_trains_a_recipe_or_a_folder(monkeypatch, tmp_path, argv, expected):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(cli("launch", *argv), expected)


def test_a_folder_launch_does_not_import_tensorflow(tmp_path, monkeypatch):
    folder = image_folder(tmp_path)
    without_tensorflow(tmp_path, monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HOME", str(tmp_path))
    finished = cli("launch", "--folder", str(folder), "--dry-run")
    assert finished.returncode == 0, finished.stderr
    assert f"python cgan.py train '/opt/cgan/folders/{FOLDER_NAME}' --out-dir /opt/cgan/runs" in (
        finished.stdout)
    assert ". s3.upload_file(" in finished.stdout and "<the image folder" in finished.stdout
