"""One AWS account and region, reached through boto3, or in a dry run, only described."""

import copy
import json

import boto3
from botocore.config import Config


class CloudError(Exception):
    """A problem the user can act on; the message names it and says what to do."""


NO_CREDENTIALS = (
    "No AWS credentials found. Configure them first: `aws configure` (access keys), "
    "`aws configure sso` then `aws sso login` (IAM Identity Center), or set AWS_PROFILE. "
    "`python -m aws launch ... --dry-run` needs none and shows what would happen."
)


def error_code(error):
    return error.response.get("Error", {}).get("Code", "")


class Cloud:
    """Makes the AWS calls of every command, so that a dry run can list each one instead.

    In a dry run no request leaves the machine: each call is written down, numbered, in
    `dry_run_lines`, and answers what its caller passed as `assume` (a placeholder answer,
    as if nothing of the tool's existed yet).
    """

    def __init__(self, region, endpoint_url=None, dry_run=False, session=None, out=print):
        self.region = region
        self.endpoint_url = endpoint_url
        self.dry_run = dry_run
        self.out = out
        self.dry_run_lines = []
        self._calls_listed = 0
        self._session = session or boto3.Session()
        self._clients = {}

    def client(self, service):
        if service not in self._clients:
            # Path-style S3 addresses work with any endpoint, including a local test server.
            config = Config(s3={"addressing_style": "path"}) if self.endpoint_url else None
            self._clients[service] = self._session.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        return self._clients[service]

    def call(self, service, operation, assume=None, **params):
        if self.dry_run:
            self.list_call(f"{service}.{operation}", params)
            return copy.deepcopy(assume)
        return getattr(self.client(service), operation)(**params)

    def upload_file(self, path, bucket, key, what):
        if self.dry_run:
            self.list_call("s3.upload_file", {"Filename": what, "Bucket": bucket, "Key": key})
            return
        self.client("s3").upload_file(str(path), bucket, key)

    def download_file(self, bucket, key, path):
        self.client("s3").download_file(bucket, key, str(path))

    def list_call(self, name, params):
        self._calls_listed += 1
        arguments = [f"{key}={_short_json(value)}" for key, value in params.items()]
        one_line = f"{self._calls_listed:>3}. {name}({', '.join(arguments)})"
        if len(one_line) <= 100:
            self.dry_run_lines.append(one_line)
            return
        self.dry_run_lines.append(f"{self._calls_listed:>3}. {name}(")
        self.dry_run_lines += [f"         {argument}," for argument in arguments]
        self.dry_run_lines.append("     )")


def _short_json(value):
    """A parameter as it would be sent, with texts of several lines abbreviated."""
    if isinstance(value, str) and "\n" in value:
        return f"<text of {value.count(chr(10)) + 1} lines>"
    return json.dumps(value, default=str)
