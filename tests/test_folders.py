"""Your own images (issue 26): an image folder read, trained on, resumed, judged, generated
from and synthesized, and every bad folder refused as a user meets it, through the command
line in a subprocess: one line on stderr naming the file, a non-zero exit, nothing written.

The folders are a few dozen tiny PNG files the tests write; the trainings take 2 to 4 steps."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condgan import datasets, folders
from test_commands import refused
from test_recipes import REPO, command, folder_state

SIDE = 16
CLASSES = ('blue cross', 'grün', 'red square')
PER_CLASS = 12  # 1 held out of each: round(12 / 10)
FAST = ['--batch-size', '8', '--seed', '0', '--save-every', '2']


def coloured_image(rng, position, side=SIDE):
    """A dark noisy square with a bright patch in the colour channel of `position`."""
    pixels = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
    pixels[side // 4: 3 * side // 4, side // 4: 3 * side // 4, position] = 255
    return pixels


def write_folder(folder, per_class=PER_CLASS, classes=CLASSES, seed=0):
    """Class folders of 16x16 RGB PNGs, half of each class one folder deeper."""
    rng = np.random.default_rng(seed)
    for position, name in enumerate(classes):
        for number in range(per_class):
            path = folder / name / ('nested' if number % 2 else '.') / f'{number:03d}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(coloured_image(rng, position % 3)).save(path)
    return folder


def train(folder, out_dir, *arguments):
    return command('cgan.py', 'train', folder, '--out-dir', out_dir, *FAST, *arguments,
                   cwd=Path(out_dir).parent)


def trained(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def folder_run(tmp_path_factory):
    """One real `cgan.py train` of a colour folder: 3 steps, checkpoints at 2 and 3."""
    root = tmp_path_factory.mktemp('folder')
    folder = write_folder(root / 'pictures')
    (folder / '.DS_Store').write_bytes(b'\0\1')
    (folder / 'grün' / 'notes.txt').write_text('not an image')
    result = trained(train(folder, root / 'runs', '--max-steps', '3', '--variant', 'modern'))
    return folder, root / 'runs' / 'pictures', result


# ------------------------------------------------------------------ what the loader reads

def test_a_folder_trains_in_colour_and_records_its_files(folder_run):
    folder, run_dir, result = folder_run
    assert f'{len(CLASSES) * PER_CLASS} images of 3 classes, as 16x16x3' in result.stdout
    assert 'ignored 2 files' in result.stdout
    record = json.loads((run_dir / 'run.json').read_text())
    data = record['data']
    assert record['recipe'] == 'folder' and data['folder'] == str(folder.resolve())
    assert data['class_names'] == sorted(CLASSES)
    assert len(data['files']) == len(CLASSES) * PER_CLASS
    assert data['files']['grün/nested/001.png'] == folders.hashlib.sha256(
        (folder / 'grün/nested/001.png').read_bytes()).hexdigest()
    assert len(data['held_out']) == len(CLASSES) and \
        sorted(path.split('/')[0] for path in data['held_out']) == sorted(CLASSES)
    with Image.open(run_dir / 'classes.png') as picture:
        assert picture.mode == 'RGB' and picture.height == len(CLASSES) * SIDE
    with open(run_dir / 'pictures.pkl', 'rb') as f:
        gan = pickle.load(f)
    assert gan.class_names == tuple(sorted(CLASSES)) and gan.image_shape == (SIDE, SIDE, 3)
    assert gan.data_source['folder'] == str(folder.resolve())


def test_the_gan_never_trains_on_the_held_out_tenth(tmp_path):
    """40 images a class, 4 of them held out: an epoch of batches of 9 is 12 steps, not 14."""
    folder = write_folder(tmp_path / 'images', per_class=40)
    trained(train(folder, tmp_path / 'runs', '--epochs', '1', '--batch-size', '9'))
    losses = np.loadtxt(tmp_path / 'runs' / 'images' / 'losses.csv', delimiter=',', skiprows=1)
    assert losses[-1, 0] == 3 * 36 / 9
    loaded = folders.load(folder)
    assert loaded.held_out.sum() == 3 * 4
    train_images, _ = loaded.train_part()
    held_out_images, _ = loaded.held_out_part()
    assert not {image.tobytes() for image in train_images} & {image.tobytes() for image in held_out_images}
    assert (folders.load(folder).held_out == loaded.held_out).all()  # fixed, by the paths' hashes


def test_generate_takes_a_folder_class_name(folder_run, tmp_path):
    _, run_dir, _ = folder_run
    result = command('cgan.py', 'generate', run_dir, '--target-class', 'grün', '--rows', '2',
                     '--cols', '2', '-o', tmp_path / 'grün.png', '--npy', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / 'grün.npy').shape == (4, SIDE, SIDE, 3)


def test_resume_goes_on_and_refuses_a_changed_folder(folder_run, tmp_path):
    folder, run_dir, _ = folder_run
    trained(train(folder, run_dir.parent, '--max-steps', '4', '--resume'))
    assert json.loads((run_dir / 'run.json').read_text())['steps'] == 4
    extra = folder / 'grün' / 'extra.png'
    extra.write_bytes((folder / 'grün' / '000.png').read_bytes())
    (folder / 'red square' / '000.png').write_bytes((folder / 'grün' / '000.png').read_bytes())
    before = folder_state(run_dir)
    try:
        result = train(folder, run_dir.parent, '--max-steps', '5', '--resume')
        refused(result, 2, r'pictures changed since the run .*: 1 added \(grün/extra.png\); '
                           r'1 changed \(red square/000.png\); pass --folder-changed')
        assert folder_state(run_dir) == before
        trained(train(folder, run_dir.parent, '--max-steps', '5', '--resume', '--folder-changed'))
        assert 'grün/extra.png' in json.loads((run_dir / 'run.json').read_text())['data']['files']
    finally:
        extra.unlink()


def test_loose_images_train_an_unconditional_model(tmp_path):
    folder = tmp_path / 'sprites'
    folder.mkdir()
    rng = np.random.default_rng(1)
    for number in range(10):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / f'{number}.bmp')
    result = trained(train(folder, tmp_path / 'runs', '--max-steps', '2'))
    assert '10 images of no classes, as 20x20x1' in result.stdout
    assert '10 images are not 20x20: centre-cropped to a square and resized (Lanczos)' in result.stdout
    with open(tmp_path / 'runs' / 'sprites' / 'sprites.pkl', 'rb') as f:
        gan = pickle.load(f)
    assert gan.num_classes == 0 and gan.image_shape == (20, 20, 1)


def test_modes_are_converted_not_clipped(tmp_path):
    """16-bit gray scaled to 8 bits, palette and CMYK to RGB, transparency on black; GIF's
    first frame; JPEG, WebP, BMP read; gray files alone make a gray model."""
    folder = tmp_path / 'modes'
    gray = folder / 'gray'
    gray.mkdir(parents=True)
    sixteen = np.full((SIDE, SIDE), 257 * 200, np.uint16)
    Image.fromarray(sixteen).save(gray / 'sixteen.png')
    Image.fromarray(np.full((SIDE, SIDE, 2), (90, 0), np.uint8), 'LA').save(gray / 'transparent.png')
    frames = [Image.fromarray(np.full((SIDE, SIDE), value, np.uint8)) for value in (30, 220)]
    frames[0].save(gray / 'animated.gif', save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((SIDE, SIDE), 128, np.uint8)).save(gray / 'photo.jpg', quality=100)
    loaded = folders.load(folder)
    assert loaded.images.shape == (4, SIDE, SIDE, 1)
    by_name = dict(zip([f.path for f in loaded.listing.files], loaded.images[..., 0]))
    assert (by_name['gray/sixteen.png'] == 200).all() and (by_name['gray/transparent.png'] == 0).all()
    assert (by_name['gray/animated.gif'] == 30).all() and abs(int(by_name['gray/photo.jpg'].mean()) - 128) <= 1

    colour = folder / 'colour'
    colour.mkdir()
    Image.new('CMYK', (SIDE, SIDE), (0, 255, 255, 0)).save(colour / 'cmyk.jpg', quality=100)
    Image.new('RGB', (SIDE, SIDE), (0, 0, 255)).convert('P').save(colour / 'palette.png')
    Image.new('RGBA', (SIDE, SIDE), (0, 255, 0, 128)).save(colour / 'half.webp', lossless=True)
    Image.new('RGB', (SIDE, SIDE), (10, 20, 30)).save(colour / 'plain.bmp')
    loaded = folders.load(folder)
    assert loaded.images.shape == (8, SIDE, SIDE, 3)  # one colour image: RGB for all
    by_name = dict(zip([f.path for f in loaded.listing.files], loaded.images))
    assert np.abs(by_name['colour/cmyk.jpg'].astype(int) - (255, 0, 0)).max() <= 3
    assert (by_name['colour/palette.png'] == (0, 0, 255)).all()
    assert np.abs(by_name['colour/half.webp'].astype(int) - (0, 128, 0)).max() <= 1
    assert (by_name['colour/plain.bmp'] == (10, 20, 30)).all()
    assert (by_name['gray/sixteen.png'] == 200).all()
    assert folders.load(folder, channels=1).images.shape == (8, SIDE, SIDE, 1)


def test_a_resumed_run_reads_its_cache_not_the_pixels(tmp_path):
    folder = write_folder(tmp_path / 'images', per_class=3)
    loaded = folders.load(folder)
    loaded.images[:] = 7  # not what the files hold: only the cache can give these
    folders.save_cache(loaded, SIDE, 3, tmp_path / folders.CACHE_FILE)
    assert (folders.load(folder, SIDE, 3, cache=tmp_path / folders.CACHE_FILE).images == 7).all()
    assert not (folders.load(folder, 20, 3, cache=tmp_path / folders.CACHE_FILE).images == 7).all()


def test_fashion_mnist_written_as_png_folders_loads_back_exactly(tmp_path):
    """Real Fashion-MNIST images as PNG class folders ('/' is no folder name: 'T-shirt-top')
    come back as the same (pixels, class name) pairs."""
    images, labels = datasets.load_fashion_mnist()
    images, labels = images[:300], labels[:300]
    names = [name.replace('/', '-') for name in datasets.FASHION_LABELS]
    for index, (image, label) in enumerate(zip(images, labels)):
        path = tmp_path / 'fashion' / names[label] / f'{index:05d}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(path)
    loaded = folders.load(tmp_path / 'fashion')
    assert loaded.images.shape == images.shape
    found = sorted((image.tobytes(), loaded.class_names[label]) for image, label in zip(loaded.images, loaded.labels))
    expected = sorted((image.tobytes(), names[label]) for image, label in zip(images, labels))
    assert found == expected


# ------------------------------------------------------------------ bad folders

def links_state(folder):
    """folder_state, of links too (a dangling one has no size to stat)."""
    return {str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
            for path in sorted(Path(folder).rglob('*'))}


def write_bad_folder(tmp_path, case):
    """A folder of two good classes and one fault; the fault's path."""
    folder = write_folder(tmp_path / 'bad', per_class=3, classes=('a', 'b'))
    png = (folder / 'a' / '000.png').read_bytes()
    if case == 'truncated':
        path = folder / 'a' / 'truncated.png'
        path.write_bytes(png[:len(png) // 2])
    elif case == 'corrupt':
        path = folder / 'a' / 'corrupt.png'
        path.write_bytes(png[:40] + bytes(len(png) - 40))
    elif case == 'text':
        path = folder / 'b' / 'readme.png'
        path.write_text('this is text, not a picture')
    elif case == 'unreadable':  # a link to nothing: root reads every file chmod forbids
        path = folder / 'b' / 'gone.png'
        os.symlink(tmp_path / 'nowhere.png', path)
    elif case == 'empty class':
        path = folder / 'c'
        path.mkdir()
        (path / 'Thumbs.db').write_bytes(b'\0')
    elif case == 'bad name':
        path = folder / 'new\nline'
        path.mkdir()
        (path / '0.png').write_bytes(png)
    elif case == 'mixed':
        path = folder / 'loose.png'
        path.write_bytes(png)
    return folder, path


@pytest.mark.parametrize('case, fragment', [
    ('truncated', r'truncated.png: unreadable \(.*\): expected a PNG, .* image; .* --skip-unreadable'),
    ('corrupt', r'corrupt.png: unreadable .*--skip-unreadable'),
    ('text', r'readme.png: unreadable \(not an image Pillow reads\).*--skip-unreadable'),
    ('unreadable', r'gone.png: unreadable \(No such file or directory\).*--skip-unreadable'),
    ('empty class', r'bad/c holds no PNG, JPEG, BMP, GIF or WebP images: add some, or remove'),
    ('bad name', r"the class name 'new\\nline' cannot be a folder name"),
    ('mixed', r'bad holds both class folders \(a, b\) and loose images \(loose.png\)'),
])
def test_a_bad_folder_is_refused_and_nothing_is_written(tmp_path, case, fragment):
    folder, _ = write_bad_folder(tmp_path, case)
    before = links_state(folder)
    refused(train(folder, tmp_path / 'runs', '--max-steps', '2'), 2, fragment)
    assert not (tmp_path / 'runs').exists() and links_state(folder) == before


@pytest.mark.parametrize('case', ['truncated', 'text', 'unreadable'])
def test_skip_unreadable_trains_without_the_file_and_counts_it(tmp_path, case):
    folder, path = write_bad_folder(tmp_path, case)
    result = trained(train(folder, tmp_path / 'runs', '--max-steps', '2', '--skip-unreadable'))
    assert f'skipped 1 unreadable files (such as {path}: unreadable' in result.stdout
    assert json.loads((tmp_path / 'runs' / 'bad' / 'run.json').read_text())['data']['skipped'] == \
        [path.relative_to(folder).as_posix()]


@pytest.mark.parametrize('arguments, fragment', [
    (['--size', '68'], r'--size 68: expected a multiple of 4 from 16 to 64 \(the networks do not grow'),
    (['--size', '30'], r'--size 30: expected a multiple of 4'),
])
def test_a_size_the_networks_do_not_take_is_refused(tmp_path, arguments, fragment):
    folder = write_folder(tmp_path / 'images', per_class=2)
    refused(train(folder, tmp_path / 'runs', *arguments), 2, fragment)
    assert not (tmp_path / 'runs').exists()


def test_no_images_at_all_is_refused(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no pictures here')
    refused(train(tmp_path / 'empty', tmp_path / 'runs'), 2,
            r'empty holds no PNG, JPEG, BMP, GIF or WebP images, nor class folders of them')


def test_a_folder_too_big_for_memory_is_refused_before_loading(tmp_path):
    image_file = folders.ImageFile('a/0.png', 'a', '0' * 64, 64, 64, True)
    listing = folders.Listing(tmp_path, ('a',), [image_file] * 10_000_000, 0, {})
    with pytest.raises(folders.FolderError, match=r'10000000 images of 64x64x3 need 228.9 GiB of memory, '
                                                  r'and .* GiB is available'):
        folders.check_memory(listing, 64, 3)


# ------------------------------------------------------------------ synthesize

def test_synthesize_writes_a_folder_that_train_reads_back(folder_run, tmp_path):
    folder, run_dir, _ = folder_run
    out = tmp_path / 'made'
    result = command('cgan.py', 'synthesize', run_dir, '--per-class', '3', '-o', out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob('*.png')) == \
        [f'{name}/{number:05d}.png' for name in sorted(CLASSES) for number in range(3)]
    loaded = folders.load(out)
    assert loaded.class_names == sorted(CLASSES) and loaded.images.shape == (9, SIDE, SIDE, 3)
    trained(train(out, tmp_path / 'runs', '--max-steps', '2'))


@pytest.mark.parametrize('inside', ['.', 'grün/more'])
def test_synthesize_refuses_to_write_into_the_training_folder(folder_run, tmp_path, inside):
    folder, run_dir, _ = folder_run
    before = folder_state(folder)
    refused(command('cgan.py', 'synthesize', run_dir, '--per-class', '2', '-o', folder / inside,
                    cwd=tmp_path), 2, r'is inside the folder .*pictures that the model was trained on')
    assert folder_state(folder) == before


def test_synthesize_refuses_a_class_name_that_is_no_folder_name(tmp_path):
    """Fashion-MNIST's 'T-shirt/top' as a folder would be a folder 'top' in 'T-shirt'."""
    from condgan.datasets import Dataset
    from condgan.gan import CGan
    images = np.random.default_rng(0).integers(0, 256, (8, SIDE, SIDE, 1), dtype=np.uint8)
    gan = CGan(Dataset(images, np.arange(8) % 2, width=SIDE, height=SIDE, channels=1, seed=0),
               batch_size=4, out_dir=str(tmp_path), generator_name='clothes', seed=0,
               class_names=['T-shirt/top', 'Trouser'])
    gan.fit(max_steps=1, plot=False)
    with open(tmp_path / 'clothes.pkl', 'wb') as f:
        pickle.dump(gan, f)
    refused(command('cgan.py', 'synthesize', tmp_path / 'clothes.pkl', '--folders', '--per-class', '2',
                    '-o', tmp_path / 'out', cwd=tmp_path), 2,
            r"out: the class name 'T-shirt/top' cannot be a folder name .*: write IDX files instead")
    assert not (tmp_path / 'out').exists()


# ------------------------------------------------------------------ evaluate

def test_evaluate_judges_a_folder_model_on_its_held_out_images(tmp_path):
    """Its classifier trains on the folder's training part and is tested on the held-out
    tenth (2 images a class); a folder changed since training is refused."""
    folder = write_folder(tmp_path / 'shapes', per_class=20)
    trained(train(folder, tmp_path / 'runs', '--max-steps', '2'))
    environment = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path / 'cache')}
    run = tmp_path / 'runs' / 'shapes'
    result = command_with(environment, 'evaluate', run, '--per-class', '4', '--json', '--seed', '0')
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures['dataset'] == 'folder shapes'
    assert [c['name'] for c in figures['per_class']] == sorted(CLASSES)
    assert figures['classifier_accuracy'] == 1.0  # the colours tell the classes apart
    [cache] = (tmp_path / 'cache' / 'cgan' / 'folders').iterdir()
    (folder / 'grün' / '000.png').unlink()
    refused(command_with(environment, 'evaluate', run, '--per-class', '4'), 2,
            r'shapes changed since the model was trained on it')


def test_evaluate_against_a_dataset_refuses_a_folder_model_of_other_class_names(tmp_path):
    """A folder of ten gray 28x28 classes fits MNIST's shape and class values, but its classes
    are not MNIST's digits: judged as MNIST it would get another class's figures."""
    names = [f'kind {letter}' for letter in 'abcdefghij']
    rng = np.random.default_rng(0)
    for name in names:
        (tmp_path / 'kinds' / name).mkdir(parents=True)
        for number in range(2):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(
                tmp_path / 'kinds' / name / f'{number}.png')
    trained(train(tmp_path / 'kinds', tmp_path / 'runs', '--max-steps', '1'))
    environment = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path / 'cache')}
    refused(command_with(environment, 'evaluate', tmp_path / 'runs' / 'kinds', '--dataset', 'mnist'), 2,
            r"the model's classes are named \['kind a', 'kind b', .*\] but mnist's are \['0', '1', ")
    assert not (tmp_path / 'cache' / 'cgan').exists()  # refused before any classifier training


def command_with(environment, *arguments):
    """`cgan.py` with its own environment (a cache of its own for the classifier)."""
    return subprocess.run([sys.executable, str(REPO / 'cgan.py'), *map(str, arguments)],
                          capture_output=True, text=True, timeout=300,
                          env={**environment, 'TF_CPP_MIN_LOG_LEVEL': '3'})
