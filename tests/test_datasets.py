"""Tests of datasets.py: the Dataset wrapper, the loaders on the real data (found through
CGAN_DATA_DIR, else the cache) and every kind of bad input."""

import gzip

import numpy as np
import pytest

from condgan import datasets
from condgan.datasets import DataError, Dataset
from synthetic import idx_bytes, random_images, write_idx, write_idx_pair


# --- Dataset ---------------------------------------------------------------------------------

def batches(dataset, batch_size, rng=None):
    return list(dataset.get_batches(batch_size, rng))


def test_batches_scale_0_and_255_to_exactly_minus_and_plus_half():
    data = np.zeros((4, 28, 28), dtype=np.uint8)
    data[:, 0, 0] = 255
    (images, _), = batches(Dataset(data, [0, 1, 2, 3], channels=1), 4)
    assert images.dtype == np.float32
    assert images.min() == -0.5 and images.max() == 0.5
    assert images[:, 0, 0, 0].tolist() == [0.5] * 4


def test_one_hot_rows_mark_the_position_of_the_class():
    dataset = Dataset(random_images(6), ['cat', 'dog', 'ant', 'dog', 'cat', 'ant'], channels=1)
    assert dataset.classes.tolist() == ['ant', 'cat', 'dog']
    assert dataset.num_classes == 3
    assert dataset.one_hot['dog'].tolist() == [0, 0, 1]
    assert dataset.one_hot['dog'].dtype == np.float32
    (_, one_hot), = batches(dataset, 6)
    assert one_hot.dtype == np.float32 and one_hot.shape == (6, 3)
    assert (one_hot.sum(axis=1) == 1).all()
    assert dataset.classes[one_hot.argmax(axis=1)].tolist() == dataset.labels.tolist()
    assert dataset.classes[dataset.label_indices].tolist() == dataset.labels.tolist()
    assert dataset.label_indices.dtype == np.int32


def test_images_and_labels_stay_aligned_through_shuffles():
    # Label every image with its own index: a batch row's one-hot names its source image.
    originals = random_images(50)
    dataset = Dataset(originals, np.arange(50), channels=1, seed=3)
    assert dataset.labels.tolist() != list(range(50))  # shuffled at construction
    for rng in (None, np.random.default_rng(0)):
        for images, one_hot in dataset.get_batches(7, rng):
            sources = dataset.classes[one_hot.argmax(axis=1)]
            np.testing.assert_allclose(images[..., 0], originals[sources] / 255 - 0.5, atol=1e-6)


def test_the_last_batch_holds_what_is_left():
    dataset = Dataset(random_images(10), np.arange(10) % 2, channels=1)
    sizes = [(len(images), len(one_hot)) for images, one_hot in dataset.get_batches(4)]
    assert sizes == [(4, 4), (4, 4), (2, 2)]


def test_batches_follow_stored_order_unless_given_an_rng():
    dataset = Dataset(random_images(20), np.arange(20), channels=1, seed=0)

    def epoch_labels(rng=None):
        return [label for _, one_hot in dataset.get_batches(6, rng)
                for label in dataset.classes[one_hot.argmax(axis=1)]]

    assert epoch_labels() == dataset.labels.tolist()
    rng = np.random.default_rng(1)
    first, second = epoch_labels(rng), epoch_labels(rng)
    assert first != second != dataset.labels.tolist()
    assert sorted(first) == sorted(second) == list(range(20))


def test_seed_fixes_the_shuffle():
    images, labels = random_images(30), np.arange(30)
    same = [Dataset(images, labels, channels=1, seed=5).labels.tolist() for _ in range(2)]
    other = Dataset(images, labels, channels=1, seed=6).labels.tolist()
    assert same[0] == same[1] != other


def test_label_planes_repeat_the_one_hot_vector_at_every_pixel():
    dataset = Dataset(random_images(5), [0, 1, 2, 3, 4], width=28, height=20, channels=1)
    one_hot = np.eye(5, dtype=np.float32)[[4, 0, 2]]
    planes = dataset.label_planes(one_hot)
    assert planes.shape == (3, 20, 28, 5) and planes.dtype == np.float32
    assert (planes == one_hot[:, np.newaxis, np.newaxis, :]).all()
    planes[0, 0, 0, 0] = 7  # a real array, not a read-only broadcast view
    assert one_hot[0, 0] == 0


def test_other_sizes_are_resized_by_nearest_neighbour():
    small = random_images(3, size=14)
    dataset = Dataset(small, [0, 1, 2], channels=1)
    assert dataset.data.shape == (3, 28, 28, 1) and dataset.data.dtype == np.uint8
    doubled = small.repeat(2, axis=1).repeat(2, axis=2)
    for image, label in zip(dataset.data, dataset.labels):
        np.testing.assert_array_equal(image[..., 0], doubled[label])


def test_shape_lists_width_before_height_as_the_original():
    dataset = Dataset(random_images(2), [0, 1], width=32, height=24, channels=3)
    assert dataset.data.shape == (2, 24, 32, 3)
    assert dataset.shape == (2, 32, 24, 3)


def test_gray_images_become_rgb_when_three_channels_are_asked():
    dataset = Dataset(random_images(4), [0, 1, 2, 3])  # channels=3 is the default
    assert dataset.data.shape == (4, 28, 28, 3)
    assert (dataset.data[..., 0] == dataset.data[..., 2]).all()
    assert (dataset.image_mode, dataset.cmap) == ('RGB', None)
    images, _ = next(dataset.get_batches(4))
    assert images.shape == (4, 28, 28, 3)


def test_rgb_images_become_luma_when_one_channel_is_asked():
    red_green_blue = np.zeros((3, 28, 28, 3), dtype=np.uint8)
    for channel in range(3):
        red_green_blue[channel, ..., channel] = 255
    dataset = Dataset(red_green_blue, [0, 1, 2], channels=1)
    assert (dataset.image_mode, dataset.cmap) == ('L', 'gray')
    gray = {label: dataset.data[index, 0, 0, 0] for index, label in enumerate(dataset.labels)}
    assert gray == {0: 76, 1: 150, 2: 29}  # ITU-R 601 luma of pure red, green, blue


def test_unlabeled_data_serves_images_with_no_labels():
    dataset = Dataset(random_images(5), channels=1)
    assert dataset.labels is None and dataset.classes is None and dataset.one_hot is None
    assert dataset.label_indices is None and dataset.num_classes == 0
    served = batches(dataset, 2)
    assert [len(images) for images, _ in served] == [2, 2, 1]
    assert all(one_hot is None for _, one_hot in served)


@pytest.mark.parametrize('data, labels, options, error, fragment', [
    (random_images(4), [0, 1, 2], {}, ValueError, 'shape (3,) for 4 images'),
    (random_images(4), np.zeros((4, 2)), {}, ValueError, 'one value per image'),
    (random_images(2).astype(np.float32), None, {}, TypeError, 'dtype float32'),
    (np.zeros((28, 28), np.uint8), None, {}, ValueError, 'got (28, 28)'),
    (np.zeros((2, 28, 28, 4), np.uint8), None, {}, ValueError, '1 or 3 channels, got 4'),
    (np.zeros((0, 28, 28), np.uint8), None, {}, ValueError, 'no pixels'),
    (random_images(2), None, {'channels': 2}, ValueError, 'channels must be 1 or 3, got 2'),
    (random_images(2), None, {'width': 0}, ValueError, 'width must be a positive integer'),
    (random_images(2), None, {'max_value': 0}, ValueError, 'max_value must be positive'),
])
def test_bad_dataset_arguments_are_named(data, labels, options, error, fragment):
    with pytest.raises(error, match=fragment.replace('(', r'\(').replace(')', r'\)')):
        Dataset(data, labels, **options)


@pytest.mark.parametrize('batch_size, rng, error, fragment', [
    (0, None, ValueError, 'batch_size must be at least 1, got 0'),
    (2.5, None, TypeError, 'batch_size must be an integer'),
    (2, 42, TypeError, 'rng must be a numpy.random.Generator'),
])
def test_bad_batch_arguments_are_named(batch_size, rng, error, fragment):
    dataset = Dataset(random_images(3), [0, 1, 2], channels=1)
    with pytest.raises(error, match=fragment):
        dataset.get_batches(batch_size, rng)


def test_label_planes_reject_vectors_of_the_wrong_width():
    dataset = Dataset(random_images(3), [0, 1, 2], channels=1)
    with pytest.raises(ValueError, match=r'shape \(batch, 3\), got \(2, 4\)'):
        dataset.label_planes(np.zeros((2, 4)))


# --- Loaders on the real data ------------------------------------------------------------------

@pytest.mark.parametrize('load, num_classes', [
    (datasets.load_mnist, 10), (datasets.load_fashion_mnist, 10), (datasets.load_emnist, 47)])
@pytest.mark.parametrize('split', ['train', 'test'])
def test_real_data_loads_with_every_class_about_equally_present(load, num_classes, split):
    images, labels = load(split)
    assert images.dtype == np.uint8 and images.shape == (len(labels), 28, 28, 1)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert images.max() == 255 and images.min() == 0
    counts = np.bincount(labels)
    assert len(counts) == num_classes  # labels 0..K-1
    assert (abs(counts - counts.mean()) <= 0.3 * counts.mean()).all(), counts


def test_test_split_is_not_the_train_split():
    train, _ = datasets.load_mnist('train')
    test, _ = datasets.load_mnist('test')
    assert len(test) < len(train) and not np.array_equal(train[:len(test)], test)


def test_class_names():
    assert datasets.MNIST_LABELS == tuple('0123456789')
    assert datasets.FASHION_LABELS[0] == 'T-shirt/top' and datasets.FASHION_LABELS[9] == 'Ankle boot'
    assert len(datasets.FASHION_LABELS) == 10
    names = datasets.emnist_label_names()
    assert ''.join(names) == '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt'


def ink_extent(image):
    """How many rows and columns of a mean image hold a good share of its ink."""
    rows, columns = image.sum(axis=1), image.sum(axis=0)
    return (rows > 0.2 * rows.max()).sum(), (columns > 0.2 * columns.max()).sum()


def test_emnist_comes_back_upright():
    images, labels = datasets.load_emnist()
    names = datasets.emnist_label_names()
    for tall in '1I':
        height, width = ink_extent(images[labels == names.index(tall)].mean(axis=0)[..., 0])
        assert height > 1.5 * width, (tall, height, width)


def test_real_images_stay_with_their_labels_in_a_dataset():
    images, labels = datasets.load_mnist('test')
    label_of_image = {image.tobytes(): label for image, label in zip(images, labels)}
    dataset = Dataset(images, labels, channels=1, seed=0)
    for batch_images, one_hot in dataset.get_batches(256, np.random.default_rng(0)):
        pixels = np.rint((batch_images + 0.5) * 255).astype(np.uint8)
        for image, label in zip(pixels, dataset.classes[one_hot.argmax(axis=1)]):
            assert label_of_image[image.tobytes()] == label


# --- Data folders and bad files ----------------------------------------------------------------

@pytest.fixture
def mnist_folder(tmp_path):
    """A folder with synthetic MNIST-style training files of 6 images."""
    write_idx_pair(tmp_path, random_images(6), np.arange(6, dtype=np.uint8) % 3)
    return tmp_path


def test_data_dir_wins_over_cgan_data_dir(mnist_folder, monkeypatch, tmp_path_factory):
    monkeypatch.setenv('CGAN_DATA_DIR', str(tmp_path_factory.mktemp('empty')))
    images, labels = datasets.load_mnist(data_dir=mnist_folder)
    np.testing.assert_array_equal(images[..., 0], random_images(6))
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_cgan_data_dir_holds_one_folder_per_dataset(monkeypatch, tmp_path):
    write_idx_pair(tmp_path / 'fashion', random_images(6), np.zeros(6, np.uint8), prefix='t10k')
    monkeypatch.setenv('CGAN_DATA_DIR', str(tmp_path))
    images, _ = datasets.load_fashion_mnist('test')
    np.testing.assert_array_equal(images[..., 0], random_images(6))


def test_a_file_missing_from_cgan_data_dir_is_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv('CGAN_DATA_DIR', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='CGAN_DATA_DIR=.*unset CGAN_DATA_DIR') as error:
        datasets.load_mnist()
    assert 'train-images-idx3-ubyte.gz is missing' in str(error.value)
    assert not (tmp_path / 'mnist').exists()


def test_emnist_data_dir_may_be_the_gzip_folder_or_the_folder_above(tmp_path):
    gzip_folder = tmp_path / 'gzip'
    gzip_folder.mkdir()
    upright = random_images(4)
    write_idx(gzip_folder / 'emnist-letters-test-images-idx3-ubyte.gz', upright.transpose(0, 2, 1))
    write_idx(gzip_folder / 'emnist-letters-test-labels-idx1-ubyte.gz', np.array([1, 2, 3, 1], np.uint8))
    (gzip_folder / 'emnist-letters-mapping.txt').write_text('1 65 97\n2 66 98\n3 67 99\n')
    for data_dir in (tmp_path, gzip_folder):
        images, labels = datasets.load_emnist('test', 'letters', data_dir)
        np.testing.assert_array_equal(images[..., 0], upright)
        assert labels.tolist() == [1, 2, 3, 1]
        assert datasets.emnist_label_names('letters', data_dir) == ('A', 'B', 'C')


def test_data_files_are_the_files_the_loaders_read(mnist_folder, monkeypatch, tmp_path_factory):
    assert datasets.data_files('mnist', data_dir=mnist_folder) == [
        mnist_folder / 'train-images-idx3-ubyte.gz', mnist_folder / 'train-labels-idx1-ubyte.gz']
    root = tmp_path_factory.mktemp('root')
    names = ['emnist-balanced-test-images-idx3-ubyte.gz', 'emnist-balanced-test-labels-idx1-ubyte.gz',
             'emnist-balanced-mapping.txt']
    (root / 'emnist' / 'gzip').mkdir(parents=True)
    for name in names:
        (root / 'emnist' / 'gzip' / name).touch()
    monkeypatch.setenv('CGAN_DATA_DIR', str(root))
    assert datasets.data_files('emnist', 'test') == [root / 'emnist' / 'gzip' / name for name in names]
    with pytest.raises(ValueError, match="unknown dataset 'zalando'"):
        datasets.data_files('zalando')


def replace_file(folder, name, content):
    (folder / name).write_bytes(content)


@pytest.mark.parametrize('name, content, fragment', [
    ('train-images-idx3-ubyte.gz', gzip.compress(idx_bytes(random_images(6), magic=0x801)),
     'magic number 0x00000801, expected 0x00000803'),
    ('train-images-idx3-ubyte.gz', gzip.compress(idx_bytes(random_images(6)))[:-100],
     'not a complete gzip file'),
    ('train-labels-idx1-ubyte.gz', b'this is no gzip file', 'not a complete gzip file'),
    ('train-labels-idx1-ubyte.gz', gzip.compress(idx_bytes(np.zeros(7, np.uint8))[:-1]),
     r'header says shape \(7,\) \(7 bytes\) but the file holds 6 bytes'),
    ('train-labels-idx1-ubyte.gz', gzip.compress(b'\0\0\x08'), 'too short for an IDX header'),
    ('train-labels-idx1-ubyte.gz', gzip.compress(idx_bytes(np.zeros(5, np.uint8))),
     'holds 6 images but .*train-labels-idx1-ubyte.gz holds 5 labels'),
    ('train-images-idx3-ubyte.gz', gzip.compress(idx_bytes(random_images(6, size=20))),
     'expected 28x28 images, got 20x20'),
], ids=['wrong magic number', 'truncated gzip', 'not gzip', 'data too short', 'header too short',
        'fewer labels than images', 'wrong image size'])  # named: ids made of gzip bytes hold the time
def test_bad_idx_files_are_named_with_their_problem(mnist_folder, name, content, fragment):
    replace_file(mnist_folder, name, content)
    with pytest.raises(DataError, match=fragment) as error:
        datasets.load_mnist(data_dir=mnist_folder)
    assert str(mnist_folder) in str(error.value)


@pytest.mark.parametrize('call, fragment', [
    (lambda: datasets.load_mnist('validation'), "unknown split 'validation'"),
    (lambda: datasets.load_fashion_mnist('Train'), "unknown split 'Train'"),
    (lambda: datasets.load_emnist('train', 'capitals'), "unknown EMNIST subset 'capitals'"),
    (lambda: datasets.emnist_label_names('capitals'), "unknown EMNIST subset 'capitals'"),
])
def test_unknown_splits_and_subsets_are_refused(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


def test_a_bad_emnist_mapping_line_is_named(tmp_path):
    (tmp_path / 'gzip').mkdir()
    (tmp_path / 'gzip' / 'emnist-balanced-mapping.txt').write_text('0 48\n1 x\n')
    with pytest.raises(DataError, match=r'mapping.txt, line 2: expected "label ascii_code"'):
        datasets.emnist_label_names(data_dir=tmp_path)


# --- HWD+ --------------------------------------------------------------------------------------

def write_hdw(folder, images, writer_info):
    np.save(folder / 'Images(28x28).npy', images)
    np.save(folder / 'WriterInfo.npy', writer_info)
    return folder


def test_hdw_loads_images_and_column_0_of_writer_info(tmp_path):
    info = np.array([[3, 25, 1], [7, 31, 0], [0, 19, 1]], dtype=np.float64)
    images, labels = datasets.load_hdw(write_hdw(tmp_path, random_images(3), info))
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], random_images(3))
    assert labels.tolist() == [3, 7, 0] and labels.dtype == np.int64


def test_hdw_float_pixels_in_0_1_become_0_255(tmp_path):
    pixels = np.zeros((2, 28, 28), np.float32)
    pixels[0, 0, 0] = 1.0
    images, _ = datasets.load_hdw(write_hdw(tmp_path, pixels, np.array([[1], [2]])))
    assert images.dtype == np.uint8 and images.max() == 255 and images.sum() == 255


def test_missing_hdw_files_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'Images\(28x28\).npy is missing.*Kaggle'):
        datasets.load_hdw(tmp_path)


@pytest.mark.parametrize('images, info, fragment', [
    (random_images(3, size=20), np.zeros((3, 2)), r'expected 28x28 images .* got shape \(3, 20, 20\)'),
    (random_images(3), np.zeros((2, 2)), r'expected one row per image \(3 rows\)'),
    (random_images(3), np.array([[1.5], [2], [3]]), 'whole-number digit labels'),
    (np.full((1, 28, 28), 300.0), np.zeros((1, 1)), r'must be finite and lie in 0-255 \(or 0-1\), got 300.0..300.0'),
    (np.full((1, 28, 28), np.nan), np.zeros((1, 1)), 'must be finite'),
    (np.full((1, 28, 28), 'x'), np.zeros((1, 1)), 'expected numeric pixels, got dtype <U1'),
    (np.array([None] * 3, dtype=object), np.zeros((3, 1)), 'not a readable .npy array'),
])
def test_bad_hdw_files_are_named_with_their_problem(tmp_path, images, info, fragment):
    write_hdw(tmp_path, images, info)
    with pytest.raises(DataError, match=fragment):
        datasets.load_hdw(tmp_path)
