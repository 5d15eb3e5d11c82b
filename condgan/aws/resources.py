"""The AWS resources the tool owns: found by tag and reused, or created and tagged."""

import argparse
import ipaddress
import json
import os
import urllib.request
from pathlib import Path

from botocore.exceptions import ClientError

from .catalog import MANAGED_TAG, RUN_TAG
from .cloud import CloudError, error_code

KEY_NAME = "cgan"
SECURITY_GROUP_NAME = "cgan-ssh"
ROLE_NAME = "cgan-training"  # also the instance profile's name
IAM_PATH = "/cgan/"
DEFAULT_IP_URL = "https://checkip.amazonaws.com"

# The widest network that --ssh-cidr may open SSH to: an office, not the internet.
WIDEST_PREFIX = {4: 16, 6: 48}


def tags(**extra):
    return [{"Key": MANAGED_TAG, "Value": "true"}] + [
        {"Key": key, "Value": value} for key, value in extra.items()]


def tag_value(resource, key):
    return next((tag["Value"] for tag in resource.get("Tags", []) if tag["Key"] == key), None)


MANAGED = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]


def run_prefix(run_id):
    """Where a run keeps its files in the bucket."""
    return f"runs/{run_id}"


def run_filter(run_id):
    return MANAGED + [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}]


def account_id(cloud):
    return cloud.call("sts", "get_caller_identity", assume={"Account": "<account-id>"})["Account"]


def default_bucket(cloud):
    """The bucket of every run, unless --bucket names another: one per account and region."""
    return f"cgan-runs-{account_id(cloud)}-{cloud.region}"


def ensure_bucket(cloud, bucket):
    mine = cloud.call("s3", "list_buckets", assume={"Buckets": []})["Buckets"]
    if any(found["Name"] == bucket for found in mine):
        return
    location = ({} if cloud.region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": cloud.region}})
    try:
        cloud.call("s3", "create_bucket", Bucket=bucket, **location)
    except ClientError as error:
        if error_code(error) == "BucketAlreadyExists":
            raise CloudError(
                f"The bucket name {bucket} belongs to another AWS account (bucket names are "
                "shared by everyone). Choose another name with --bucket."
            ) from None
        raise
    cloud.call("s3", "put_public_access_block", Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    cloud.call("s3", "put_bucket_tagging", Bucket=bucket, Tagging={"TagSet": tags()})


def key_file(region):
    return Path.home() / ".ssh" / f"cgan-{region}.pem"


def ensure_key_pair(cloud):
    """The tool's SSH key pair in this region, whose private key is kept in ~/.ssh."""
    path = key_file(cloud.region)
    found = cloud.call("ec2", "describe_key_pairs", Filters=MANAGED,
                       assume={"KeyPairs": []})["KeyPairs"]
    if found and path.exists():
        return found[0]["KeyName"]
    for lost in found:  # ours, but its private key is gone from this machine: replace it
        cloud.call("ec2", "delete_key_pair", KeyName=lost["KeyName"])
    created = cloud.call(
        "ec2", "create_key_pair", KeyName=KEY_NAME, KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags()}],
        assume={"KeyName": KEY_NAME})
    if cloud.dry_run:
        cloud.dry_run_lines.append(
            f"     (the private key would be saved to {path}, readable by you only)")
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(created["KeyMaterial"])
    return created["KeyName"]


def ssh_network(text):
    """--ssh-cidr: an address or a network, no wider than an office (argparse type)."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IP address or network such as 203.0.113.7/32, got {text!r}") from None
    if network.prefixlen < WIDEST_PREFIX[network.version]:
        raise argparse.ArgumentTypeError(
            f"{text} would let {network.num_addresses:,} addresses try SSH; give your own "
            f"address or a network of at most /{WIDEST_PREFIX[network.version]}")
    return str(network)


def caller_cidr(ssh_cidr=None, ip_url=DEFAULT_IP_URL):
    """The network that may SSH to the instance: --ssh-cidr, else this machine's address."""
    if ssh_cidr:
        return ssh_cidr
    try:
        with urllib.request.urlopen(ip_url, timeout=10) as response:
            address = ipaddress.ip_address(response.read().decode().strip())
    except (OSError, ValueError) as error:
        raise CloudError(
            f"Could not learn this machine's public address from {ip_url} ({error}). "
            "Give it with --ssh-cidr, for example --ssh-cidr 203.0.113.7/32."
        ) from None
    return f"{address}/{address.max_prefixlen}"


def ssh_rule(cidr):
    why = "SSH from the launching machine"
    ranges = ({"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": why}]} if ":" in cidr
              else {"IpRanges": [{"CidrIp": cidr, "Description": why}]})
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}


def _who_may_enter(rules):
    """What a group's ingress rules let in, in a form that compares equal across calls."""
    return sorted(
        (rule["IpProtocol"], rule.get("FromPort"), rule.get("ToPort"),
         sorted(r["CidrIp"] for r in rule.get("IpRanges", [])),
         sorted(r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])),
         len(rule.get("UserIdGroupPairs", [])) + len(rule.get("PrefixListIds", [])))
        for rule in rules)


def ensure_security_group(cloud, cidr):
    """The tool's security group, whose one rule lets SSH in from `cidr` and nothing else."""
    vpcs = cloud.call("ec2", "describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}],
                      assume={"Vpcs": [{"VpcId": "<default-vpc-id>"}]})["Vpcs"]
    if not vpcs:
        raise CloudError(f"{cloud.region} has no default VPC to launch into; create one with "
                         f"`aws ec2 create-default-vpc --region {cloud.region}`.")
    vpc_id = vpcs[0]["VpcId"]
    groups = cloud.call(
        "ec2", "describe_security_groups",
        Filters=MANAGED + [{"Name": "vpc-id", "Values": [vpc_id]}],
        assume={"SecurityGroups": []})["SecurityGroups"]
    if groups:
        group_id, rules = groups[0]["GroupId"], groups[0]["IpPermissions"]
    else:
        group_id = cloud.call(
            "ec2", "create_security_group", GroupName=SECURITY_GROUP_NAME, VpcId=vpc_id,
            Description="SSH to cgan training instances, from one address only",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags()}],
            assume={"GroupId": "<security-group-id>"})["GroupId"]
        rules = []
    wanted = ssh_rule(cidr)
    if _who_may_enter(rules) != _who_may_enter([wanted]):
        if rules:  # an address from an earlier launch, or a rule added by hand
            cloud.call("ec2", "revoke_security_group_ingress", GroupId=group_id,
                       IpPermissions=rules)
        cloud.call("ec2", "authorize_security_group_ingress", GroupId=group_id,
                   IpPermissions=[wanted])
    return group_id


def ensure_instance_profile(cloud, bucket):
    """The instance's role: it may read and write the bucket's runs/ and data/, and read its
    folders/ (the image folders' archives), nothing else.

    Returns the profile's name and whether it was just created (AWS takes a few seconds to
    let a new profile be used)."""
    roles = cloud.call("iam", "list_roles", PathPrefix=IAM_PATH, assume={"Roles": []})["Roles"]
    if not any(role["RoleName"] == ROLE_NAME for role in roles):
        cloud.call("iam", "create_role", RoleName=ROLE_NAME, Path=IAM_PATH, Tags=tags(),
                   Description="cgan training instances: copy runs to and from S3",
                   AssumeRolePolicyDocument=json.dumps({
                       "Version": "2012-10-17", "Statement": [{
                           "Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    cloud.call("iam", "put_role_policy", RoleName=ROLE_NAME, PolicyName=f"s3-{bucket}",
               PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                   {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/runs/*",
                                 f"arn:aws:s3:::{bucket}/data/*"]},
                   {"Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/folders/*"},
                   {"Effect": "Allow", "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{bucket}"}]}))
    profiles = cloud.call("iam", "list_instance_profiles", PathPrefix=IAM_PATH,
                          assume={"InstanceProfiles": []})["InstanceProfiles"]
    profile = next((p for p in profiles if p["InstanceProfileName"] == ROLE_NAME), None)
    if profile is None:
        cloud.call("iam", "create_instance_profile", InstanceProfileName=ROLE_NAME,
                   Path=IAM_PATH, Tags=tags())
    if profile is None or not profile["Roles"]:
        cloud.call("iam", "add_role_to_instance_profile", InstanceProfileName=ROLE_NAME,
                   RoleName=ROLE_NAME)
    return ROLE_NAME, profile is None


def instances(cloud, filters, states=("pending", "running", "stopping", "stopped")):
    """The tool's instances that match the filters, in the given states."""
    pages = cloud.client("ec2").get_paginator("describe_instances").paginate(
        Filters=filters + [{"Name": "instance-state-name", "Values": list(states)}])
    return [instance for page in pages
            for reservation in page["Reservations"] for instance in reservation["Instances"]]
