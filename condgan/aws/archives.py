"""Archives from AWS, unpacked safely: whoever wrote one (a training job runs code that the
bucket's writers chose) may not put a file outside the folder, nor a link, nor a device."""

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from .cloud import CloudError


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
    """Extracts a .tar.gz into `folder`, which must not exist yet: every member is checked
    first, so an unsafe archive leaves nothing behind; the folder appears whole or not at all.
    `source` names the archive in messages (its S3 URI)."""
    folder = Path(folder)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                reason = unsafe_reason(member)
                if reason:
                    raise CloudError(f"{source} holds {member.name!r}, {reason}: refused, and "
                                     "nothing was extracted. Whoever may write the job's output "
                                     "put it there; look at the archive before using it.")
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                tar.extractall(staging, members, filter="data")
                staging.rename(folder)
            except BaseException:
                shutil.rmtree(staging)
                raise
    except (tarfile.TarError, EOFError) as error:
        raise CloudError(f"{source} is not a readable .tar.gz archive ({error}): nothing was "
                         "extracted.") from None
