"""Image datasets for the conditional GAN: the `Dataset` wrapper and the data loaders.

`Dataset` holds shuffled uint8 images and their labels and serves them in batches scaled to
[-0.5, 0.5] with one-hot labels. The loaders return `(images, labels)`: uint8 images
(N, 28, 28, 1) and int64 labels (N,), for MNIST, Fashion-MNIST, EMNIST and HWD+.

Where the loaders look for files, in order: the `data_dir` argument; `$CGAN_DATA_DIR/<name>`
(name: mnist, fashion or emnist), an offline folder that is never written to; the per-user
cache `$XDG_CACHE_HOME/cgan/<name>` (default `~/.cache/cgan/<name>`). Missing files are
downloaded into `data_dir` or the cache, checked against their SHA-256, and only then given
their final name.
"""

import contextlib
import gzip
import hashlib
import http.client
import math
import os
import struct
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from condgan.conditioning import label_planes

MNIST_LABELS = tuple('0123456789')
FASHION_LABELS = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                  'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

SPLITS = ('train', 'test')
EMNIST_SUBSETS = ('balanced', 'byclass', 'bymerge', 'digits', 'letters', 'mnist')

# Base URLs tried in order; `CGAN_<NAME>_URL` (e.g. CGAN_MNIST_URL) replaces a dataset's list.
# LeCun's own MNIST site is often down, so MNIST comes from two mirrors of its files.
MIRRORS = {
    'mnist': ('https://storage.googleapis.com/cvdf-datasets/mnist/',
              'https://ossci-datasets.s3.amazonaws.com/mnist/'),
    'fashion': ('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
                'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/'),
    'emnist': ('https://biometrics.nist.gov/cs_links/EMNIST/',),
}

# SHA-256 of the files as their publishers serve them, keyed '<name>/<file>'. They check
# downloads only: local files are checked by parsing, so re-compressed copies work too.
SHA256 = {
    'mnist/train-images-idx3-ubyte.gz': '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'mnist/train-labels-idx1-ubyte.gz': '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    'mnist/t10k-images-idx3-ubyte.gz': '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    'mnist/t10k-labels-idx1-ubyte.gz': 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
    'fashion/train-images-idx3-ubyte.gz': '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
    'fashion/train-labels-idx1-ubyte.gz': 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
    'fashion/t10k-images-idx3-ubyte.gz': '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
    'fashion/t10k-labels-idx1-ubyte.gz': '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
    'emnist/gzip.zip': 'fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e',
}

IMAGE_SIZE = 28  # every loader's images are 28x28
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download is given up


class DataError(ValueError):
    """A data file that is unreadable or not what it claims to be."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


class Dataset:
    """Shuffled uint8 images and labels, served in batches scaled to [-0.5, 0.5].

    `data` is uint8 (N, H, W, C) or (N, H, W); images whose size differs from (height, width)
    are resized (nearest neighbour), and their channels converted to `channels` (1 or 3: gray
    is repeated into RGB, RGB becomes ITU-R 601 luma). Images and labels are shuffled together
    once, with `seed`. Unlabeled data (labels=None) has `labels`, `classes`, `one_hot` and
    `label_indices` None and `num_classes` 0.

    Attributes: `data` uint8 (N, height, width, channels); `labels` (N,); `classes`, the sorted
    distinct labels; `one_hot`, class value -> float32 (K,) one-hot by position in `classes`;
    `label_indices` int32 (N,), each image's class position; `shape` (N, width, height,
    channels), as in the original; `image_mode` 'L' or 'RGB'; `cmap` 'gray' or None;
    `max_value`; `num_classes` K.
    """

    def __init__(self, data, labels=None, width=28, height=28, max_value=255, channels=3,
                 seed=None):
        images = _check_images(data)
        for name, value in (('width', width), ('height', height)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        if channels not in (1, 3):
            raise ValueError(f'channels must be 1 or 3, got {channels!r}')
        if not max_value > 0:
            raise ValueError(f'max_value must be positive, got {max_value!r}')
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(images),):
                raise ValueError(f'labels must hold one value per image: got shape '
                                 f'{labels.shape} for {len(images)} images')

        if images.shape[1:3] != (height, width):
            images = _resize(images, height, width)
        images = _convert_channels(images, channels)

        order = np.random.default_rng(seed).permutation(len(images))
        self.data = images[order]
        self.shape = (len(images), width, height, channels)
        self.image_mode, self.cmap = ('L', 'gray') if channels == 1 else ('RGB', None)
        self.max_value = float(max_value)
        if labels is None:
            self.labels = self.classes = self.one_hot = self.label_indices = None
            self.num_classes = 0
        else:
            self.labels = labels[order]
            self.classes, label_indices = np.unique(self.labels, return_inverse=True)
            self.label_indices = label_indices.astype(np.int32)
            self.num_classes = len(self.classes)
            self._one_hot_rows = np.eye(self.num_classes, dtype=np.float32)
            self.one_hot = {value: row.copy()
                            for value, row in zip(self.classes.tolist(), self._one_hot_rows)}

    def get_batches(self, batch_size, rng=None):
        """Yield (images, one_hot) batches: images float32 (B, height, width, channels) as
        data / max_value - 0.5, one_hot float32 (B, K), or None when unlabeled.

        In stored order, or in a fresh permutation from `rng` (a np.random.Generator) so that
        each epoch sees a new order. The last batch holds what is left and may be smaller.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f'batch_size must be an integer, got {batch_size!r}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got {batch_size}')
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f'rng must be a numpy.random.Generator or None, got {type(rng).__name__}')
        # Checked above, served below: a bad argument fails at the call, not at the first batch.
        return self._batches(batch_indices(len(self.data), batch_size, rng))

    def _batches(self, batches):
        for batch in batches:
            images = self.data[batch].astype(np.float32) / np.float32(self.max_value) - np.float32(0.5)
            one_hot = None if self.labels is None else self._one_hot_rows[self.label_indices[batch]]
            yield images, one_hot

    def label_planes(self, one_hot):
        """The one-hot vectors (B, K) repeated at every pixel: float32 (B, height, width, K)."""
        one_hot = np.asarray(one_hot, dtype=np.float32)
        if one_hot.ndim != 2 or one_hot.shape[1] != self.num_classes:
            raise ValueError(f'one_hot must have shape (batch, {self.num_classes}), '
                             f'got {one_hot.shape}')
        _, width, height, _ = self.shape
        return label_planes(one_hot, height, width)


def batch_indices(num_images, batch_size, rng=None):
    """The batches of one pass over `num_images` images, as index arrays: in stored order, or
    in a permutation drawn from `rng`. The last batch holds what is left and may be smaller.
    Training's batches (training.epoch_batches) and `get_batches`' are these."""
    order = np.arange(num_images) if rng is None else rng.permutation(num_images)
    return [order[start:start + batch_size] for start in range(0, num_images, batch_size)]


def _check_images(data):
    """data as uint8 (N, H, W, C) with C 1 or 3, or a clear error."""
    images = np.asarray(data)
    if images.dtype != np.uint8:
        raise TypeError(f'data must be uint8 images, got dtype {images.dtype}')
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f'data must have shape (N, H, W, C) or (N, H, W), got {images.shape}')
    if images.shape[3] not in (1, 3):
        raise ValueError(f'images must have 1 or 3 channels, got {images.shape[3]} '
                         f'(data shape {images.shape})')
    if len(images) == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f'data holds no pixels: shape {images.shape}')
    return images


def _resize(images, height, width):
    """Every image resized to (height, width), nearest neighbour, into one new array."""
    channels = images.shape[3]
    resized = np.empty((len(images), height, width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if channels == 1 else image)
        picture = picture.resize((width, height), Image.Resampling.NEAREST)
        resized[index] = np.asarray(picture).reshape(height, width, channels)
    return resized


def _convert_channels(images, channels):
    if images.shape[3] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=3)
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.rint(luma).astype(np.uint8)[..., np.newaxis]


def load_mnist(split='train', data_dir=None):
    """MNIST digits: uint8 images (N, 28, 28, 1) and int64 labels 0-9 (N,)."""
    return _load_idx_pair('mnist', _lecun_file_names(split), data_dir)


def load_fashion_mnist(split='train', data_dir=None):
    """Fashion-MNIST (Zalando): uint8 images (N, 28, 28, 1), int64 labels 0-9 (N,); class
    names in FASHION_LABELS."""
    return _load_idx_pair('fashion', _lecun_file_names(split), data_dir)


def load_emnist(split='train', subset='balanced', data_dir=None):
    """EMNIST characters, upright: uint8 images (N, 28, 28, 1), int64 labels (N,).

    `data_dir` is the folder that holds NIST's `gzip/` folder, or that `gzip/` folder. A
    download fetches NIST's gzip.zip (~536 MB), keeps the files of `subset` and deletes it.
    """
    if subset not in EMNIST_SUBSETS:
        raise ValueError(f'unknown EMNIST subset {subset!r}; choose one of {EMNIST_SUBSETS}')
    images, labels = _load_idx_pair('emnist', _emnist_file_names(subset, split), data_dir, subset)
    # NIST stores every image transposed.
    return np.ascontiguousarray(images.transpose(0, 2, 1, 3)), labels


def emnist_label_names(subset='balanced', data_dir=None):
    """Readable EMNIST class names, from NIST's mapping file, in label order.

    Name i belongs to the i-th smallest label, that is to `Dataset.classes[i]` (the letters
    subset numbers its labels from 1). Balanced: '0'-'9', 'A'-'Z', then a b d e f g h n q r t.
    """
    if subset not in EMNIST_SUBSETS:
        raise ValueError(f'unknown EMNIST subset {subset!r}; choose one of {EMNIST_SUBSETS}')
    path = _find_files('emnist', (f'emnist-{subset}-mapping.txt',), data_dir, subset)[0]
    codes = {}
    for line_number, line in enumerate(path.read_text(errors='replace').splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            label, code = int(fields[0]), int(fields[1])
            codes[label] = chr(code)
        except (ValueError, IndexError, OverflowError) as error:
            raise DataError(f'{path}, line {line_number}: expected "label ascii_code", '
                            f'got {line!r}') from error
    if not codes:
        raise DataError(f'{path} maps no labels')
    return tuple(codes[label] for label in sorted(codes))


def data_files(name, split='train', data_dir=None, subset='balanced'):
    """The paths of the files that a loader reads, found (or downloaded) as it finds them.

    `name` is 'mnist', 'fashion' or 'emnist': the image and label files of `split`, and for
    EMNIST the mapping file of `subset` that `emnist_label_names` reads. For checksums of the
    data a run was trained on.
    """
    if name == 'emnist':
        if subset not in EMNIST_SUBSETS:
            raise ValueError(f'unknown EMNIST subset {subset!r}; choose one of {EMNIST_SUBSETS}')
        file_names = _emnist_file_names(subset, split) + (f'emnist-{subset}-mapping.txt',)
        return _find_files('emnist', file_names, data_dir, subset)
    if name not in ('mnist', 'fashion'):
        raise ValueError(f"unknown dataset {name!r}; choose 'mnist', 'fashion' or 'emnist'")
    return _find_files(name, _lecun_file_names(split), data_dir)


def load_hdw(data_dir):
    """HWD+ handwritten digits with writer characteristics (Beaulac and Rosenthal, 2022):
    uint8 images (N, 28, 28, 1) and int64 digit labels (N,), column 0 of WriterInfo.npy.

    Pixel values are returned as stored (floats in [0, 1] are scaled to 0-255). The set is
    not downloadable without a Kaggle login, so `data_dir` must hold its files.
    """
    folder = Path(data_dir)
    images_path, info_path = folder / 'Images(28x28).npy', folder / 'WriterInfo.npy'
    for path in (images_path, info_path):
        if not path.is_file():
            raise FileNotFoundError(
                f'{path} is missing. HWD+ cannot be downloaded automatically: get '
                f'"Images(28x28).npy" and "WriterInfo.npy" from Kaggle ("Handwritten digits '
                f'with writer characteristics", HWD+) and pass their folder as data_dir.')
    images = _hdw_pixels(_load_npy(images_path), images_path)
    info = _load_npy(info_path)
    if info.ndim != 2 or len(info) != len(images):
        raise DataError(f'{info_path}: expected one row per image ({len(images)} rows), got '
                        f'shape {info.shape}')
    labels = info[:, 0]
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DataError(f'{info_path}: column 0 must hold whole-number digit labels')
    return images, labels.astype(np.int64)


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f'{path}: not a readable .npy array ({error})') from error


def _hdw_pixels(array, path):
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f'{path}: expected 28x28 images (N, 28, 28), got shape {array.shape}')
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f'{path}: expected numeric pixels, got dtype {array.dtype}')
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max() <= 1:
            array = array * 255
        if not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 255):
            raise DataError(f'{path}: pixel values must be finite and lie in 0-255 (or 0-1), '
                            f'got {array.min()}..{array.max()}')
        array = np.rint(array).astype(np.uint8)
    return array[..., np.newaxis]


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; choose one of {SPLITS}')


def _lecun_file_names(split):
    """The image and label file names of MNIST and Fashion-MNIST, which share LeCun's."""
    _check_split(split)
    prefix = 'train' if split == 'train' else 't10k'
    return f'{prefix}-images-idx3-ubyte.gz', f'{prefix}-labels-idx1-ubyte.gz'


def _emnist_file_names(subset, split):
    _check_split(split)
    return (f'emnist-{subset}-{split}-images-idx3-ubyte.gz',
            f'emnist-{subset}-{split}-labels-idx1-ubyte.gz')


def _load_idx_pair(name, file_names, data_dir, emnist_subset=None):
    """The images and labels of two IDX files: uint8 (N, 28, 28, 1) and int64 (N,)."""
    images_path, labels_path = _find_files(name, file_names, data_dir, emnist_subset)
    images = _read_idx(images_path, dimensions=3)
    labels = _read_idx(labels_path, dimensions=1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f'{images_path}: expected 28x28 images, got '
                        f'{images.shape[1]}x{images.shape[2]}')
    if len(images) != len(labels):
        raise DataError(f'{images_path} holds {len(images)} images but {labels_path} holds '
                        f'{len(labels)} labels')
    return images[..., np.newaxis], labels.astype(np.int64)


def _read_idx(path, dimensions):
    """The uint8 array of a gzipped IDX file, checked against its header."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f'{path}: not a complete gzip file ({error})') from error
    header_size = 4 + 4 * dimensions
    expected_magic = 0x0800 + dimensions  # two zero bytes, type 0x08 = uint8, dimension count
    if len(raw) < header_size:
        raise DataError(f'{path}: {len(raw)} bytes, too short for an IDX header')
    magic, *shape = struct.unpack(f'>{1 + dimensions}I', raw[:header_size])
    if magic != expected_magic:
        raise DataError(f'{path}: IDX magic number 0x{magic:08x}, expected '
                        f'0x{expected_magic:08x} (uint8, {dimensions} dimensions)')
    payload_size = len(raw) - header_size
    if payload_size != math.prod(shape):
        raise DataError(f'{path}: header says shape {tuple(shape)} ({math.prod(shape)} bytes) '
                        f'but the file holds {payload_size} bytes of data')
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def _cache_root():
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'cgan'


def dataset_folder(name, data_dir):
    """Where dataset `name`'s files are: `data_dir`, else $CGAN_DATA_DIR/<name>, else the cache."""
    if data_dir is not None:
        return Path(data_dir)
    offline_root = os.environ.get('CGAN_DATA_DIR')
    return Path(offline_root) / name if offline_root else _cache_root() / name


def refuse_offline_download(name, data_dir, missing):
    """A FileNotFoundError when `missing` would be downloaded into $CGAN_DATA_DIR: an offline
    copy, often shared and read-only, that nothing is downloaded into."""
    offline_root = os.environ.get('CGAN_DATA_DIR')
    if data_dir is None and offline_root:
        raise FileNotFoundError(
            f'{missing} is missing. CGAN_DATA_DIR={offline_root} is an offline data folder '
            f'that nothing is downloaded into: put the files there, pass --data-dir, or unset '
            f'CGAN_DATA_DIR to download into {_cache_root() / name}.')


def _find_files(name, file_names, data_dir, emnist_subset=None):
    """The paths of a dataset's files, downloading missing ones where that is allowed.

    For EMNIST a download of NIST's zip extracts all the files of `emnist_subset`.
    """
    folder = dataset_folder(name, data_dir)
    if name == 'emnist' and folder.name != 'gzip':
        folder = folder / 'gzip'
    paths = [folder / file_name for file_name in file_names]
    dangling = [path for path in paths if path.is_symlink() and not path.exists()]
    if dangling:  # not missing: what it points to is
        raise DataError(f'{dangling[0]} is a dangling link to {os.readlink(dangling[0])}, which does '
                        f'not exist: point it at the data file, or remove it')
    missing = [path for path in paths if not path.is_file()]
    if not missing:
        return paths
    refuse_offline_download(name, data_dir, missing[0])
    folder.mkdir(parents=True, exist_ok=True)
    if name == 'emnist':
        _download_emnist(folder, emnist_subset)
    else:
        for path in missing:
            _download(name, path.name, path)
    return paths


def _download_emnist(folder, subset):
    """Fetch NIST's gzip.zip into folder, extract the files of `subset`, delete the zip."""
    zip_path = folder / 'gzip.zip'
    _download('emnist', zip_path.name, zip_path)
    wanted = [f'emnist-{subset}-{split}-{kind}.gz' for split in SPLITS
              for kind in ('images-idx3-ubyte', 'labels-idx1-ubyte')]
    wanted.append(f'emnist-{subset}-mapping.txt')
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = {Path(member).name: member for member in archive.namelist()}
            for file_name in wanted:
                if file_name not in members:
                    raise DataError(f'{zip_path} holds no {file_name}')
                with archive.open(members[file_name]) as source, \
                        _partial_file(folder / file_name) as target:
                    while chunk := source.read(1 << 20):
                        target.write(chunk)
    except zipfile.BadZipFile as error:
        raise DataError(f'{zip_path}: not a readable zip file ({error})') from error
    finally:
        zip_path.unlink(missing_ok=True)


def _download(name, file_name, target):
    """Fetch file_name from the first of the dataset's mirrors that delivers it intact."""
    override = os.environ.get(f'CGAN_{name.upper()}_URL')
    base_urls = (override,) if override else MIRRORS[name]
    failures = []
    for base_url in base_urls:
        url = base_url.rstrip('/') + '/' + file_name
        try:
            _fetch(url, target, SHA256[f'{name}/{file_name}'])
            return
        except (OSError, http.client.HTTPException, DataError) as error:
            failures.append(f'{url}: {error}')
    raise DownloadError(
        f'could not download {file_name} ({"; ".join(failures)}). To work offline, put the '
        f'file in {target.parent} yourself, pass data_dir=<folder with the files>, or set '
        f'CGAN_DATA_DIR to a folder with mnist/, fashion/ and emnist/gzip/ sub-folders.')


def _fetch(url, target, expected, algorithm='sha256'):
    """Download url to target, which appears only once its size and checksum (`expected`, by
    hashlib's `algorithm`: CIFAR-10 publishes only an MD5) are right."""
    received = 0
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, \
            _partial_file(target) as out:
        content_length = response.headers.get('Content-Length')
        expected_size = None if content_length is None else int(content_length)
        with tqdm(total=expected_size, unit='B', unit_scale=True, unit_divisor=1024,
                  desc=target.name) as progress:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
        # http.client ends a short read silently when the server closes the connection early.
        if expected_size is not None and received != expected_size:
            raise DataError(f'transfer ended after {received} of {expected_size} bytes')
        out.flush()
        received_digest = file_digest(out.name, algorithm)
        if received_digest != expected:
            name = {'sha256': 'SHA-256', 'md5': 'MD5'}.get(algorithm, algorithm)
            raise DataError(f'{name} {received_digest} differs from the expected {expected}')


def file_sha256(path):
    """The SHA-256 of the file at `path`, as hex: what the downloads are checked against, and
    what a run records of its data files."""
    return file_digest(path, 'sha256')


def file_digest(path, algorithm):
    """The checksum of the file at `path` by hashlib's `algorithm`, as hex."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _partial_file(target):
    """A file written beside target under a temporary name, renamed to target only if the
    block finishes without error, so an interrupted write never looks complete."""
    partial = target.with_name(target.name + '.part')
    try:
        with open(partial, 'wb') as out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# ----------------------------------------------------------------- writing datasets

IDX_COMPRESSLEVEL = 6  # gzip's default: level 9 takes twice as long for 1% smaller files


def idx_file_names(name, split='train', subset='balanced'):
    """The image and label file names that the loader of dataset `name` reads for `split`:
    LeCun's for 'mnist' and 'fashion', NIST's for 'emnist'."""
    if name == 'emnist':
        if subset not in EMNIST_SUBSETS:
            raise ValueError(f'unknown EMNIST subset {subset!r}; choose one of {EMNIST_SUBSETS}')
        return _emnist_file_names(subset, split)
    if name not in ('mnist', 'fashion'):
        raise ValueError(f"unknown dataset {name!r}; choose 'mnist', 'fashion' or 'emnist'")
    return _lecun_file_names(split)


def write_idx(path, shape, chunks):
    """A gzipped IDX file of uint8 values, as the loaders read: the big-endian header of
    `shape`, then the uint8 arrays that `chunks` yields, in order, each of shape (n, *shape[1:]),
    their n adding up to shape[0]. Chunks keep memory flat however large the file.

    The file is written under a temporary name and takes its own only once complete: a
    failure (a bad chunk, a full disk, Ctrl-C) leaves no file that looks valid.
    """
    shape = tuple(int(size) for size in shape)
    header = struct.pack(f'>{1 + len(shape)}I', 0x0800 + len(shape), *shape)
    written = 0
    with _partial_file(Path(path)) as raw, \
            gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=IDX_COMPRESSLEVEL) as out:
        out.write(header)
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if chunk.dtype != np.uint8 or chunk.shape[1:] != shape[1:]:
                raise ValueError(f'{path}: expected uint8 arrays of shape (n, '
                                 f'{", ".join(map(str, shape[1:]))}); got {chunk.dtype} '
                                 f'{chunk.shape}')
            out.write(np.ascontiguousarray(chunk).tobytes())
            written += len(chunk)
        if written != shape[0]:
            raise ValueError(f'{path}: the header says {shape[0]} items but {written} came')
