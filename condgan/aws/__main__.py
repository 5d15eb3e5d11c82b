"""python -m aws: train a cgan recipe on an AWS GPU instance, then stop paying for it."""

import argparse
import sys

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from . import catalog, commands, launch
from .cloud import NO_CREDENTIALS, Cloud, CloudError
from .resources import DEFAULT_IP_URL

RECIPES = ("mnist", "zalando", "emnist")
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
    where_from.add_argument("--ssh-cidr", help="who may SSH in (default: this machine's "
                                               "public address, /32)")
    where_from.add_argument("--ip-url", default=DEFAULT_IP_URL,
                            help="where this machine learns its public address")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("run", help="the run id that launch printed, such as "
                                 "mnist-20260301-142233")

    top = argparse.ArgumentParser(prog="python -m aws", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    launch = sub.add_parser("launch", parents=[common, where_from],
                            help="start a GPU instance that trains a recipe, then terminates")
    launch.add_argument("--recipe", required=True, choices=RECIPES)
    training = launch.add_argument_group("training (passed to run_<recipe>.py; "
                                         "its defaults are the book's)")
    for flag, kind in [("--epochs", int), ("--max-steps", int), ("--batch-size", int),
                       ("--z-dim", int), ("--learning-rate", float), ("--beta1", float),
                       ("--save-every", int), ("--seed", int)]:
        training.add_argument(flag, type=kind)
    training.add_argument("--resume", metavar="RUN",
                          help="continue RUN (after a spot interruption, say) from the last "
                               "checkpoint it copied to S3")
    training.add_argument("--data-dir", help="a local dataset folder to upload, instead "
                                             "of downloading the data on the instance")
    machine = launch.add_argument_group("machine")
    machine.add_argument("--instance-type", default=catalog.DEFAULT_INSTANCE_TYPE,
                         help=f"default: the book's {catalog.DEFAULT_INSTANCE_TYPE}; "
                              f"recommended: {', '.join(catalog.RECOMMENDED_TYPES)}")
    machine.add_argument("--spot", action="store_true",
                         help="a spot instance: much cheaper, but AWS may take it back")
    machine.add_argument("--max-hours", type=float, default=6.0,
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
    return top


def main(argv=None, session=None, out=print):
    options = parser().parse_args(argv)
    if options.command == "launch" and options.max_hours < 0.5:
        out("error: --max-hours must be at least 0.5: the last 10 minutes are kept for "
            "copying the results to S3.")
        return 2
    session = session or boto3.Session()
    region = options.region or session.region_name or "us-east-1"
    cloud = Cloud(region, options.endpoint_url, getattr(options, "dry_run", False),
                  session, out)
    try:
        COMMANDS[options.command](cloud, options)
    except CloudError as error:
        out(f"error: {error}")
        return 1
    except NoCredentialsError:
        out(f"error: {NO_CREDENTIALS}")
        return 1
    except EndpointConnectionError as error:
        out(f"error: cannot reach AWS: {error}")
        return 1
    except ClientError as error:
        details = error.response.get("Error", {})
        out(f"error: AWS refused {error.operation_name}: {details.get('Code')}: "
            f"{details.get('Message')}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
