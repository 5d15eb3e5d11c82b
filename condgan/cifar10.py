"""CIFAR-10 (Krizhevsky, 2009): 60,000 colour photographs of 32x32 in 10 classes, from the
official binary archive `cifar-10-binary.tar.gz`, never from the Python-pickle one: nothing
downloaded is ever unpickled.

The archive holds `cifar-10-batches-bin/`: `data_batch_1.bin` to `data_batch_5.bin` (the
50,000 training images), `test_batch.bin` (10,000) and `batches.meta.txt` (the class names,
one a line). Each .bin file is records of RECORD_BYTES: one label byte, then 3,072 pixel
bytes, the 32x32 red plane, then green, then blue, each row by row.

Where the files are looked for, as for the other loaders (datasets.py): `data_dir`, else
`$CGAN_DATA_DIR/cifar10` (offline, never written to), else the per-user cache
`~/.cache/cgan/cifar10`. A missing file there is made from the archive: downloaded (from
CGAN_CIFAR10_URL if set), checked against its published MD5, and extracted safely: only the
expected members, regular files only (links are refused), none outside the folder. The
archive is deleted once extracted.
"""
import hashlib
import os
import tarfile
from pathlib import PurePosixPath

import numpy as np

from condgan import datasets
from condgan.datasets import DataError

URL = 'https://www.cs.toronto.edu/~kriz/'
ARCHIVE = 'cifar-10-binary.tar.gz'
# Published beside the archive on https://www.cs.toronto.edu/~kriz/cifar.html (MD5 is all
# the page gives).
ARCHIVE_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530'
FOLDER = 'cifar-10-batches-bin'
SIDE = 32
RECORD_BYTES = 1 + 3 * SIDE * SIDE
SPLIT_FILES = {'train': tuple(f'data_batch_{number}.bin' for number in range(1, 6)),
               'test': ('test_batch.bin',)}
META_FILE = 'batches.meta.txt'
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
MEMBERS = (*SPLIT_FILES['train'], *SPLIT_FILES['test'], META_FILE)


def load_cifar10(split='train', data_dir=None):
    """CIFAR-10: uint8 images (N, 32, 32, 3) and int64 labels 0-9 (N,); names in `class_names`."""
    datasets._check_split(split)
    parts = [read_records(path) for path in data_files(split, data_dir)[:-1]]
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])


def class_names(data_dir=None):
    """The class names of batches.meta.txt, in label order."""
    path = data_files('train', data_dir)[-1]
    names = tuple(line.strip() for line in path.read_text(errors='replace').splitlines() if line.strip())
    if len(names) != len(CLASS_NAMES):
        raise DataError(f'{path}: expected {len(CLASS_NAMES)} class names, one a line; found {len(names)}')
    return names


def data_files(split='train', data_dir=None):
    """The .bin files of `split` and the class names file, made from the archive if missing."""
    datasets._check_split(split)
    folder = datasets.dataset_folder('cifar10', data_dir)
    if folder.name != FOLDER:
        folder = folder / FOLDER
    paths = [folder / name for name in (*SPLIT_FILES[split], META_FILE)]
    missing = [path for path in paths if not path.is_file()]
    if not missing:
        return paths
    datasets.refuse_offline_download('cifar10', data_dir, missing[0])
    archive = folder.parent / ARCHIVE
    folder.parent.mkdir(parents=True, exist_ok=True)
    downloaded = not archive.is_file()
    if downloaded:
        base_url = os.environ.get('CGAN_CIFAR10_URL') or URL
        url = base_url.rstrip('/') + '/' + ARCHIVE
        try:
            datasets._fetch(url, archive, ARCHIVE_MD5, 'md5')
        except (OSError, DataError) as error:
            raise datasets.DownloadError(
                f'could not download {url} ({error}). To work offline, put {ARCHIVE} or its '
                f'extracted {FOLDER}/ into {folder.parent} yourself, or pass --data-dir') from None
    else:
        check_md5(archive)
    try:
        extract(archive, folder.parent)
    except DataError:
        if downloaded:  # of no use: leave the folder as it was
            archive.unlink()
        raise
    archive.unlink()
    return paths


def check_md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != ARCHIVE_MD5:
        raise DataError(f'{path}: MD5 {digest.hexdigest()} differs from the published '
                        f'{ARCHIVE_MD5}: not the official {ARCHIVE}; delete it to download it again')


def extract(archive, target):
    """The expected members of the archive, into `target`/FOLDER/. A link, a member outside
    the folder, or a missing member is refused before anything is written."""
    try:
        with tarfile.open(archive, 'r:gz') as tar:
            members = {}
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                if path.is_absolute() or '..' in path.parts:
                    raise DataError(f'{archive}: the member {member.name!r} would be written '
                                    f'outside {target}; refused')
                if member.issym() or member.islnk():
                    raise DataError(f'{archive}: the member {member.name!r} is a link; links are refused')
                if path.parent == PurePosixPath(FOLDER) and path.name in MEMBERS:
                    if not member.isfile():
                        raise DataError(f'{archive}: {member.name!r} is not a regular file')
                    members[path.name] = member
            absent = [name for name in MEMBERS if name not in members]
            if absent:
                raise DataError(f'{archive} holds no {FOLDER}/{absent[0]}: not the CIFAR-10 binary archive')
            (target / FOLDER).mkdir(parents=True, exist_ok=True)
            for name, member in members.items():
                with tar.extractfile(member) as source, datasets._partial_file(target / FOLDER / name) as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f'{archive}: not a readable .tar.gz archive ({error})') from None


def read_records(path):
    """Images (N, 32, 32, 3) and labels (N,) of one .bin file of RECORD_BYTES records."""
    data = np.fromfile(path, np.uint8)
    if not len(data) or len(data) % RECORD_BYTES:
        raise DataError(f'{path}: {len(data)} bytes, not a whole number of {RECORD_BYTES}-byte '
                        f'records (a label byte, then 3,072 pixel bytes)')
    records = data.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASS_NAMES):
        record = int(np.argmax(labels >= len(CLASS_NAMES)))
        raise DataError(f'{path}, record {record}: label {labels[record]}, expected 0 to {len(CLASS_NAMES) - 1}')
    images = records[:, 1:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)  # planes -> pixels
    return np.ascontiguousarray(images), labels
