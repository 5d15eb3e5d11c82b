"""What `launch` uploads: the repository that run_<recipe>.py and cgan.py run from."""

import tarfile

from condgan.aws import storage


def test_the_packed_project_is_the_repository_with_its_entry_points(tmp_path):
    archive = tmp_path / "project.tar.gz"
    count = storage.pack_project(archive)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert len(names) == count
    # What the instance runs: pip install -e ., run_<recipe>.py, cgan.py generate.
    assert {"pyproject.toml", "run_mnist.py", "run_zalando.py", "run_emnist.py", "cgan.py",
            "condgan/recipes.py", "condgan/aws/bootstrap.py"} <= names
    assert not any(name.startswith((".git/", "runs/")) or "__pycache__" in name
                   for name in names)
