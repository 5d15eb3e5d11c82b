"""python -m aws launch: check, prepare and start a training instance, or show how."""

import json
import re
import secrets
import shlex
import tempfile
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from condgan import folders

from . import catalog, resources, storage
from .bootstrap import GPU_CHECK_STEPS, render_user_data, training_arguments, training_script
from .catalog import RUN_TAG
from .cloud import CloudError, error_code

# Answers of run_instances that mean "no capacity for you now", not a mistake of ours.
SPOT_UNFULFILLED = {"InsufficientInstanceCapacity", "InsufficientCapacity",
                    "UnfulfillableCapacity", "SpotMaxPriceTooLow",
                    "MaxSpotInstanceCountExceeded"}
# A new instance profile takes a few seconds to become usable everywhere in AWS.
PROFILE_RETRIES, PROFILE_WAIT_SECONDS = 6, 5


def new_run_id(name):
    """The launch time, to the second, and a random suffix: two launches in the same second
    (from two terminals, say) still get their own run, tag and S3 prefix."""
    return f"{name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def run_id_name(folder_name):
    """An image folder's name as the start of a run id: lower-case ASCII letters, digits and
    dashes ("Mes chats été" -> "mes-chats-ete"), as S3 keys, tags and shells take them."""
    ascii_name = unicodedata.normalize("NFKD", folder_name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:32].strip("-") or "folder"


def launch(cloud, options):
    """Checks everything it can before creating anything: first the local inputs, then, by
    reading only, the account; a launch that fails a check leaves nothing in AWS."""
    family = catalog.gpu_family(options.instance_type)
    known = catalog.INSTANCE_TYPES.get(options.instance_type)
    flags = {**options.training, **({"resume": True} if options.resume else {})}
    with tempfile.TemporaryDirectory() as scratch:
        folder = (storage.pack_image_folder(options.folder, options.training, scratch)
                  if options.folder is not None else None)
        run_name = folder.name if folder else options.recipe
        run_id = new_run_id(run_id_name(folder.name) if folder else options.recipe)
        script = training_script(options.recipe, folder and folder.name)
        cidr = ("<your public IP>/32" if cloud.dry_run and not options.ssh_cidr
                else resources.caller_cidr(options.ssh_cidr, options.ip_url))
        project = Path(scratch) / "project.tar.gz"
        project_files = storage.pack_project(project, skip=options.data_dir or options.folder)

        bucket = options.bucket or resources.default_bucket(cloud)
        train_args = training_arguments(flags, data_dir=not folder)
        show_plan(cloud, options, run_id, cidr, script + train_args, family, known, bucket,
                  folder)
        check_offered(cloud, options.instance_type)
        vcpus = check_vcpu_quota(cloud, options.instance_type, options.spot)
        image_id, root_device, login_user = find_image(cloud, options, family)
        price, price_note = hourly_price(cloud, options.instance_type, options.spot, known)
        resume_uri = options.resume and run_to_resume(cloud, options.resume, run_name, bucket)
        if resume_uri and folder and not options.training.get("folder_changed"):
            check_same_files(cloud, bucket, folder, options.resume)

        resources.ensure_bucket(cloud, bucket)
        prefix = resources.run_prefix(run_id)
        if storage.list_objects(cloud, bucket, prefix):  # one chance in 65,536 per second
            raise CloudError(f"s3://{bucket}/{prefix}/ is taken already: launch again.")
        cloud.upload_file(project, bucket, f"{prefix}/project.tar.gz",
                          what=f"<the project: {project_files} files>")
        folder_uri = folder and storage.upload_once(cloud, folder, bucket)
    data_uri = upload_data(cloud, options.data_dir, bucket)
    key_name = resources.ensure_key_pair(cloud)
    group_id = resources.ensure_security_group(cloud, cidr)
    profile, profile_is_new = resources.ensure_instance_profile(cloud, bucket)
    user_data = render_user_data(
        run_uri=f"s3://{bucket}/{prefix}", project_uri=f"s3://{bucket}/{prefix}/project.tar.gz",
        data_uri=data_uri, resume_uri=resume_uri, recipe=options.recipe,
        folder=folder and (folder.name, folder_uri, folder.sha256), flags=flags,
        gpu_stack=family.stack, max_hours=options.max_hours, region=cloud.region)
    request = instance_request(options, run_id, bucket, image_id, root_device, login_user,
                               key_name, group_id, profile, user_data)
    try:
        instance_id = start_instance(cloud, request, options, vcpus, profile_is_new)
    except (CloudError, ClientError):
        # Nothing runs: the uploaded project of this run is of no use to anyone.
        cloud.call("s3", "delete_object", Bucket=bucket, Key=f"{prefix}/project.tar.gz")
        raise
    # IfNoneMatch: S3 refuses to replace a record that exists (no instance is lost to it).
    cloud.call("s3", "put_object", Bucket=bucket, Key=f"{prefix}/launch.json", IfNoneMatch="*",
               ContentType="application/json", Body=json.dumps({
                   "run": run_id, "recipe": options.recipe, "run_folder": run_name,
                   "folder": folder and {"name": folder.name, "uri": folder_uri,
                                         "sha256": folder.sha256},
                   "instance": instance_id,
                   "instance_type": options.instance_type, "spot": options.spot,
                   "usd_per_hour": price, "max_hours": options.max_hours,
                   "region": cloud.region, "image": image_id,
                   "train_args": script + train_args,
                   "launched": datetime.now(timezone.utc).isoformat()}, indent=2))

    out = cloud.out
    if cloud.dry_run:
        show_dry_run(cloud, user_data)
        return run_id
    out(f"\nLaunched run {run_id}")
    out(f"  instance  {instance_id} ({options.instance_type}"
        f"{', spot' if options.spot else ''}) in {cloud.region}, image {image_id}")
    out(f"  price     {price_note}")
    out(f"  results   s3://{bucket}/{prefix}/")
    show_next_commands(cloud, options, run_id)
    return run_id


def upload_data(cloud, data_dir, bucket):
    """Uploads a local data folder, if there is one; returns its URI."""
    if not data_dir:
        return None
    data_prefix = f"data/{Path(data_dir).resolve().name}"
    storage.upload_folder(cloud, data_dir, bucket, data_prefix)
    return f"s3://{bucket}/{data_prefix}"


def resumed_run_folder(resume, run_name):
    """The key prefix of the run folder of run `resume`, named `run_name`."""
    return f"{resources.run_prefix(resume)}/output/{run_name}"


def run_to_resume(cloud, resume, run_name, bucket):
    """Where the run folder of the run to continue is, once it is known to be there."""
    prefix = resumed_run_folder(resume, run_name)
    if not storage.list_objects(cloud, bucket, prefix) and not cloud.dry_run:
        raise CloudError(f"--resume {resume}: s3://{bucket}/{prefix}/ holds no "
                         f"{run_name} run to continue.")
    return f"s3://{bucket}/{prefix}"


def check_same_files(cloud, bucket, folder, resume):
    """A resumed folder run goes on with the files it started with: the check that `cgan.py
    train --resume` makes on the instance against its run.json, made here before a machine
    is paid for. A record that cannot be read is left to the instance to judge."""
    if cloud.dry_run:
        return
    text = storage.read_text(cloud, bucket, f"{resumed_run_folder(resume, folder.name)}/run.json")
    try:
        recorded = json.loads(text or "{}").get("data", {}).get("files")
    except (ValueError, AttributeError):
        return
    change = recorded is not None and folders.changes(recorded, folder.manifest)
    if change:
        raise CloudError(f"{folder.name} changed since run {resume} started on it: {change}; "
                         "pass --folder-changed to go on with it as it is now, or launch a "
                         "new run without --resume.")


def instance_request(options, run_id, bucket, image_id, root_device, login_user, key_name,
                     group_id, profile, user_data):
    """The run_instances arguments: the machine, locked down, and set to end by itself."""
    run_tags = resources.tags(**{RUN_TAG: run_id})
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
            {"ResourceType": "instance", "Tags": resources.tags(**{
                "Name": f"cgan {run_id}", RUN_TAG: run_id, "cgan:bucket": bucket,
                "cgan:login-user": login_user})},
            {"ResourceType": "volume", "Tags": run_tags}])
    if options.spot:
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        request["TagSpecifications"].append(
            {"ResourceType": "spot-instances-request", "Tags": run_tags})
    return request


def show_dry_run(cloud, user_data):
    out = cloud.out
    out("\nAWS calls, in order; <...> marks what AWS would answer, and nothing of the "
        "tool's is assumed to exist yet:")
    for line in cloud.dry_run_lines:
        out(line)
    out("\nUser data of run_instances: the script the instance runs as root at first boot")
    for line in user_data.splitlines():
        out(f"  | {line}")
    out("\nNothing was created. To launch for real, run the same command without --dry-run.")


def show_plan(cloud, options, run_id, cidr, command, family, known, bucket, folder):
    out = cloud.out
    if cloud.dry_run:
        out("Dry run of launch: nothing is created and no request is sent to AWS, so no "
            "credentials are needed.\n")
    image = (f"{options.ami}, as given with --ami" if options.ami else
             f"the newest \"{family.image.name}\", from AWS's public SSM parameter, else "
             f"from describe_images by name and owner {catalog.DLAMI_OWNER}")
    market = "spot" if options.spot else "on-demand"
    disk_per_hour = catalog.ROOT_VOLUME_GB * catalog.EBS_GP3_USD_PER_GB_MONTH / 730
    out(f"  run         {run_id}")
    out(f"  training    python {shlex.join(command)}")
    for note in folder.notes if folder else []:
        out(f"  folder      {note}")
    if options.resume:
        out(f"  continues   {options.resume}, from the last checkpoint it copied to S3")
    out(f"  machine     {options.instance_type}"
        f"{f' ({known.gpu})' if known else ''}, {market}, in {cloud.region}")
    out(f"  image       {image}")
    out(f"  GPU stack   TensorFlow 2.21.0, CUDA 12.5, cuDNN {family.stack.cudnn}, pinned for "
        f"the {family.gpu} (compute capability {family.compute_capability})")
    out(f"  GPU check   {GPU_CHECK_STEPS} training steps and a generate before the long run; "
        "if they fail, the machine says why in `status` and terminates")
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
    if family.image is catalog.PROPRIETARY_DRIVER_AMI:
        cheapest = catalog.DEFAULT_INSTANCE_TYPE
        cost = (f"it costs ${known.on_demand_usd_per_hour:.2f}/h on-demand against "
                f"${catalog.INSTANCE_TYPES[cheapest].on_demand_usd_per_hour:.2f}/h for a "
                f"{cheapest}, " if known else "")
        out(f"  warning     {options.instance_type} is the book's choice, not a recommended "
            f"one: only an Amazon Linux 2 image still drives its {family.gpu}, and that "
            f"system's support ended on {family.image.supported_until.split()[0]} (no more "
            f"security patches); {cost}and many regions no longer offer P3. Prefer "
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
    """Stops early, with the way out, when the account may not run the machine at all.

    Returns the number of vCPUs the machine needs."""
    vcpus = cloud.call("ec2", "describe_instance_types", InstanceTypes=[instance_type],
                       assume={"InstanceTypes": [{"VCpuInfo": {"DefaultVCpus": "<vCPUs>"}}]}
                       )["InstanceTypes"][0]["VCpuInfo"]["DefaultVCpus"]
    quota = catalog.vcpu_quota(instance_type, spot)
    if quota is None:
        return vcpus
    try:
        allowed = cloud.call("service-quotas", "get_service_quota", ServiceCode="ec2",
                             QuotaCode=quota.code,
                             assume={"Quota": {"Value": "<vCPUs allowed>"}})["Quota"]["Value"]
    except ClientError as error:  # no permission to read quotas, or no such quota here
        cloud.out(f"Could not read the quota \"{quota.name}\" ({error_code(error)}); "
                  "going on.")
        return vcpus
    if not cloud.dry_run and allowed < vcpus:
        raise CloudError(quota_message(quota, instance_type, vcpus, cloud.region,
                                       f"may run {allowed:g} vCPUs of"))
    return vcpus


def quota_message(quota, instance_type, vcpus, region, what_the_account_has):
    return (
        f"Your AWS account {what_the_account_has} \"{quota.name}\" in {region}, and a "
        f"{instance_type} needs {vcpus}. Ask AWS to raise the quota (it is free; approval "
        "takes from minutes to a few days): `aws service-quotas "
        f"request-service-quota-increase --region {region} --service-code ec2 --quota-code "
        f"{quota.code} --desired-value {vcpus}`, or in the console: Service Quotas > "
        f"Amazon EC2 > \"{quota.name}\".")


def find_image(cloud, options, gpu_family):
    """The AMI id, its root device, and the SSH user it comes with."""
    family = gpu_family.image
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


def start_instance(cloud, request, options, vcpus, profile_is_new):
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
            quota = catalog.vcpu_quota(options.instance_type, options.spot)
            if code == "VcpuLimitExceeded" and quota:
                raise CloudError(quota_message(quota, options.instance_type, vcpus,
                                               cloud.region, "has too few vCPUs left of")
                                 ) from None
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
