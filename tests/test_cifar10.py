"""CIFAR-10 from its binary archive (issue 26): downloaded from a real HTTP server on
127.0.0.1 that serves a small archive written here in the official format, checked against
its checksum, extracted safely, read record by record, and trained on by run_cifar10.py."""
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from condgan import cifar10
from condgan.datasets import DataError
from test_commands import refused
from test_downloads import server  # noqa: F401 (the fixture)
from test_recipes import REPO, command

PER_BATCH = 10  # records in each of the five training batches and the test batch: every class


def records(count, seed):
    """`count` records: labels, and images (count, 32, 32, 3) whose bytes are the records'."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) + seed) % 10
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(count, -1)  # red plane, green, blue
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes(), images, labels


def archive_bytes(extra_members=()):
    """A .tar.gz laid out as cifar-10-binary.tar.gz, and the images and labels of its training
    batches. `extra_members`: (TarInfo, bytes or None) added first."""
    buffer = io.BytesIO()
    train_images, train_labels = [], []
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for info, body in extra_members:
            tar.addfile(info, None if body is None else io.BytesIO(body))
        members = {name: records(PER_BATCH, number)
                   for number, name in enumerate(cifar10.MEMBERS[:-1])}
        members[cifar10.META_FILE] = ('\n'.join(cifar10.CLASS_NAMES) + '\n\n').encode(), None, None
        for name, (body, images, labels) in members.items():
            info = tarfile.TarInfo(f'{cifar10.FOLDER}/{name}')
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
            if name in cifar10.SPLIT_FILES['train']:
                train_images.append(images)
                train_labels.append(labels)
    return buffer.getvalue(), np.concatenate(train_images), np.concatenate(train_labels)


def publish(server, monkeypatch, body, md5=None):  # noqa: F811 (the fixture)
    server.serve(f'/cifar/{cifar10.ARCHIVE}', body)
    monkeypatch.setenv('CGAN_CIFAR10_URL', f'{server.url}/cifar/')
    monkeypatch.setattr(cifar10, 'ARCHIVE_MD5', md5 or hashlib.md5(body).hexdigest())


def test_the_archive_is_downloaded_checked_extracted_and_read(server, monkeypatch, tmp_path):  # noqa: F811
    body, images, labels = archive_bytes()
    publish(server, monkeypatch, body)
    loaded_images, loaded_labels = cifar10.load_cifar10('train', data_dir=tmp_path)
    assert loaded_images.shape == (5 * PER_BATCH, 32, 32, 3)
    assert (loaded_images == images).all() and (loaded_labels == labels).all()
    assert cifar10.class_names(tmp_path) == cifar10.CLASS_NAMES
    assert sorted(path.name for path in (tmp_path / cifar10.FOLDER).iterdir()) == sorted(cifar10.MEMBERS)
    assert not (tmp_path / cifar10.ARCHIVE).exists()  # deleted once extracted
    assert len(cifar10.load_cifar10('test', data_dir=tmp_path)[0]) == PER_BATCH
    assert len(server.requests) == 1


def test_the_red_plane_comes_first(tmp_path):
    record = np.zeros(cifar10.RECORD_BYTES, np.uint8)
    record[0] = 7
    record[1 + 32 + 2] = 200                  # red, row 1, column 2
    record[1 + 1024 + 3 * 32 + 4] = 100       # green, row 3, column 4
    record[1 + 2048] = 50                     # blue, row 0, column 0
    path = tmp_path / 'one.bin'
    record.tofile(path)
    [image], [label] = cifar10.read_records(path)
    assert label == 7 and image[1, 2, 0] == 200 and image[3, 4, 1] == 100 and image[0, 0, 2] == 50
    assert image.sum() == 350


def test_a_download_with_another_checksum_is_refused_by_run_cifar10(server, monkeypatch, tmp_path):  # noqa: F811
    body, _, _ = archive_bytes()
    server.serve(f'/cifar/{cifar10.ARCHIVE}', body)  # not the published archive: its MD5 differs
    environment = {key: value for key, value in os.environ.items() if key != 'CGAN_DATA_DIR'}
    (tmp_path / 'data').mkdir()
    result = command_in(environment | {'CGAN_CIFAR10_URL': f'{server.url}/cifar/'},
                        'run_cifar10.py', '--data-dir', tmp_path / 'data', '--out-dir', tmp_path / 'runs',
                        cwd=tmp_path)
    result.stderr = '\n'.join(line for line in result.stderr.splitlines() if '%|' not in line)  # tqdm's
    refused(result, 2, rf'could not download .*{cifar10.ARCHIVE} \(MD5 {hashlib.md5(body).hexdigest()} '
                       rf'differs from the expected {cifar10.ARCHIVE_MD5}\)')
    assert list((tmp_path / 'data').iterdir()) == [] and not (tmp_path / 'runs').exists()


def test_a_local_archive_with_another_checksum_is_refused(tmp_path):
    body, _, _ = archive_bytes()
    (tmp_path / cifar10.ARCHIVE).write_bytes(body)
    with pytest.raises(DataError, match=r'MD5 .* differs from the published c32a1d4ab5d03f1284b67883e8d87530'):
        cifar10.load_cifar10(data_dir=tmp_path)
    assert not (tmp_path / cifar10.FOLDER).exists()


def link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def regular(name, body=b'evil'):
    info = tarfile.TarInfo(name)
    info.size = len(body)
    return info, body


@pytest.mark.parametrize('member, fragment', [
    (link(f'{cifar10.FOLDER}/data_batch_1.bin', '/etc/passwd'), r'is a link; links are refused'),
    (link(f'{cifar10.FOLDER}/escape', '../../x', tarfile.LNKTYPE), r'is a link; links are refused'),
    (regular('../outside.bin'), r"'../outside.bin' would be written outside"),
    (regular('/tmp/absolute.bin'), r"'/tmp/absolute.bin' would be written outside"),
])
def test_an_unsafe_member_is_refused_and_nothing_is_extracted(server, monkeypatch, tmp_path,  # noqa: F811
                                                              member, fragment):
    body, _, _ = archive_bytes([member])
    publish(server, monkeypatch, body)
    data = tmp_path / 'data'
    data.mkdir()
    with pytest.raises(DataError, match=fragment):
        cifar10.load_cifar10(data_dir=data)
    assert list(data.iterdir()) == []  # neither the archive nor a folder
    assert not (tmp_path / 'outside.bin').exists()


def test_records_that_are_not_whole_are_refused(tmp_path):
    path = tmp_path / 'data_batch_1.bin'
    path.write_bytes(bytes(cifar10.RECORD_BYTES + 5))
    with pytest.raises(DataError, match=r'3078 bytes, not a whole number of 3073-byte records'):
        cifar10.read_records(path)


def test_run_cifar10_trains_in_colour(server, monkeypatch, tmp_path):  # noqa: F811
    body, _, _ = archive_bytes()
    publish(server, monkeypatch, body)
    cifar10.load_cifar10(data_dir=tmp_path / 'data')  # extracted, as a download leaves it
    result = command('run_cifar10.py', '--data-dir', tmp_path / 'data', '--out-dir', tmp_path / 'runs',
                     '--max-steps', '2', '--batch-size', '8', '--seed', '0', '--variant', 'modern',
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / 'runs' / 'cifar10'
    with open(run / 'cifar10.pkl', 'rb') as f:
        gan = pickle.load(f)
    assert gan.image_shape == (32, 32, 3) and gan.class_names == cifar10.CLASS_NAMES
    with Image.open(run / 'classes.png') as picture:
        assert picture.mode == 'RGB' and picture.height == 10 * 32
    assert json.loads((run / 'run.json').read_text())['dataset'] == 'cifar10'


def command_in(environment, script, *arguments, cwd):
    """A command with its own environment (without CGAN_DATA_DIR)."""
    return subprocess.run([sys.executable, str(REPO / script), *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**environment, 'TF_CPP_MIN_LOG_LEVEL': '3'})
