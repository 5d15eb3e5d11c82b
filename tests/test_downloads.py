"""Downloads, against a real HTTP server on 127.0.0.1 that serves synthetic dataset files."""

import gzip
import hashlib
import http.server
import io
import threading
import zipfile

import numpy as np
import pytest

from condgan import datasets
from condgan.datasets import DownloadError
from synthetic import idx_bytes, random_images

IMAGES, LABELS = 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `routes`: path -> (status, body, declared Content-Length); counts requests."""

    def __init__(self):
        super().__init__(('127.0.0.1', 0), RouteHandler)
        self.routes = {}
        self.requests = []
        self.url = f'http://127.0.0.1:{self.server_port}'

    def serve(self, path, body, status=200, declared_length=None):
        self.routes[path] = (status, body, len(body) if declared_length is None else declared_length)


class RouteHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        status, body, declared_length = self.server.routes[self.path]
        if status != 200:
            self.send_error(status)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(declared_length))
        self.end_headers()
        self.wfile.write(body)  # then the connection closes (HTTP/1.0), short or not

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    file_server = FileServer()
    thread = threading.Thread(target=file_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield file_server
    file_server.shutdown()
    file_server.server_close()


def publish(server, monkeypatch, name, file_name, body):
    """Serve body as the dataset's file_name and make its SHA-256 the expected one."""
    server.serve(f'/{name}/{file_name}', body)
    monkeypatch.setitem(datasets.SHA256, f'{name}/{file_name}', hashlib.sha256(body).hexdigest())


@pytest.fixture
def mnist_server(server, monkeypatch):
    """A mirror of a 5-image MNIST training split, named by CGAN_MNIST_URL."""
    publish(server, monkeypatch, 'mnist', IMAGES, gzip.compress(idx_bytes(random_images(5))))
    publish(server, monkeypatch, 'mnist', LABELS, gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8))))
    monkeypatch.setenv('CGAN_MNIST_URL', f'{server.url}/mnist/')
    return server


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


def test_missing_files_are_downloaded_into_data_dir_with_progress(mnist_server, tmp_path, capsys):
    images, labels = datasets.load_mnist(data_dir=tmp_path)
    np.testing.assert_array_equal(images[..., 0], random_images(5))
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert files_in(tmp_path) == [IMAGES, LABELS]
    progress = capsys.readouterr().err
    assert IMAGES in progress and 'B/s' in progress
    datasets.load_mnist(data_dir=tmp_path)  # a second load reads the files, no new request
    assert len(mnist_server.requests) == 2


def test_without_data_dir_or_cgan_data_dir_files_go_to_the_user_cache(mnist_server, monkeypatch,
                                                                    tmp_path):
    monkeypatch.delenv('CGAN_DATA_DIR', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    datasets.load_mnist()
    assert files_in(tmp_path / 'cgan' / 'mnist') == [IMAGES, LABELS]


def test_the_next_mirror_is_tried_when_one_fails(mnist_server, monkeypatch, tmp_path):
    monkeypatch.delenv('CGAN_MNIST_URL')
    monkeypatch.setitem(datasets.MIRRORS, 'mnist', (f'{mnist_server.url}/gone/',
                                                    f'{mnist_server.url}/mnist/'))
    datasets.load_mnist(data_dir=tmp_path)
    assert mnist_server.requests == [f'/gone/{IMAGES}', f'/mnist/{IMAGES}',
                                     f'/gone/{LABELS}', f'/mnist/{LABELS}']


def test_a_file_with_the_wrong_checksum_is_not_kept(mnist_server, monkeypatch, tmp_path):
    monkeypatch.setitem(datasets.SHA256, f'mnist/{IMAGES}', '0' * 64)
    with pytest.raises(DownloadError, match=f'{mnist_server.url}/mnist/{IMAGES}: SHA-256 .* '
                                            f'differs from the expected 0000'):
        datasets.load_mnist(data_dir=tmp_path)
    assert files_in(tmp_path) == []


def test_a_server_error_names_the_url_and_how_to_work_offline(mnist_server, tmp_path):
    mnist_server.serve(f'/mnist/{IMAGES}', b'', status=500)
    with pytest.raises(DownloadError) as error:
        datasets.load_mnist(data_dir=tmp_path)
    message = str(error.value)
    assert f'{mnist_server.url}/mnist/{IMAGES}: HTTP Error 500' in message
    assert 'data_dir=' in message and 'CGAN_DATA_DIR' in message
    assert files_in(tmp_path) == []


def test_an_interrupted_transfer_leaves_no_file(mnist_server, tmp_path):
    body = gzip.compress(idx_bytes(random_images(5)))
    mnist_server.serve(f'/mnist/{IMAGES}', body[:1000], declared_length=len(body))
    with pytest.raises(DownloadError, match=f'transfer ended after 1000 of {len(body)} bytes'):
        datasets.load_mnist(data_dir=tmp_path)
    assert files_in(tmp_path) == []


def test_an_unreachable_server_is_a_download_error(monkeypatch, tmp_path):
    closed = http.server.HTTPServer(('127.0.0.1', 0), RouteHandler)
    port = closed.server_port
    closed.server_close()  # nothing listens on this port any more
    monkeypatch.setenv('CGAN_FASHION_URL', f'http://127.0.0.1:{port}/')
    with pytest.raises(DownloadError, match=f'http://127.0.0.1:{port}/{IMAGES}: .*refused'):
        datasets.load_fashion_mnist(data_dir=tmp_path)


def emnist_zip(upright_images, labels):
    """A small stand-in for NIST's gzip.zip: balanced files under gzip/, images transposed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for split in datasets.SPLITS:
            archive.writestr(f'gzip/emnist-balanced-{split}-images-idx3-ubyte.gz',
                             gzip.compress(idx_bytes(upright_images.transpose(0, 2, 1))))
            archive.writestr(f'gzip/emnist-balanced-{split}-labels-idx1-ubyte.gz',
                             gzip.compress(idx_bytes(labels)))
        archive.writestr('gzip/emnist-balanced-mapping.txt', '0 48\n1 65\n2 97\n')
        archive.writestr('gzip/emnist-letters-mapping.txt', '1 65 97\n')
    return buffer.getvalue()


def test_emnist_files_are_extracted_from_nists_zip_which_is_then_deleted(server, monkeypatch,
                                                                         tmp_path):
    upright = random_images(3)
    publish(server, monkeypatch, 'emnist', 'gzip.zip', emnist_zip(upright, np.array([2, 0, 1], np.uint8)))
    monkeypatch.setenv('CGAN_EMNIST_URL', f'{server.url}/emnist')
    images, labels = datasets.load_emnist('test', data_dir=tmp_path)
    np.testing.assert_array_equal(images[..., 0], upright)
    assert labels.tolist() == [2, 0, 1]
    assert files_in(tmp_path) == ['gzip']
    assert files_in(tmp_path / 'gzip') == sorted(
        ['emnist-balanced-mapping.txt'] + [f'emnist-balanced-{split}-{kind}-ubyte.gz'
                                           for split in datasets.SPLITS
                                           for kind in ('images-idx3', 'labels-idx1')])
    assert datasets.emnist_label_names(data_dir=tmp_path) == ('0', 'A', 'a')
    datasets.load_emnist('train', data_dir=tmp_path)
    assert server.requests == ['/emnist/gzip.zip']


def test_a_zip_without_the_subset_is_an_error_and_is_deleted(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, 'emnist', 'gzip.zip', emnist_zip(random_images(1), np.zeros(1, np.uint8)))
    monkeypatch.setenv('CGAN_EMNIST_URL', f'{server.url}/emnist/')
    with pytest.raises(datasets.DataError, match='gzip.zip holds no emnist-letters-train-images'):
        datasets.load_emnist('train', 'letters', data_dir=tmp_path)
    assert files_in(tmp_path / 'gzip') == []
