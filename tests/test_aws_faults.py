"""Issue 24's `python -m aws` cases: a fetch never replaces newer local work, run ids never
collide, cleanup without any stdin, and S3 keys that cannot all be files."""

import json
import subprocess
import sys
from datetime import datetime, timezone

import boto3
import pytest

pytest_plugins = ["aws_fixtures"]
pytest.register_assert_rewrite("aws_fixtures")
from test_aws_commands import (BUCKET, assert_one_line_error, cli, launch,  # noqa: E402
                               put_run_folder)


def run_folder_at(step, losses=b"step,d_loss,g_loss\n"):
    """The files of an MNIST run folder whose newest checkpoint is of `step`."""
    return {"mnist/run.json": json.dumps({"recipe": "mnist", "step": step}).encode(),
            "mnist/losses.csv": losses,
            f"mnist/mnist-{step}.index": b"index",
            f"mnist/mnist-{step}.data-00000-of-00001": b"data"}


def test_fetch_refuses_to_replace_a_local_copy_that_went_further(local_aws, tmp_path):
    run_id, _ = launch()
    put_run_folder(run_id, {f"output/{name}": content
                            for name, content in run_folder_at(6).items()})
    home = tmp_path / "home-run"
    assert cli("fetch", run_id, "--to", str(home)).returncode == 0
    # The local copy is resumed to step 9: its history and record are newer than S3's.
    (home / "mnist" / "mnist-9.index").write_bytes(b"index 9")
    (home / "mnist" / "losses.csv").write_bytes(b"nine steps")
    (home / "mnist" / "run.json").write_bytes(b"step 9")

    finished = cli("fetch", run_id, "--to", str(home))

    assert_one_line_error(finished, "step 9", "step 6", str(home / "mnist"))
    assert (home / "mnist" / "losses.csv").read_bytes() == b"nine steps"
    assert (home / "mnist" / "run.json").read_bytes() == b"step 9"


def test_fetch_of_a_copy_that_went_further_in_s3_brings_it_home(local_aws, tmp_path):
    run_id, _ = launch()
    put_run_folder(run_id, {f"output/{name}": content
                            for name, content in run_folder_at(6).items()})
    home = tmp_path / "home-run"
    assert cli("fetch", run_id, "--to", str(home)).returncode == 0
    put_run_folder(run_id, {f"output/{name}": content
                            for name, content in run_folder_at(12, b"twelve").items()})
    assert cli("fetch", run_id, "--to", str(home)).returncode == 0
    assert (home / "mnist" / "losses.csv").read_bytes() == b"twelve"


def test_keys_that_cannot_all_be_files_are_named_and_nothing_is_downloaded(local_aws,
                                                                          tmp_path):
    run_id, _ = launch()
    put_run_folder(run_id, {"output/mnist/a": b"a file", "output/mnist/a/b": b"below it",
                            "output/mnist/losses.csv": b"d,g\n"})
    target = tmp_path / "home-run"

    finished = cli("fetch", run_id, "--to", str(target))

    assert_one_line_error(finished, f"runs/{run_id}/output/mnist/a",
                          f"runs/{run_id}/output/mnist/a/b")
    assert not target.exists()


def test_a_key_below_a_local_file_is_refused_before_anything_is_downloaded(local_aws,
                                                                          tmp_path):
    run_id, _ = launch()
    put_run_folder(run_id, {"output/mnist/losses.csv": b"d,g\n",
                            "output/mnist/a/b": b"below a"})
    target = tmp_path / "home-run"
    (target / "mnist").mkdir(parents=True)
    (target / "mnist" / "a").write_text("mine")

    finished = cli("fetch", run_id, "--to", str(target))

    assert_one_line_error(finished, f"runs/{run_id}/output/mnist/a/b", str(target / "mnist" / "a"))
    assert sorted(p.name for p in (target / "mnist").iterdir()) == ["a"]
    assert (target / "mnist" / "a").read_text() == "mine"


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 12, 7, 9, 37, 14, tzinfo=timezone.utc)


def test_two_launches_in_the_same_second_get_their_own_run_ids_and_records(local_aws,
                                                                          monkeypatch):
    monkeypatch.setattr("condgan.aws.launch.datetime", FrozenClock)
    first, _ = launch()
    second, _ = launch()
    assert first != second
    assert first.startswith("mnist-20261207-093714") and second.startswith("mnist-20261207-093714")
    s3 = boto3.client("s3")
    instances = {json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{run}/launch.json")["Body"]
                            .read())["instance"] for run in (first, second)}
    assert len(instances) == 2  # each record keeps its own paid instance


def test_cleanup_with_stdin_closed_says_to_pass_yes(local_aws):
    launch()
    finished = subprocess.run(["bash", "-c", f'"{sys.executable}" -m condgan.aws cleanup <&-'],
                              capture_output=True, text=True, timeout=120)
    assert_one_line_error(finished, "Nothing was deleted", "`cleanup --yes`")
    assert boto3.client("s3").list_buckets()["Buckets"]
