"""A local AWS for the aws/ tests: moto's server on 127.0.0.1, and an environment that
cannot reach the real AWS or any other host."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from condgan.aws import catalog

# Deep Learning AMIs as AWS would list them (moto has none, and no SSM parameters for them):
# two releases of the open-driver image, to check that the newest is chosen, and the
# proprietary-driver image that P3 needs.
OPEN_DRIVER_OLD = "ami-0000000000000a001"
OPEN_DRIVER_NEW = "ami-0000000000000a002"
PROPRIETARY_DRIVER = "ami-0000000000000b001"
DEEP_LEARNING_AMIS = [
    (OPEN_DRIVER_OLD, f"{catalog.OPEN_DRIVER_AMI.name} 20260105", "2026-01-05T00:00:00.000Z"),
    (OPEN_DRIVER_NEW, f"{catalog.OPEN_DRIVER_AMI.name} 20260301", "2026-03-01T00:00:00.000Z"),
    (PROPRIETARY_DRIVER, f"{catalog.PROPRIETARY_DRIVER_AMI.name} Version 71.6",
     "2026-01-02T00:00:00.000Z"),
]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    """One moto server for the whole session; each test starts from a reset state."""
    amis = tmp_path_factory.mktemp("moto") / "amis.json"
    amis.write_text(json.dumps([{
        "ami_id": ami_id, "name": name, "description": name, "creation_date": created,
        "owner_id": catalog.DLAMI_OWNER, "public": True, "virtualization_type": "hvm",
        "architecture": "x86_64", "state": "available", "platform": None,
        "image_type": "machine", "image_location": f"amazon/{name}", "hypervisor": "xen",
        "root_device_type": "ebs", "root_device_name": "/dev/sda1", "sriov": "simple",
    } for ami_id, name, created in DEEP_LEARNING_AMIS]))
    port = free_port()
    # moto reads MOTO_AMIS_PATH when it loads its EC2 models: it must be in the server's
    # environment from the start.
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_AMIS_PATH": str(amis)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("moto's server did not start") from None
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def local_aws(moto_url, tmp_path, monkeypatch):
    """Fake credentials, every AWS endpoint on moto, and no way out to the internet."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Anything not on this machine goes to a closed port and fails at once.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where the SSH key is saved
    return moto_url
