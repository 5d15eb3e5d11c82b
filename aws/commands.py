"""The commands: launch a run, follow it, bring its results home, stop paying for it."""

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from . import catalog, resources, storage
from .bootstrap import WORK_DIR, render_user_data, training_arguments
from .catalog import MANAGED_TAG, RUN_TAG
from .cloud import CloudError, error_code

TRAINING_FLAGS = ("epochs", "max_steps", "batch_size", "z_dim", "learning_rate", "beta1",
                  "save_every", "seed", "resume")

# Answers of run_instances that mean "no spot capacity for you now", not a mistake of ours.
SPOT_UNFULFILLED = {"InsufficientInstanceCapacity", "InsufficientCapacity",
                    "UnfulfillableCapacity", "SpotMaxPriceTooLow",
                    "MaxSpotInstanceCountExceeded"}
# A new instance profile takes a few seconds to become usable everywhere in AWS.
PROFILE_RETRIES, PROFILE_WAIT_SECONDS = 6, 5


def new_run_id(recipe):
    return f"{recipe}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def run_prefix(run_id):
    return f"runs/{run_id}"


# ---------------------------------------------------------------------------------- launch

def launch(cloud, options):
    run_id = new_run_id(options.recipe)
    cidr = ("<your public IP>/32" if cloud.dry_run and not options.ssh_cidr
            else resources.caller_cidr(options.ssh_cidr, options.ip_url))
    flags = {name: getattr(options, name) for name in TRAINING_FLAGS}
    train_args = training_arguments(flags, with_data=options.data_dir is not None)
    known = catalog.INSTANCE_TYPES.get(options.instance_type)
    bucket = options.bucket or resources.default_bucket(cloud)
    show_plan(cloud, options, run_id, cidr, train_args, known, bucket)

    check_offered(cloud, options.instance_type)
    check_vcpu_quota(cloud, options.instance_type, options.spot)
    image_id, root_device, login_user = find_image(cloud, options)
    price, price_note = hourly_price(cloud, options.instance_type, options.spot, known)

    resources.ensure_bucket(cloud, bucket)
    prefix = run_prefix(run_id)
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "project.tar.gz"
        count = storage.pack_project(archive, skip=options.data_dir)
        cloud.upload_file(archive, bucket, f"{prefix}/project.tar.gz",
                          what=f"<the project: {count} files>")
    data_uri = None
    if options.data_dir:
        data_prefix = f"data/{Path(options.data_dir).resolve().name}"
        storage.upload_folder(cloud, options.data_dir, bucket, data_prefix)
        data_uri = f"s3://{bucket}/{data_prefix}"
    key_name = resources.ensure_key_pair(cloud)
    group_id = resources.ensure_security_group(cloud, cidr)
    profile, profile_is_new = resources.ensure_instance_profile(cloud, bucket)

    user_data = render_user_data(
        run_uri=f"s3://{bucket}/{prefix}", project_uri=f"s3://{bucket}/{prefix}/project.tar.gz",
        data_uri=data_uri, recipe=options.recipe, train_args=train_args,
        max_hours=options.max_hours, region=cloud.region)
    instance_tags = resources.tags(**{
        "Name": f"cgan {run_id}", RUN_TAG: run_id, "cgan:bucket": bucket,
        "cgan:login-user": login_user, "cgan:usd-per-hour": f"{price:.4f}" if price else "?"})
    request = dict(
        ImageId=image_id, InstanceType=options.instance_type, MinCount=1, MaxCount=1,
        KeyName=key_name, SecurityGroupIds=[group_id], IamInstanceProfile={"Name": profile},
        UserData=user_data,
        # A shutdown from inside (end of training, failure, time limit) ends all billing.
        InstanceInitiatedShutdownBehavior="terminate",
        # IMDSv2 only, and one network hop: the training container cannot reach the
        # instance's credentials.
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled",
                         "HttpPutResponseHopLimit": 1},
        BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {
            "VolumeSize": catalog.ROOT_VOLUME_GB, "VolumeType": "gp3", "Encrypted": True,
            "DeleteOnTermination": True}}],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": instance_tags},
            {"ResourceType": "volume", "Tags": resources.tags(**{RUN_TAG: run_id})}])
    if options.spot:
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        request["TagSpecifications"].append({"ResourceType": "spot-instances-request",
                                             "Tags": resources.tags(**{RUN_TAG: run_id})})
    instance_id = start_instance(cloud, request, options, profile_is_new)
    cloud.call("s3", "put_object", Bucket=bucket, Key=f"{prefix}/launch.json",
               ContentType="application/json", Body=json.dumps({
                   "run": run_id, "recipe": options.recipe, "instance": instance_id,
                   "instance_type": options.instance_type, "spot": options.spot,
                   "usd_per_hour": price, "max_hours": options.max_hours,
                   "region": cloud.region, "image": image_id, "train_args": train_args,
                   "launched": datetime.now(timezone.utc).isoformat()}, indent=2))

    out = cloud.out
    if cloud.dry_run:
        out("\nAWS calls, in order; <...> marks what AWS would answer, and nothing of the "
            "tool's is assumed to exist yet:")
        for line in cloud.dry_run_lines:
            out(line)
        out("\nUser data of run_instances: the script the instance runs as root at first boot")
        for line in user_data.splitlines():
            out(f"  | {line}")
        out("\nNothing was created. To launch for real, run the same command without "
            "--dry-run.")
        return run_id
    out(f"\nLaunched run {run_id}")
    out(f"  instance  {instance_id} ({options.instance_type}"
        f"{', spot' if options.spot else ''}) in {cloud.region}, image {image_id}")
    out(f"  price     {price_note}")
    out(f"  results   s3://{bucket}/{prefix}/")
    show_next_commands(cloud, options, run_id)
    return run_id


def show_plan(cloud, options, run_id, cidr, train_args, known, bucket):
    out = cloud.out
    if cloud.dry_run:
        out("Dry run of launch: nothing is created and no request is sent to AWS, so no "
            "credentials are needed.\n")
    family = catalog.ami_family(options.instance_type)
    image = (f"{options.ami}, as given with --ami" if options.ami else
             f"the newest \"{family.name}\", from AWS's public SSM parameter, else from "
             f"describe_images by name and owner {catalog.DLAMI_OWNER}")
    market = "spot" if options.spot else "on-demand"
    disk_per_hour = catalog.ROOT_VOLUME_GB * catalog.EBS_GP3_USD_PER_GB_MONTH / 730
    out(f"  run         {run_id}")
    out(f"  training    python run_{options.recipe}.py {' '.join(train_args)}")
    out(f"  machine     {options.instance_type}"
        f"{f' ({known.gpu})' if known else ''}, {market}, in {cloud.region}")
    out(f"  image       {image}")
    if known:
        on_demand = known.on_demand_usd_per_hour
        price = (f"the spot price read at launch, at most the on-demand ${on_demand:.2f}/h"
                 if options.spot else f"${on_demand:.2f}/h on-demand")
        out(f"  price       {price} (us-east-1 list price; other regions differ a little)")
        out(f"  worst case  ${on_demand * options.max_hours:.2f} for the machine and "
            f"${disk_per_hour * options.max_hours:.2f} for its {catalog.ROOT_VOLUME_GB} GB "
            f"disk, if it runs the full --max-hours {options.max_hours:g}")
    else:
        out("  price       unknown for this type: see https://aws.amazon.com/ec2/pricing/")
    out(f"  stops       when training ends or fails, or after {options.max_hours:g} h: the "
        "machine powers off and terminates itself")
    out(f"  access      SSH (port 22) from {cidr} only; no other port is open; Jupyter "
        "through an SSH tunnel")
    out(f"  results     copied every 5 minutes and at the end to s3://{bucket}/runs/{run_id}/")
    if known and not known.recommended:
        out(f"  note        {options.instance_type} is the book's choice, not a recommended "
            "one: only an Amazon Linux 2 image, whose updates end in mid-2026, still drives "
            "a V100, and many regions no longer offer P3. Prefer "
            f"--instance-type {', '.join(catalog.RECOMMENDED_TYPES)}.")


def check_offered(cloud, instance_type):
    offered = cloud.call(
        "ec2", "describe_instance_type_offerings", LocationType="region",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        assume={"InstanceTypeOfferings": [{"InstanceType": instance_type}]})
    if offered["InstanceTypeOfferings"]:
        return
    alternatives = cloud.call(
        "ec2", "describe_instance_type_offerings", LocationType="region",
        Filters=[{"Name": "instance-type", "Values": catalog.RECOMMENDED_TYPES}])
    names = sorted(o["InstanceType"] for o in alternatives["InstanceTypeOfferings"])
    raise CloudError(
        f"{instance_type} is not offered in {cloud.region}. "
        + (f"Recommended types offered there: {', '.join(names)} (--instance-type). "
           if names else "")
        + "Or choose another region with --region.")


def check_vcpu_quota(cloud, instance_type, spot):
    """Stops early, with the way out, when the account may not run the machine at all."""
    quota = catalog.vcpu_quota(instance_type, spot)
    if quota is None:
        return
    vcpus = cloud.call("ec2", "describe_instance_types", InstanceTypes=[instance_type],
                       assume={"InstanceTypes": [{"VCpuInfo": {"DefaultVCpus": "<vCPUs>"}}]}
                       )["InstanceTypes"][0]["VCpuInfo"]["DefaultVCpus"]
    try:
        value = cloud.call("service-quotas", "get_service_quota", ServiceCode="ec2",
                           QuotaCode=quota.code,
                           assume={"Quota": {"Value": "<vCPUs allowed>"}})["Quota"]["Value"]
    except ClientError as error:  # no permission to read quotas, or no such quota here
        cloud.out(f"Could not read the quota \"{quota.name}\" ({error_code(error)}); "
                  "going on.")
        return
    if not cloud.dry_run and value < vcpus:
        raise CloudError(quota_message(quota, instance_type, vcpus, value, cloud.region))


def quota_message(quota, instance_type, vcpus, value, region):
    return (
        f"Your AWS account may run {value:g} vCPUs of \"{quota.name}\" in {region}, and a "
        f"{instance_type} needs {vcpus}. Ask AWS to raise the quota (it is free; approval "
        "takes from minutes to a few days):\n"
        f"  aws service-quotas request-service-quota-increase --region {region} "
        f"--service-code ec2 --quota-code {quota.code} --desired-value {vcpus}\n"
        f"or in the console: Service Quotas > Amazon EC2 > \"{quota.name}\".")


def find_image(cloud, options):
    """The AMI id, its root device, and the SSH user it comes with."""
    family = catalog.ami_family(options.instance_type)
    image_id = options.ami
    if image_id is None:
        try:
            image_id = cloud.call("ssm", "get_parameter", Name=family.ssm_parameter,
                                  assume={"Parameter": {"Value": "<ami-id>"}}
                                  )["Parameter"]["Value"]
        except ClientError as error:
            if error_code(error) not in ("ParameterNotFound", "AccessDeniedException"):
                raise
    if image_id is None:
        found = cloud.call("ec2", "describe_images", Owners=[catalog.DLAMI_OWNER], Filters=[
            {"Name": "name", "Values": [family.name_pattern]},
            {"Name": "state", "Values": ["available"]}])["Images"]
        if not found:
            raise CloudError(f"No \"{family.name}\" image in {cloud.region}. Pin one with "
                             "--ami, or try another region.")
        image_id = max(found, key=lambda image: image["CreationDate"])["ImageId"]
    image = cloud.call("ec2", "describe_images", ImageIds=[image_id], assume={"Images": [{
        "Name": family.name, "RootDeviceName": "<root device of the image>"}]})["Images"][0]
    login_user = (catalog.login_user_of_image(image["Name"]) if options.ami
                  else family.login_user)
    return image_id, image["RootDeviceName"], login_user


def hourly_price(cloud, instance_type, spot, known):
    """The price per hour the launch assumes, and a sentence that says where it comes from."""
    on_demand = known.on_demand_usd_per_hour if known else None
    if not spot:
        if on_demand is None:
            return None, "unknown for this type: see https://aws.amazon.com/ec2/pricing/"
        return on_demand, f"${on_demand:.3f}/h on-demand (us-east-1 list price)"
    history = cloud.call(
        "ec2", "describe_spot_price_history", InstanceTypes=[instance_type],
        ProductDescriptions=["Linux/UNIX"], StartTime=datetime.now(timezone.utc),
        assume={"SpotPriceHistory": []})["SpotPriceHistory"]
    if not history:
        return on_demand, "spot, at most the on-demand price"
    # The instance may start in any zone of the region: assume the dearest.
    price = max(float(entry["SpotPrice"]) for entry in history)
    return price, f"${price:.3f}/h spot now (the dearest zone), at most the on-demand price"


def start_instance(cloud, request, options, profile_is_new):
    for attempt in range(PROFILE_RETRIES):
        try:
            reservation = cloud.call("ec2", "run_instances", **request,
                                     assume={"Instances": [{"InstanceId": "<instance-id>"}]})
            return reservation["Instances"][0]["InstanceId"]
        except ClientError as error:
            code = error_code(error)
            message = error.response["Error"].get("Message", "")
            if (profile_is_new and code == "InvalidParameterValue"
                    and "iamInstanceProfile" in message and attempt + 1 < PROFILE_RETRIES):
                time.sleep(PROFILE_WAIT_SECONDS)
                continue
            if code == "VcpuLimitExceeded":
                quota = catalog.vcpu_quota(options.instance_type, options.spot)
                raise CloudError(f"{message}\n" + (quota_message(
                    quota, options.instance_type, "more", "not enough", cloud.region)
                    if quota else "")) from None
            if code in SPOT_UNFULFILLED:
                market = "spot request" if options.spot else "launch"
                raise CloudError(
                    f"The {market} for a {options.instance_type} in {cloud.region} was not "
                    f"fulfilled ({code}: {message}). Nothing is running, nothing is billed. "
                    "Try again later, another region (--region), another type "
                    f"(--instance-type {catalog.RECOMMENDED_TYPES[0]})"
                    + (", or on-demand (without --spot)." if options.spot else ".")) from None
            raise


def show_next_commands(cloud, options, run_id):
    where = f" --region {cloud.region}" + (f" --bucket {options.bucket}" if options.bucket else "")
    cloud.out("Next:")
    for command, why in [
            (f"status {run_id}", "where it is, and what it has cost so far"),
            (f"logs {run_id}", "the training log"),
            (f"jupyter {run_id}", "Jupyter through an SSH tunnel"),
            (f"fetch {run_id}", "the run folder, into runs/ here"),
            (f"terminate {run_id}", "stop paying now; the results stay in S3"),
            ("cleanup", "delete everything the tool created, results included")]:
        cloud.out(f"  python -m aws {command}{where}\n      {why}")


# ------------------------------------------------------------------------- following a run

def status(cloud, options):
    bucket = options.bucket or resources.default_bucket(cloud)
    prefix = run_prefix(options.run)
    launched = storage.read_text(cloud, bucket, f"{prefix}/launch.json")
    found = resources.instances(cloud, resources.run_filter(options.run),
                                states=("pending", "running", "shutting-down", "stopping",
                                        "stopped", "terminated"))
    if launched is None and not found:
        raise CloudError(f"No run {options.run} in s3://{bucket} or among the instances of "
                         f"{cloud.region} (another --region or --bucket?).")
    out = cloud.out
    out(f"run       {options.run}")
    for instance in found:
        started = instance["LaunchTime"]
        hours = (datetime.now(timezone.utc) - started).total_seconds() / 3600
        price = resources.tag_value(instance, "cgan:usd-per-hour")
        state = instance["State"]["Name"]
        out(f"instance  {instance['InstanceId']} ({instance['InstanceType']}) {state}, "
            f"launched {started:%Y-%m-%d %H:%M} UTC")
        if state in ("pending", "running") and price not in (None, "?"):
            out(f"cost      about ${hours * float(price):.2f} so far, at ${float(price):.3f}/h")
    if not found:
        out("instance  gone (terminated instances drop out of sight after about an hour)")
    state = storage.read_text(cloud, bucket, f"{prefix}/logs/state")
    out(f"training  {state.strip() if state else 'not started yet (installing takes minutes)'}")
    results = storage.list_objects(cloud, bucket, f"{prefix}/output")
    out(f"results   s3://{bucket}/{prefix}/output/ ({len(results)} files)")


def logs(cloud, options):
    bucket = options.bucket or resources.default_bucket(cloud)
    name = "bootstrap.log" if options.bootstrap else "train.log"
    text = storage.read_text(cloud, bucket, f"{run_prefix(options.run)}/logs/{name}")
    if text is None:
        raise CloudError(
            f"No {name} for {options.run} in s3://{bucket} yet: the instance copies its logs "
            "every 5 minutes once training starts. `--bootstrap` shows the install log.")
    cloud.out(text.rstrip("\n"))


def fetch(cloud, options):
    bucket = options.bucket or resources.default_bucket(cloud)
    folder = Path(options.to) if options.to else Path("runs") / options.run
    prefix = f"{run_prefix(options.run)}/output"
    paths = storage.download_folder(cloud, bucket, prefix, folder)
    if not paths:
        raise CloudError(f"Nothing under s3://{bucket}/{prefix}/ yet: "
                         f"see `python -m aws status {options.run}`.")
    cloud.out(f"{len(paths)} files into {folder}/")
    for pickle in sorted(p for p in paths if p.suffix == ".pkl"):
        cloud.out(f"the trained model: {pickle} (pickle.load it, then generate_new)")


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
        answer = input("The buckets hold every run's results. Delete them all? [y/N] ")
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
