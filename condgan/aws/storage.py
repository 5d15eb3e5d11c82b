"""Files between the laptop and S3: the project going up, the run folder coming back."""

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from botocore.exceptions import ClientError

from condgan import archives, folders

from .cloud import CloudError, error_code

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # condgan/aws/ in the repository

# What training on the instance does not need, or what would make the upload huge.
SKIPPED_DIRECTORIES = {"__pycache__", "runs", "build", "node_modules"}
MAX_PROJECT_MB = 20


def project_files(root=PROJECT_ROOT, skip=None):
    """The project's source files: no hidden folders, virtualenvs, outputs or data."""
    skip = Path(skip).resolve() if skip else None
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(name for name in subdirectories
                                   if not _skipped(Path(directory) / name, skip))
        files += [Path(directory, name).relative_to(root) for name in sorted(names)
                  if not name.startswith(".") and not name.endswith(".pyc")]
    return files


def _skipped(directory, data_dir):
    return (directory.name.startswith(".")
            or directory.name in SKIPPED_DIRECTORIES
            or directory.name.endswith(".egg-info")
            or (directory / "pyvenv.cfg").exists()
            or directory.resolve() == data_dir)


def pack_project(archive, root=PROJECT_ROOT, skip=None, extra=None):
    """Writes the project as a .tar.gz, with the `extra` files ({name: text}) at its top, and
    returns how many files it holds."""
    if not (root / "pyproject.toml").exists():
        raise CloudError(f"{root} is not the cgan project (it has no pyproject.toml).")
    files = project_files(root, skip)
    with tarfile.open(archive, "w:gz") as tar:
        for relative in files:
            tar.add(root / relative, arcname=str(relative))
        for name, text in (extra or {}).items():
            content = text.encode()
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(content), 0o644
            tar.addfile(member, io.BytesIO(content))
    megabytes = Path(archive).stat().st_size / 1e6
    if megabytes > MAX_PROJECT_MB:
        raise CloudError(
            f"The project packs to {megabytes:.0f} MB, more than the {MAX_PROJECT_MB} MB "
            "its code needs: is a data or output folder inside it? Move it out, or pass "
            "it as --data-dir."
        )
    return len(files) + len(extra or {})


@dataclass(frozen=True)
class FolderArchive:
    """An image folder packed for S3 (archives.pack_folder): one tar, named by its SHA-256 in
    the bucket's folders/, shared by every run and sweep of the same files."""
    name: str      # the folder's own name: the run folder's name on the far side too
    path: Path     # the local archive
    sha256: str
    notes: list    # what `cgan.py train` says of the folder: images, classes, size, ...
    held_out: dict  # {class name: images held out for evaluate}; {} for loose images
    manifest: dict  # {relative path: SHA-256}: what run.json records of the folder

    @property
    def key(self):
        return f"folders/{self.sha256}.tar"


def pack_image_folder(folder, training, scratch):
    """Checks an image folder as `cgan.py train` checks it (folders.load, the same errors, so
    a truncated image is found here, not on a paid machine), then packs its files into
    `scratch`/folder.tar. `training`: the training flags given (size, channels, ...)."""
    try:
        loaded = folders.load(folder, training.get("size"), training.get("channels"),
                              training.get("skip_unreadable", False))
        archive = Path(scratch) / "folder.tar"
        sha256 = archives.pack_folder(folder, loaded.listing.manifest, archive)
    except (folders.FolderError, archives.ArchiveError) as error:
        raise CloudError(str(error)) from None
    _, held_out_labels = loaded.held_out_part()
    held_out = ({} if held_out_labels is None else
                dict(zip(loaded.class_names, np.bincount(held_out_labels,
                                                         minlength=len(loaded.class_names)).tolist())))
    return FolderArchive(Path(folder).resolve().name or "folder", archive, sha256, loaded.notes,
                         held_out, loaded.listing.manifest)


def upload_once(cloud, folder, bucket):
    """Uploads a FolderArchive unless the bucket holds it already; returns its URI."""
    try:
        found = cloud.call("s3", "head_object", Bucket=bucket, Key=folder.key)
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        found = None
    uri = f"s3://{bucket}/{folder.key}"
    if found and found["ContentLength"] == folder.path.stat().st_size:
        cloud.out(f"  folder      {uri}: uploaded before, re-used")
        return uri
    cloud.upload_file(folder.path, bucket, folder.key,
                      what=f"<the image folder {folder.name}: {folder.path.stat().st_size:,} bytes>")
    return uri


def newest_checkpoint_step(names):
    """The step of the newest checkpoint among a run folder's file names (`mnist-1200.index`,
    as training names them), or None if there is none."""
    steps = [int(found[1]) for name in names if (found := re.fullmatch(r"[^/]+-(\d+)\.index", name))]
    return max(steps, default=None)


def upload_folder(cloud, folder, bucket, prefix):
    """Uploads a folder under prefix/, skipping files already there with the same size."""
    folder = Path(folder)
    present = {item["Key"]: item["Size"] for item in list_objects(cloud, bucket, prefix)}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        if present.get(key) != path.stat().st_size:
            cloud.upload_file(path, bucket, key, what=str(path))


def list_objects(cloud, bucket, prefix):
    """Every object under prefix/ (none in a dry run)."""
    if cloud.dry_run:
        cloud.list_call("s3.list_objects_v2", {"Bucket": bucket, "Prefix": f"{prefix}/"})
        return []
    pages = cloud.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/")
    try:
        return [item for page in pages for item in page.get("Contents", [])]
    except cloud.client("s3").exceptions.NoSuchBucket:
        raise missing_bucket(bucket) from None


def missing_bucket(bucket):
    return CloudError(f"No bucket s3://{bucket} in this account: nothing was launched with "
                      "this --region and --bucket (launch creates the bucket).")


def download_folder(cloud, bucket, prefix, folder):
    """Downloads every object under prefix/ into folder, keeping the layout. Returns them.

    Whoever can write to the bucket (the instance's role, for one) chooses the keys: a key
    that would land outside the folder, such as one with ../ in it, stops the download
    before any file is written."""
    folder = Path(folder)
    inside = folder.resolve()
    downloads = []
    for item in list_objects(cloud, bucket, prefix):
        relative = item["Key"][len(prefix) + 1:]
        if not relative or relative.endswith("/"):  # a folder marker of the S3 console
            continue
        path = folder / relative
        if not path.resolve().is_relative_to(inside):
            raise CloudError(f"s3://{bucket}/{item['Key']} would be written outside {folder}/: "
                             "refused, and nothing was downloaded. Someone who may write to "
                             "the bucket put it there; delete it, or look at it first.")
        downloads.append((item["Key"], path))
    check_no_file_is_a_folder(bucket, downloads)
    for key, path in downloads:
        path.parent.mkdir(parents=True, exist_ok=True)
        cloud.download_file(bucket, key, path)
    return [path for _, path in downloads]


def check_no_file_is_a_folder(bucket, downloads):
    """Refuses, before any file is written, keys that cannot all be files: `mnist/a` beside
    `mnist/a/b` (S3 allows both), or a key that needs a folder where a local file is."""
    key_of = {path: key for key, path in downloads}
    for key, path in downloads:
        for parent in path.parents:
            if parent in key_of:
                raise CloudError(f"s3://{bucket}/{key_of[parent]} and s3://{bucket}/{key} "
                                 "cannot both be files (one would be the other's folder): "
                                 "nothing was downloaded; delete or rename one of them.")
            if parent.is_file():
                raise CloudError(f"s3://{bucket}/{key} needs a folder where the file {parent} "
                                 "is: nothing was downloaded; move that file, or fetch --to "
                                 "another folder.")
        if path.is_dir():
            raise CloudError(f"s3://{bucket}/{key} would replace the folder {path}: nothing "
                             "was downloaded; fetch --to another folder.")


def read_text(cloud, bucket, key):
    """An object's text, or None if it is not there (yet)."""
    s3 = cloud.client("s3")
    try:
        body = cloud.call("s3", "get_object", Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    except s3.exceptions.NoSuchBucket:
        raise missing_bucket(bucket) from None
    return body.read().decode("utf-8", errors="replace")
