"""python -m aws: train a cgan recipe on an AWS GPU instance, then stop paying for it."""

import argparse
import re
import sys

import boto3
from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                 NoCredentialsError)

from condgan.commands import folder_training_parser
from condgan.recipes import (DEFAULT_VARIANT, RECIPES, VARIANT_DEFAULTS, OneLineErrorParser,
                             finite_float, positive_int, seed_number, training_parser)

from . import catalog, commands, launch, sweep
from .bootstrap import UPLOAD_MARGIN_MINUTES
from .cloud import NO_CREDENTIALS, Cloud, CloudError
from .resources import DEFAULT_IP_URL, ssh_network

MIN_HOURS = 0.5
COMMANDS = {"launch": launch.launch, "status": commands.status, "logs": commands.logs,
            "fetch": commands.fetch, "jupyter": commands.jupyter,
            "terminate": commands.terminate, "cleanup": commands.cleanup}


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="AWS region (default: your AWS configuration's, "
                                         "else us-east-1)")
    common.add_argument("--bucket", help="S3 bucket of the runs "
                                         "(default: cgan-runs-<account>-<region>)")
    common.add_argument("--endpoint-url", help="another AWS endpoint, such as a local "
                                               "test server (or set AWS_ENDPOINT_URL)")
    where_from = argparse.ArgumentParser(add_help=False)
    where_from.add_argument("--ssh-cidr", type=ssh_network, help="who may SSH in (default: this machine's "
                                               "public address, /32)")
    where_from.add_argument("--ip-url", default=DEFAULT_IP_URL,
                            help="where this machine learns its public address")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("run", help="the run id that launch printed, such as "
                                 "mnist-20260301-142233-9f3c")

    # Mistakes are one line on stderr, as with run_<recipe>.py (the subcommands inherit it).
    top = OneLineErrorParser(prog="python -m aws", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    example = training_parser("mnist", RECIPES["mnist"]).format_usage().split(" ", 2)[2]
    launch = sub.add_parser(
        "launch", parents=[common, where_from],
        help="start a GPU instance that trains a recipe, then terminates",
        epilog="Every other flag is a training flag of run_RECIPE.py (its defaults are the "
               "book's), checked here by that script's own parser before any AWS call; for "
               f"run_mnist.py: {example.strip()} --data-dir is a local dataset folder to "
               "upload, instead of downloading the data on the instance; --out-dir is the "
               "instance's. With --folder, they are the flags of `cgan.py train DIR`.")
    add_source_arguments(launch)
    launch.add_argument("--resume", metavar="RUN",
                        help="continue RUN (after a spot interruption, say) from the last "
                             "checkpoint it copied to S3")
    machine = launch.add_argument_group("machine")
    machine.add_argument("--instance-type", type=gpu_instance_type,
                         default=catalog.DEFAULT_INSTANCE_TYPE,
                         help=f"default: {catalog.DEFAULT_INSTANCE_TYPE}; also recommended: "
                              f"{', '.join(catalog.RECOMMENDED_TYPES[1:])}; the book's "
                              "p3.2xlarge works, on an image without security patches")
    machine.add_argument("--spot", action="store_true",
                         help="a spot instance: much cheaper, but AWS may take it back")
    machine.add_argument("--max-hours", type=max_hours, default=6.0,
                         help="the instance terminates itself after this long (default 6)")
    machine.add_argument("--ami", help="pin an image instead of the newest Deep Learning AMI")
    launch.add_argument("--dry-run", action="store_true",
                        help="print every AWS call it would make, and make none")

    sub.add_parser("status", parents=[common, run], help="where a run is, and its cost")
    logs = sub.add_parser("logs", parents=[common, run], help="a run's training log, from S3")
    logs.add_argument("--bootstrap", action="store_true",
                      help="the instance's install log instead")
    fetch = sub.add_parser("fetch", parents=[common, run], help="download a run folder")
    fetch.add_argument("--to", help="the local folder (default: runs/<run>)")
    jupyter = sub.add_parser("jupyter", parents=[common, where_from, run],
                             help="the SSH tunnel to the instance's Jupyter")
    jupyter.add_argument("--open", action="store_true", help="open the tunnel now")
    sub.add_parser("terminate", parents=[common, run], help="terminate a run's instance")
    cleanup = sub.add_parser("cleanup", parents=[common],
                             help="delete everything the tool created in the region")
    cleanup.add_argument("--yes", action="store_true",
                         help="do not ask before deleting the buckets and their results")
    add_sweep_parser(sub, common, example)
    return top


def add_sweep_parser(sub, common, example):
    sweeps = sub.add_parser("sweep", help="many runs at once (variants x seeds) as SageMaker "
                                          "training jobs: python -m aws sweep --help")
    commands_of_sweep = sweeps.add_subparsers(dest="sweep_command", required=True)
    name = argparse.ArgumentParser(add_help=False)
    name.add_argument("name", help="the sweep's name: letters, digits and dashes; it names "
                                   "its jobs (NAME-VARIANT-sSEED)")
    launch = commands_of_sweep.add_parser(
        "launch", parents=[common, name], help="one SageMaker training job per variant and seed",
        epilog="Every other flag is a training flag of run_RECIPE.py, checked by its own "
               f"parser before any AWS call (but --variant and --seed, given above); for "
               f"run_mnist.py: {example.strip()} --data-dir is the local dataset folder, "
               "uploaded once for all the jobs (default: $CGAN_DATA_DIR/<dataset>). With "
               "--folder, they are the flags of `cgan.py train DIR`.")
    add_source_arguments(launch)
    launch.add_argument("--variants", nargs="+", choices=list(VARIANT_DEFAULTS),
                        default=[DEFAULT_VARIANT], help=f"default: {DEFAULT_VARIANT}")
    launch.add_argument("--seeds", nargs="+", type=seed_number, default=[0],
                        help="one job per variant and seed (default: 0)")
    launch.add_argument("--instance-type", type=sweep.sagemaker_instance_type,
                        default=catalog.SAGEMAKER_DEFAULT_INSTANCE_TYPE,
                        help=f"default: {catalog.SAGEMAKER_DEFAULT_INSTANCE_TYPE}; not ml.p3")
    launch.add_argument("--spot", action="store_true",
                        help="managed Spot training: cheaper; an interrupted job resumes from "
                             "its last checkpoint")
    launch.add_argument("--max-hours", type=max_hours, default=6.0,
                        help="each job stops after this long (default 6)")
    launch.add_argument("--role", type=role_arn,
                        help="the jobs' execution role (default: one created for the sweep, "
                             "with access to its own S3 prefix only)")
    launch.add_argument("--max-jobs", type=positive_int, default=20,
                        help="refuse more jobs than this (default 20)")
    launch.add_argument("--evaluate-per-class", type=per_class, default=100,
                        help="generated images per class for each kept checkpoint's evaluate "
                             "figures, on the instance (default 100; 0: none)")
    launch.add_argument("--image", help="another training image URI than the pinned "
                                        f"{catalog.SAGEMAKER_IMAGE_TAG}")
    for command, what in [("status", "one line per job: status, secondary status, step"),
                          ("stop", "stop every job of the sweep")]:
        commands_of_sweep.add_parser(command, parents=[common, name], help=what)
    for command, what in [("fetch", "each job's results, safely unpacked, into FOLDER/JOB/"),
                          ("report", "the jobs' evaluate figures, and report.png")]:
        folder = commands_of_sweep.add_parser(command, parents=[common, name], help=what)
        folder.add_argument("--to", help="the local folder (default: runs/sweeps/NAME)")


def add_source_arguments(launch):
    """What a launch trains on: a recipe, or an image folder."""
    source = launch.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", choices=list(RECIPES))
    source.add_argument("--folder", metavar="DIR",
                        help="your own images, as for `cgan.py train DIR` (DIR/<class name>/..., "
                             "or loose images): checked here first, uploaded once as one "
                             "archive (again only if its files changed), and trained on with "
                             "--size, --channels, --skip-unreadable and the other flags of "
                             "cgan.py train")


def role_arn(text):
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", text):
        raise argparse.ArgumentTypeError(f"expected a role ARN such as "
                                         f"arn:aws:iam::123456789012:role/name, got {text!r}")
    return text


def per_class(text):
    value = int(text) if text.isdigit() else None
    if value is None or value == 1:
        raise argparse.ArgumentTypeError(f"expected 0 (no evaluation) or a whole number of at "
                                         f"least 2, got {text!r}")
    return value


def gpu_instance_type(text):
    if catalog.gpu_family(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text} is not a GPU type the tool can train on; its families: "
            f"{', '.join(catalog.GPU_FAMILIES)} (such as {catalog.DEFAULT_INSTANCE_TYPE})")
    return text


def max_hours(text):
    hours = finite_float(text)
    if hours < MIN_HOURS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_HOURS}, got {text}: the last {UPLOAD_MARGIN_MINUTES} "
            "minutes are kept for copying the results to S3")
    return hours


def parse(argv):
    """The options; for launch, `training` holds the training flags the user gave (name ->
    value), read by run_<recipe>.py's own parser (cgan.py train's for --folder), and
    `data_dir` the local data folder."""
    top = parser()
    options, others = top.parse_known_args(argv)
    sweep_launch = options.command == "sweep" and options.sweep_command == "launch"
    if options.command != "launch" and not sweep_launch:
        if others:
            top.error(f"unrecognized arguments: {' '.join(others)}")
        return options
    if options.folder is not None:
        training = folder_training_parser("cgan.py train")
        others = [options.folder, *others]
    else:
        training = training_parser(options.recipe, RECIPES[options.recipe])
    if sweep_launch:
        if "--resume" in others:  # (--seed and --variant read as --seeds and --variants)
            training.error("--resume is not a flag of a sweep: a job resumes by itself, "
                           "from its own checkpoints")
    checked = training.parse_args(others)  # a bad flag: one line on stderr, exit status 2
    # Read again into a namespace where every flag is already "not given": argparse leaves
    # those alone, so what changes is what the user gave, and only that goes to the instance
    # (where the defaults are run_<recipe>.py's own too).
    not_given = object()
    read = training.parse_args(others, argparse.Namespace(**dict.fromkeys(vars(checked),
                                                                          not_given)))
    given = {name: value for name, value in vars(read).items() if value is not not_given}
    if "out_dir" in given:
        training.error("--out-dir is the instance's own; `python -m aws fetch RUN --to "
                       "FOLDER` brings the run folder home" if not sweep_launch else
                       "--out-dir is the job's own; `python -m aws sweep fetch NAME --to "
                       "FOLDER` brings the results home")
    options.data_dir = given.pop("data_dir", None)
    given.pop("folder", None)
    options.training = given
    return options


def one_line(text):
    return " ".join(str(text).split())


def main(argv=None, session=None, out=print, err=None):
    """Runs a command; returns the exit status. Errors go to `err` (stderr), one line each."""
    err = err or (lambda line: print(line, file=sys.stderr))
    options = parse(argv)
    try:
        session = session or boto3.Session()
        region = options.region or session.region_name or "us-east-1"
        cloud = Cloud(region, options.endpoint_url, getattr(options, "dry_run", False),
                      session, out)
        command = (sweep.COMMANDS[options.sweep_command] if options.command == "sweep"
                   else COMMANDS[options.command])
        command(cloud, options)
    except CloudError as error:
        err(f"error: {one_line(error)}")
        return 1
    except NoCredentialsError:
        err(f"error: {NO_CREDENTIALS}")
        return 1
    except EndpointConnectionError as error:
        err(f"error: cannot reach AWS: {one_line(error)}")
        return 1
    except ClientError as error:
        details = error.response.get("Error", {})
        err(one_line(f"error: AWS refused {error.operation_name}: {details.get('Code')}: "
                     f"{details.get('Message')}"))
        return 1
    except BotoCoreError as error:  # a profile that does not exist, a bad region name, ...
        err(f"error: {one_line(error)}")
        return 1
    except OSError as error:  # a local file that cannot be read or written
        err(f"error: {one_line(error)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
