"""Tar archives that cross to or from AWS: an image folder packed once, and any archive
unpacked safely.

Whoever may write to the bucket (a training job runs code that the bucket's writers chose)
may not put a file outside the target folder, nor a link, nor a device. An image folder
travels as one plain tar of the files of its manifest (folders.py), packed deterministically
(sorted, no times, no owners) so that the same files give the same bytes, and named by its
SHA-256: the far side checks that digest before it unpacks. No TensorFlow: the AWS
commands, the instance and the SageMaker entry point all use it.
"""

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from condgan.datasets import file_sha256


class ArchiveError(ValueError):
    """An archive that may not, or cannot, be unpacked; nothing was extracted."""


def unsafe_reason(member):
    """Why a member may not be extracted, or None."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in path.parts:
        return "a path with .."
    if member.issym() or member.islnk():
        return f"a link (to {member.linkname})"
    if not (member.isfile() or member.isdir()):
        return "neither a file nor a folder"
    return None


def extract_safely(archive, folder, source):
    """Extracts a tar (.tar.gz or plain) into `folder`, which must not exist yet: every member
    is checked first, so an unsafe archive leaves nothing behind; the folder appears whole or
    not at all. `source` names the archive in messages (its S3 URI)."""
    folder = Path(folder)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                reason = unsafe_reason(member)
                if reason:
                    raise ArchiveError(f"{source} holds {member.name!r}, {reason}: refused, and "
                                       "nothing was extracted. Whoever may write there put it "
                                       "there; look at the archive before using it.")
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                tar.extractall(staging, members, filter="data")
                staging.rename(folder)
            except BaseException:
                shutil.rmtree(staging)
                raise
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveError(f"{source} is not a readable tar archive ({error}): nothing was "
                           "extracted.") from None


def pack_folder(folder, manifest, archive):
    """Writes the files of `manifest` ({relative path: SHA-256}, folders.Listing's; a file it
    could not read, None, is left out) from `folder` into the tar `archive`; returns the
    archive's SHA-256. A file whose content is no longer the manifest's is refused: the
    archive holds what was checked."""
    folder = Path(folder)
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(name for name, sha256 in manifest.items() if sha256):
            content = (folder / path).read_bytes()
            if hashlib.sha256(content).hexdigest() != manifest[path]:
                raise ArchiveError(f"{folder / path} changed while it was being packed: "
                                   "launch again once the folder is as you want it")
            member = tarfile.TarInfo(path)
            member.size, member.mode, member.mtime = len(content), 0o644, 0
            tar.addfile(member, io.BytesIO(content))
    return file_sha256(archive)


def unpack_folder(archive, sha256, folder):
    """Checks that `archive` has the SHA-256 it was uploaded under, then extracts it safely
    into `folder` (which must not exist yet)."""
    found = file_sha256(archive)
    if found != sha256:
        raise ArchiveError(f"{archive}: SHA-256 {found}, not the {sha256} it was uploaded "
                           "with (damaged or replaced in S3): nothing was extracted; launch "
                           "again to upload the folder anew")
    extract_safely(archive, folder, archive)
