"""The commands that follow a run, bring its results home, and stop paying for it."""

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from . import resources, storage
from .bootstrap import WORK_DIR
from .catalog import MANAGED_TAG
from .cloud import CloudError


# ------------------------------------------------------------------------- following a run

def bucket_of(cloud, options):
    return options.bucket or resources.default_bucket(cloud)


def launch_record(cloud, bucket, run):
    """What launch wrote down about a run; a run id it never wrote is an error, not a wait."""
    record = storage.read_text(cloud, bucket, f"{resources.run_prefix(run)}/launch.json")
    if record is None:
        raise CloudError(f"No run {run} in s3://{bucket}: check the id that launch printed "
                         "(or launched with another --region or --bucket?).")
    return json.loads(record)


def status(cloud, options):
    bucket = bucket_of(cloud, options)
    prefix = resources.run_prefix(options.run)
    launched = launch_record(cloud, bucket, options.run)
    out = cloud.out
    trains = launched.get("recipe") or f"the image folder {launched['folder']['name']}"
    out(f"run       {options.run}: {trains} on a {launched['instance_type']}"
        f"{', spot' if launched['spot'] else ''}, launched {launched['launched'][:16]} UTC")
    found = resources.instances(cloud, resources.run_filter(options.run), states=(
        "pending", "running", "shutting-down", "stopping", "stopped", "terminated"))
    if not found:
        out(f"instance  {launched['instance']} is gone (AWS forgets terminated instances "
            "after about an hour)")
    for instance in found:
        state = instance["State"]["Name"]
        out(f"instance  {instance['InstanceId']} {state}")
        price = launched["usd_per_hour"]
        if state in ("pending", "running") and price is not None:
            hours = (datetime.now(timezone.utc) - instance["LaunchTime"]).total_seconds() / 3600
            out(f"cost      about ${hours * price:.2f} so far, at ${price:.3f}/h")
    state = storage.read_text(cloud, bucket, f"{prefix}/logs/state")
    out(f"training  {state.strip() if state else 'not started yet (installing takes minutes)'}")
    results = storage.list_objects(cloud, bucket, f"{prefix}/output")
    out(f"results   s3://{bucket}/{prefix}/output/ ({len(results)} files)")


def logs(cloud, options):
    bucket = bucket_of(cloud, options)
    launch_record(cloud, bucket, options.run)
    name = "bootstrap.log" if options.bootstrap else "train.log"
    text = storage.read_text(cloud, bucket, f"{resources.run_prefix(options.run)}/logs/{name}")
    if text is None:
        raise CloudError(
            f"No {name} for {options.run} in s3://{bucket} yet: the instance copies its logs "
            "every 5 minutes once training starts. `--bootstrap` shows the install log.")
    cloud.out(text.rstrip("\n"))


def fetch(cloud, options):
    folder = Path(options.to) if options.to else Path("runs") / options.run
    if folder.exists() and not folder.is_dir():
        raise CloudError(f"--to {folder} is a file: give a folder (new or existing).")
    bucket = bucket_of(cloud, options)
    launch_record(cloud, bucket, options.run)
    prefix = f"{resources.run_prefix(options.run)}/output"
    check_not_newer_here(folder, storage.list_objects(cloud, bucket, prefix), prefix, bucket)
    paths = storage.download_folder(cloud, bucket, prefix, folder)
    if not paths:
        raise CloudError(f"Nothing under s3://{bucket}/{prefix}/ yet: "
                         f"see `python -m aws status {options.run}`.")
    cloud.out(f"{len(paths)} files into {folder}/")
    for pickle in sorted(p for p in paths if p.suffix == ".pkl"):
        cloud.out(f"the trained model: {pickle} (pickle.load it, then generate_new)")


def check_not_newer_here(folder, objects, prefix, bucket):
    """Refuses a fetch over a local run folder that has trained further than S3's copy
    (resumed here, say): its losses.csv and run.json would be replaced by older ones."""
    in_s3 = {}
    for item in objects:
        run_folder, _, name = item["Key"][len(prefix) + 1:].partition("/")
        in_s3.setdefault(run_folder, []).append(name)
    for run_folder, names in in_s3.items():
        local = folder / run_folder
        here = storage.newest_checkpoint_step(
            path.name for path in local.iterdir()) if local.is_dir() else None
        there = storage.newest_checkpoint_step(names)
        if here is not None and (there is None or here > there):
            raise CloudError(
                f"{local} has trained to step {here}, further than its copy in "
                f"s3://{bucket}/{prefix}/{run_folder}/ "
                f"({'no checkpoint' if there is None else f'step {there}'}): fetching would "
                "replace newer work with older. Nothing was downloaded; fetch --to another "
                "folder to have both.")


def jupyter(cloud, options):
    running = resources.instances(cloud, resources.run_filter(options.run), states=("running",))
    if not running or "PublicIpAddress" not in running[0]:
        raise CloudError(f"Run {options.run} has no running instance with a public address "
                         f"in {cloud.region}: see `python -m aws status {options.run}`.")
    instance = running[0]
    # Your address may have changed since the launch: let SSH in from where you are now.
    resources.ensure_security_group(cloud, resources.caller_cidr(options.ssh_cidr,
                                                                 options.ip_url))
    login = f"{resources.tag_value(instance, 'cgan:login-user')}@{instance['PublicIpAddress']}"
    key = resources.key_file(cloud.region)
    tunnel = ["ssh", "-i", str(key), "-N", "-L", "8888:localhost:8888", login]
    cloud.out("Jupyter listens on the instance's own localhost:8888. Open a tunnel to it "
              "(it runs until Ctrl-C):")
    cloud.out(f"  {' '.join(tunnel)}")
    cloud.out("then open http://localhost:8888/lab with the token that this prints:")
    cloud.out(f"  ssh -i {key} {login} sudo cat {WORK_DIR}/jupyter-token")
    if options.open:
        os.execvp("ssh", tunnel)


# --------------------------------------------------------------------------- stop paying

def terminate(cloud, options):
    live = resources.instances(cloud, resources.run_filter(options.run))
    if not live:
        cloud.out(f"Run {options.run} has no live instance in {cloud.region}: nothing to do.")
        return
    ids = [instance["InstanceId"] for instance in live]
    cloud.call("ec2", "terminate_instances", InstanceIds=ids)
    cancel_spot_requests(cloud, resources.run_filter(options.run))
    cloud.out(f"Terminated {', '.join(ids)}; the results stay in S3: "
              f"`python -m aws fetch {options.run}`.")


def cancel_spot_requests(cloud, filters):
    requests = cloud.call("ec2", "describe_spot_instance_requests", Filters=filters + [
        {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
    if requests:
        cloud.call("ec2", "cancel_spot_instance_requests", SpotInstanceRequestIds=[
            request["SpotInstanceRequestId"] for request in requests])


def cleanup(cloud, options):
    """Deletes everything the tool created in this region, and its role; twice is harmless."""
    found = find_everything(cloud)
    if not any(found.values()):
        cloud.out(f"Nothing of the tool's is left in {cloud.region}.")
        return
    cloud.out("The tool created, and cleanup deletes:")
    for kind, names in found.items():
        if names:
            cloud.out(f"  {kind}: {', '.join(names)}")
    if found["buckets"] and not options.yes:
        try:
            answer = input("The buckets hold every run's results. Delete them all? [y/N] ")
        except (EOFError, RuntimeError):  # no terminal to answer from, or no stdin at all
            raise CloudError("Nothing was deleted: cleanup asks before deleting the buckets "
                             "and no one can answer here; `cleanup --yes` deletes without "
                             "asking.") from None
        if answer.strip().lower() not in ("y", "yes"):
            raise CloudError("Nothing was deleted. `python -m aws fetch RUN` keeps a run's "
                             "results; `cleanup --yes` skips this question.")
    ec2 = cloud.client("ec2")
    if found["instances"]:
        cloud.call("ec2", "terminate_instances", InstanceIds=found["instances"])
        # A security group cannot be deleted while an instance still uses it.
        ec2.get_waiter("instance_terminated").wait(InstanceIds=found["instances"])
    cancel_spot_requests(cloud, resources.MANAGED)
    for group_id in found["security groups"]:
        cloud.call("ec2", "delete_security_group", GroupId=group_id)
    for key_name in found["key pairs"]:
        cloud.call("ec2", "delete_key_pair", KeyName=key_name)
    resources.key_file(cloud.region).unlink(missing_ok=True)
    for bucket in found["buckets"]:
        empty_bucket(cloud, bucket)
        cloud.call("s3", "delete_bucket", Bucket=bucket)
    for profile in found["instance profiles"]:
        for role in cloud.call("iam", "get_instance_profile", InstanceProfileName=profile
                               )["InstanceProfile"]["Roles"]:
            cloud.call("iam", "remove_role_from_instance_profile",
                       InstanceProfileName=profile, RoleName=role["RoleName"])
        cloud.call("iam", "delete_instance_profile", InstanceProfileName=profile)
    for role in found["roles"]:
        for policy in cloud.call("iam", "list_role_policies", RoleName=role)["PolicyNames"]:
            cloud.call("iam", "delete_role_policy", RoleName=role, PolicyName=policy)
        cloud.call("iam", "delete_role", RoleName=role)
    cloud.out("Deleted.")


def find_everything(cloud):
    call = cloud.call
    return {
        "instances": [i["InstanceId"] for i in resources.instances(cloud, resources.MANAGED)],
        "security groups": [g["GroupId"] for g in call(
            "ec2", "describe_security_groups", Filters=resources.MANAGED)["SecurityGroups"]],
        "key pairs": [k["KeyName"] for k in call(
            "ec2", "describe_key_pairs", Filters=resources.MANAGED)["KeyPairs"]],
        "buckets": [b["Name"] for b in call("s3", "list_buckets")["Buckets"]
                    if is_managed_bucket_here(cloud, b["Name"])],
        "instance profiles": [p["InstanceProfileName"] for p in call(
            "iam", "list_instance_profiles", PathPrefix=resources.IAM_PATH)["InstanceProfiles"]],
        "roles": [r["RoleName"] for r in call(
            "iam", "list_roles", PathPrefix=resources.IAM_PATH)["Roles"]],
    }


def is_managed_bucket_here(cloud, bucket):
    try:
        tag_set = cloud.call("s3", "get_bucket_tagging", Bucket=bucket)["TagSet"]
        location = cloud.call("s3", "get_bucket_location", Bucket=bucket)["LocationConstraint"]
    except ClientError:  # untagged, or not ours to read
        return False
    in_region = (location or "us-east-1") == cloud.region
    return in_region and any(tag["Key"] == MANAGED_TAG for tag in tag_set)


def empty_bucket(cloud, bucket):
    pages = cloud.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            cloud.call("s3", "delete_objects", Bucket=bucket, Delete={"Objects": doomed})
