"""Your own images: a folder of image files as a training set.

    DIR/<class name>/...   one folder per class, nested folders included (the convention of
                           torchvision's ImageFolder and Keras's image_dataset_from_directory)
    DIR/*.png              loose images and no class folders: an unconditional model

Class values are 0, 1, ... for the class folders' names in sorted order. Pillow reads PNG,
JPEG, BMP, GIF (the first frame) and WebP; other files, and hidden ones (`.DS_Store`,
`.ipynb_checkpoints/`), are ignored and counted. Every image becomes uint8 (S, S, C): 16-bit
scaled to 8, palette and CMYK to RGB, transparency composited on BACKGROUND, then gray or RGB
(ITU-R 601 luma, as `Dataset` does), centre-cropped to a square and resized with RESAMPLING.

A fixed tenth of each class (HELD_OUT_FRACTION), chosen by a seeded hash of each file's path,
is held out: `evaluate` tests its judge on it, and neither the GAN nor the judge trains on it.

Every fault of the folder is a FolderError (a ValueError) whose one line names the file and
what was expected. Nothing here writes anything, but `save_cache`.
"""
import collections
import hashlib
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from condgan.datasets import DataError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
FORMATS = 'PNG, JPEG, BMP, GIF or WebP'
# The networks (model.py) double an (S/4, S/4) start twice and see S/4 x S/4 x 128 features
# at the end; their dense layers grow with S squared and nothing else grows. Past 64 pixels
# the generator's first layer alone would hold (z + classes) x 131,072 weights per 64 pixels
# more, and two 5x5 stride-2 layers see too little of a 128-pixel image to shape it.
MIN_SIZE, MAX_SIZE = 16, 64
BACKGROUND = 0            # transparent pixels are composited on black
RESAMPLING = Image.Resampling.LANCZOS
RESAMPLING_NAME = 'Lanczos'
HELD_OUT_FRACTION = 0.1   # of each class, held out for evaluate; at least one of 2 or more
SPLIT_SEED = 'cgan-held-out-0'  # hashed with each file's path: which files are held out
LOADER_VERSION = 1        # bump when decoding changes: a cache of another version is not used
CACHE_FILE = 'folder_images.npz'
# The images, and Dataset's shuffled copy of them, are in memory at once.
COPIES_IN_MEMORY = 2
MAX_NAMED = 3             # files named in a message that lists some
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


class FolderError(DataError):
    """An image folder that cannot be trained on as it is."""


@dataclass(frozen=True)
class ImageFile:
    path: str          # relative to the folder, with '/' between parts
    class_name: str    # its class folder's name; '' in a folder of loose images
    sha256: str
    width: int
    height: int
    colour: bool


@dataclass
class Listing:
    """What a folder holds, read from the files' headers: no pixel is decoded yet."""
    folder: Path
    class_names: tuple            # sorted; () for loose images
    files: list                   # ImageFile, in sorted order of (class, path)
    ignored: int                  # files that are no images (other extensions, hidden)
    manifest: dict                # {relative path: SHA-256} of every image, skipped ones too
                                  # (None: a file that could not be read)
    skipped: list = field(default_factory=list)  # (path, reason) of unreadable files skipped


@dataclass
class FolderImages:
    """A folder's images, decoded: uint8 `images` (N, S, S, C), int64 `labels` (N,) (None
    for loose images), `held_out` bool (N,), in the order of `listing.files`."""
    listing: Listing
    images: np.ndarray
    labels: np.ndarray
    held_out: np.ndarray
    notes: list          # the lines that say what was ignored, resized or skipped

    @property
    def class_names(self):
        return list(self.listing.class_names)

    def train_part(self):
        keep = ~self.held_out
        return self.images[keep], None if self.labels is None else self.labels[keep]

    def held_out_part(self):
        return self.images[self.held_out], None if self.labels is None else self.labels[self.held_out]

    def source(self, skip_unreadable):
        """For the model (config.json and pickle): enough to load the same images again and
        check that they are the same, for `evaluate` and `synthesize`."""
        return {'folder': str(self.listing.folder.resolve()), 'skip_unreadable': skip_unreadable,
                'manifest_sha256': manifest_digest(self.listing.manifest)}

    def record(self):
        """For run.json: the folder, its files and their hashes, and what is held out."""
        listing = self.listing
        return {'folder': str(listing.folder.resolve()), 'images': len(self.images),
                'image_shape': list(self.images.shape[1:]), 'class_names': self.class_names,
                'files': listing.manifest, 'skipped': [path for path, _ in listing.skipped],
                'held_out': [f.path for f, held in zip(listing.files, self.held_out) if held],
                'held_out_rule': f'per class, the {HELD_OUT_FRACTION:.0%} of files first by '
                                 f'sha256("{SPLIT_SEED}/" + path)'}


# ----------------------------------------------------------------- the files

def scan(folder, skip_unreadable=False):
    """The Listing of `folder`: its layout checked, every image hashed and its header read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f'{folder}: no such folder: expected a folder of images, or of class '
                          f'folders of images')
    entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    class_folders = [e for e in entries if e.is_dir() and not e.name.startswith('.')]
    loose = [e for e in entries if not e.is_dir() and is_image_name(e.name)]
    ignored = len(entries) - len(class_folders) - len(loose)
    if class_folders and loose:
        raise FolderError(f'{folder} holds both class folders ({", ".join(e.name for e in class_folders[:MAX_NAMED])}) '
                          f'and loose images ({", ".join(e.name for e in loose[:MAX_NAMED])}): put the '
                          f'loose images into class folders, or move them out')
    candidates = []  # (relative path, class name)
    if loose:
        candidates = [(e.name, '') for e in loose]
    for entry in class_folders:
        check_class_name(entry.name, folder)
        found, ignored_here = images_under(folder / entry.name)
        if not found:
            raise FolderError(f'{folder / entry.name} holds no {FORMATS} images: add some, or '
                              f'remove the class folder')
        candidates += [(f'{entry.name}/{path}', entry.name) for path in found]
        ignored += ignored_here
    if not candidates:
        raise FolderError(f'{folder} holds no {FORMATS} images, nor class folders of them')

    files, skipped, manifest = [], [], {}
    for path, class_name in candidates:
        try:
            data = (folder / path).read_bytes()
        except OSError as error:
            data = error
        manifest[path] = None if isinstance(data, OSError) else hashlib.sha256(data).hexdigest()
        try:
            files.append(read_header(folder, path, class_name, data, manifest[path]))
        except FolderError as error:
            if not skip_unreadable:
                raise
            skipped.append((path, str(error)))
    listing = Listing(folder, tuple(sorted({f.class_name for f in files} - {''})), files, ignored,
                      manifest, skipped)
    check_not_emptied(listing, [name for _, name in candidates])
    return listing


def is_image_name(name):
    return not name.startswith('.') and name.lower().endswith(IMAGE_SUFFIXES)


def images_under(class_folder):
    """The image files under a class folder, at any depth, as sorted relative paths; and how
    many other files it holds. Hidden folders and files are not looked into."""
    found, ignored = [], 0
    for root, folders, names in os.walk(class_folder):
        folders[:] = [name for name in folders if not name.startswith('.')]
        for name in names:
            if is_image_name(name):
                found.append(Path(root, name).relative_to(class_folder).as_posix())
            else:
                ignored += 1
    return sorted(found), ignored


def check_class_name(name, parent, advice='rename its folder'):
    """A class name must be a folder name anywhere: `synthesize` writes one folder per class
    in `parent`, and run.json and the pictures name the classes, so no '/', no control
    characters (a newline) and nothing that is not UTF-8."""
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        raise FolderError(f'{parent}: the class name {os.fsencode(name)!r} is not UTF-8 text: '
                          f'{advice}') from None
    if not name or name in ('.', '..') or '/' in name or '\\' in name or \
            any(unicodedata.category(c) == 'Cc' for c in name):
        raise FolderError(f'{parent}: the class name {name!r} cannot be a folder name (no "/", '
                          f'"\\" or control characters): {advice}')


def check_not_emptied(listing, candidate_classes):
    """With --skip-unreadable: a class whose every image was skipped is refused."""
    if listing.files:
        emptied = sorted(set(candidate_classes) - set(listing.class_names) - {''})
        if not emptied:
            return
        raise FolderError(f'{listing.folder / emptied[0]}: every image of the class is unreadable '
                          f'({listing.skipped[0][1]})')
    raise FolderError(f'{listing.folder}: every image is unreadable ({listing.skipped[0][1]})')


def read_header(folder, path, class_name, data, sha256):
    """The ImageFile of `folder/path`, whose content is `data` (or the OSError of reading it):
    its size and colour from its header."""
    try:
        if isinstance(data, OSError):
            raise data
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            colour = is_colour(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise unreadable(folder / path, error) from None
    return ImageFile(path, class_name, sha256, width, height, colour)


def unreadable(path, error):
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).split(' (')[0]
    if isinstance(error, UnidentifiedImageError):
        reason = 'not an image Pillow reads'
    return FolderError(f'{path}: unreadable ({reason}): expected a {FORMATS} image; fix or remove '
                       f'it, or pass --skip-unreadable to train without it')


def is_colour(image):
    """Whether an opened image's mode holds colour; a palette of grays is gray."""
    if image.mode == 'P':
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        return bool(np.any(palette != palette[:, :1]))
    return image.mode not in ('1', 'L', 'LA', 'La', 'F', *SIXTEEN_BIT_MODES)


# ----------------------------------------------------------------- settling size and channels

def default_size(listing):
    """The most common square side (the shorter side: images are centre-cropped), rounded to a
    multiple of 4 within [MIN_SIZE, MAX_SIZE]."""
    sides = collections.Counter(min(f.width, f.height) for f in listing.files)
    side = sides.most_common(1)[0][0]
    return int(min(MAX_SIZE, max(MIN_SIZE, 4 * round(side / 4))))


def default_channels(listing):
    return 3 if any(f.colour for f in listing.files) else 1


def check_size(size):
    if size % 4 or not MIN_SIZE <= size <= MAX_SIZE:
        raise FolderError(f'--size {size}: expected a multiple of 4 from {MIN_SIZE} to {MAX_SIZE} '
                          f'(the networks do not grow past {MAX_SIZE} pixels)')


def check_memory(listing, size, channels):
    """A FolderError, before anything is decoded, if the images would not fit in memory."""
    needed = len(listing.files) * size * size * channels * COPIES_IN_MEMORY
    available = available_memory()
    if available is not None and needed > available:
        raise FolderError(f'{listing.folder}: {len(listing.files)} images of {size}x{size}x{channels} '
                          f'need {needed / 2**30:.1f} GiB of memory, and {available / 2**30:.1f} GiB '
                          f'is available: use a smaller --size, --channels 1, or fewer images')


def available_memory():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none (not Linux)."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ----------------------------------------------------------------- decoding

def load(folder, size=None, channels=None, skip_unreadable=False, cache=None):
    """The FolderImages of `folder` at `size` x `size` x `channels` (default: see
    `default_size` and `default_channels`). `cache`, a cache file of an earlier load (see
    `save_cache`), is used instead of decoding when it holds exactly these files so loaded."""
    listing = scan(folder, skip_unreadable)
    size = default_size(listing) if size is None else size
    check_size(size)
    channels = default_channels(listing) if channels is None else channels
    check_memory(listing, size, channels)
    key = cache_key(listing, size, channels)
    images = read_cache(cache, key, len(listing.files)) if cache is not None else None
    if images is None:
        images = decode_all(listing, size, channels, skip_unreadable)
    resized = sum((f.width, f.height) != (size, size) for f in listing.files)
    notes = [f'{listing.folder}: {len(listing.files)} images of {len(listing.class_names) or "no"} '
             f'classes, as {size}x{size}x{channels}']
    if listing.ignored:
        notes.append(f'{listing.folder}: ignored {listing.ignored} files that are no {FORMATS} images '
                     f'(other extensions, hidden files)')
    if resized:
        notes.append(f'{listing.folder}: {resized} images are not {size}x{size}: centre-cropped to a '
                     f'square and resized ({RESAMPLING_NAME})')
    if listing.skipped:
        notes.append(f'{listing.folder}: skipped {len(listing.skipped)} unreadable files (such as '
                     f'{listing.skipped[0][1]})')
    labels = None
    if listing.class_names:
        values = {name: value for value, name in enumerate(listing.class_names)}
        labels = np.array([values[f.class_name] for f in listing.files], np.int64)
    return FolderImages(listing, images, labels, held_out_mask(listing), notes)


def decode_all(listing, size, channels, skip_unreadable):
    """Every image of the listing as uint8 (N, size, size, channels). An image whose body is
    unreadable (truncated: its header was fine) is refused, or with `skip_unreadable` taken
    out of the listing and counted."""
    images = np.empty((len(listing.files), size, size, channels), np.uint8)
    readable = []
    for index, image_file in enumerate(listing.files):
        try:
            images[index] = decode(listing.folder, image_file, size, channels)
            readable.append(index)
        except FolderError as error:
            if not skip_unreadable:
                raise
            listing.skipped.append((image_file.path, str(error)))
    if len(readable) == len(listing.files):
        return images
    classes = [f.class_name for f in listing.files]
    listing.files = [listing.files[index] for index in readable]
    listing.class_names = tuple(sorted({f.class_name for f in listing.files} - {''}))
    check_not_emptied(listing, classes)
    return images[readable]


def decode(folder, image_file, size, channels):
    """One image as uint8 (size, size, channels)."""
    path = folder / image_file.path
    try:
        with Image.open(path) as image:
            image.load()
            picture = as_gray_or_rgb(image, channels)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise unreadable(path, error) from None
    width, height = picture.size
    if (width, height) != (size, size):
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        picture = picture.resize((size, size), RESAMPLING, box=(left, top, left + side, top + side))
    return np.asarray(picture, np.uint8).reshape(size, size, channels)


def as_gray_or_rgb(image, channels):
    """A decoded image as mode 'L' (channels 1) or 'RGB' (3), its values scaled, not clipped."""
    if image.mode in SIXTEEN_BIT_MODES:  # Pillow's convert('L') would clip 16 bits, not scale them
        values = np.asarray(image, np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8), 'L')
    elif image.mode == 'F':
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), 'L')
    if image.mode == 'P':
        image = image.convert('RGBA' if 'transparency' in image.info else 'RGB')
    if image.mode in ('LA', 'La', 'PA', 'RGBA', 'RGBa') or 'transparency' in image.info:
        rgba = image.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, rgba).convert('RGB')
    return image.convert('L' if channels == 1 else 'RGB')


# ----------------------------------------------------------------- the held-out split

def held_out_mask(listing):
    """Per class, the HELD_OUT_FRACTION of its files first in the order of a seeded hash of
    their paths (at least one of a class of two or more); nothing for loose images."""
    held = np.zeros(len(listing.files), bool)
    if not listing.class_names:
        return held
    by_class = collections.defaultdict(list)
    for index, image_file in enumerate(listing.files):
        by_class[image_file.class_name].append(index)
    for indices in by_class.values():
        count = max(1, round(len(indices) * HELD_OUT_FRACTION)) if len(indices) >= 2 else 0
        ranked = sorted(indices, key=lambda i: hashlib.sha256(
            f'{SPLIT_SEED}/{listing.files[i].path}'.encode('utf-8', 'surrogateescape')).digest())
        held[ranked[:count]] = True
    return held


# ----------------------------------------------------------------- a changed folder, the cache

def changes(recorded, manifest):
    """What changed between a recorded manifest and the folder's now, as one phrase, or ''."""
    added = sorted(set(manifest) - set(recorded))
    removed = sorted(set(recorded) - set(manifest))
    changed = sorted(path for path in set(recorded) & set(manifest) if recorded[path] != manifest[path])
    parts = [f'{len(paths)} {what} ({", ".join(paths[:MAX_NAMED])}{", ..." if len(paths) > MAX_NAMED else ""})'
             for what, paths in (('added', added), ('removed', removed), ('changed', changed)) if paths]
    return '; '.join(parts)


def manifest_digest(manifest):
    """One hash of a manifest ({path: sha256}), for a pickle to hold instead of every path."""
    return hashlib.sha256(json.dumps(sorted(manifest.items())).encode('utf-8', 'surrogateescape')).hexdigest()


def cache_key(listing, size, channels):
    return hashlib.sha256(json.dumps([LOADER_VERSION, size, channels, BACKGROUND, RESAMPLING_NAME,
                                      manifest_digest(listing.manifest)]).encode()).hexdigest()


def read_cache(path, key, count):
    """The cached images if `path` holds those of `key`, else None (a cache is never an error)."""
    try:
        with np.load(path) as stored:
            if str(stored['key']) == key and len(stored['images']) == count:
                return stored['images']
    except (OSError, ValueError, KeyError, EOFError):
        pass
    return None


def save_cache(folder_images, size, channels, path):
    """Keep the decoded images at `path` (a run folder's CACHE_FILE), so that a resumed run
    does not decode them again."""
    from condgan.pictures import write_atomically
    key = cache_key(folder_images.listing, size, channels)
    write_atomically(path, lambda f: np.savez(f, key=np.array(key), images=folder_images.images))
