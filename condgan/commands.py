"""The command line: the recipes (`run_*.py`) and `python cgan.py train|generate|export|evaluate|synthesize`.

    python run_mnist.py --max-steps 300            # a quick look at the MNIST recipe
    python cgan.py train my_images/ --size 32      # your own images (folders.py), into runs/my_images
    python cgan.py generate runs/mnist --target-class 8 -o eights.png

A run leaves in `<out-dir>/<recipe>/`: `run.json` and `config.json` before the first step,
then checkpoints, `losses.csv` and `samples_<step>.png` as it trains, and at the end
`<recipe>.pkl`, `losses.png`, `classes.png`, `interpolation.gif` and `progress.gif`.
Every refusal and fault is one line on stderr with a non-zero exit, and leaves the run
folder as it was. TensorFlow is imported only once the arguments are known to be good.
"""
import contextlib
import datetime
import errno
import os
import pickle
import platform
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from condgan import cifar10, datasets, folders, pictures
from condgan.files import write_atomically
from condgan.model_argument import add_model_arguments, model_from
from condgan.recipes import (BATCH_SIZE, OneLineErrorParser, RECIPES, Z_DIM, add_run_flags, folder_or_new,
                             positive_int, seed_number, training_parser)
from condgan.runs import (RunFolderError, RunLock, TrainingData, read_json, removed_unless_checkpointed,
                          write_json)

RESOURCE_EXHAUSTED = 8  # TensorFlow's error code (tf.errors.RESOURCE_EXHAUSTED) for memory and disk
FOLDER_EPOCHS = 20     # an image folder's default: between the recipes' (MNIST 16, EMNIST 32)
MAX_GENERATED = 10_000  # images one `generate` draws at most (a PNG grid of 10,000 is 80 MB of pixels)


class CommandError(Exception):
    """A fault to report as one line, with the exit status it calls for."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def one_line_errors(prog, run):
    """Run `run()`; a known fault becomes one line on stderr and an exit status, never a traceback."""
    try:
        return run()
    except KeyboardInterrupt as error:
        fail(prog, str(error) or 'interrupted', 130)  # training's says what was saved
    except Exception as error:
        report = fault_report(error)
        if report is None:
            raise
        fail(prog, *report)


def fault_report(error):
    """(one line, exit status) for a fault a user can act on, else None (a bug: its traceback).

    Bad input is status 2: the project's own refusals (RunFolderError, CheckpointError,
    DataError, an unknown class, a foreign pickle) are ValueErrors whose message names the
    file or value. Faults of the machine or of training are status 1.
    """
    if isinstance(error, CommandError):
        return str(error), error.status
    if isinstance(error, FloatingPointError):  # training.TrainingDiverged: says what to do
        return str(error), 1
    if isinstance(error, OSError):
        return os_error_message(error), 1
    if isinstance(error, MemoryError):
        return f'out of memory ({error or "no detail"})', 1  # NumPy's says how much, for which shape
    tensorflow = sys.modules.get('tensorflow')  # its errors can only come once it is imported
    if tensorflow is not None and isinstance(error, tensorflow.errors.OpError):
        return tensorflow_error_message(error), 1
    if isinstance(error, ValueError):
        return str(error), 2
    return None


FULL_DISK = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))  # "No space left on device", ...


def os_error_message(error):
    """The file a command could not write is named as the user knows it, not by the temporary
    name it was being written under; a folder that was deleted meanwhile is named as such."""
    path = error.filename and written_file(str(error.filename))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f'out of disk space writing {path or "the output"}: free some space, then run again'
    if path and error.errno == errno.ENOENT and not os.path.isdir(os.path.dirname(path) or '.'):
        return (f'the folder {os.path.dirname(path)} no longer exists (deleted while '
                f'{os.path.basename(path)} was written into it)')
    if path and path != error.filename:
        return f'cannot write {path}: {error.strerror}'
    return f'{error.filename + ": " if error.filename else ""}{error.strerror or error}'


# The temporary names that files are written under before they take their own: pictures'
# write_atomically's `.x.png.k2j4.part`, the downloads' `x.gz.part`, TensorFlow's `x.tempstate123`.
TEMPORARY_NAME = re.compile(r'\.(?P<atomic>.+)\.[^.]+\.part|(?P<partial>.+)\.part|(?P<saved>.+?)\.tempstate\d+')


def written_file(filename):
    """The file that `filename` was to become, if it is a temporary name (else itself)."""
    folder, name = os.path.split(filename)
    match = TEMPORARY_NAME.fullmatch(name)
    return os.path.join(folder, next(part for part in match.groups() if part)) if match else filename


def tensorflow_error_message(error):
    """The line of a TensorFlow error that says what went wrong. A graph's error holds the
    Python call stack, then "Node: '<op>'", the message, "[[{{node <op>}}]]" and a hint about
    GPU memory, which a full disk gets too."""
    full_disk = re.search(rf'(\S+?)(?:\.tempstate\d+)?; ({"|".join(FULL_DISK)})', error.message)
    if full_disk:
        return f'out of disk space writing {full_disk[1]} ({full_disk[2]}): free some space, then run again'
    lines = error.message.splitlines()
    nodes = [number for number, line in enumerate(lines) if line.startswith("Node: '")]
    said = [line.strip() for line in lines[nodes[-1] + 1 if nodes else 0:]
            if line.strip() and not line.strip().startswith(('[[', 'Hint:', 'Graph execution error'))]
    kind = 'out of memory' if error.error_code == RESOURCE_EXHAUSTED else 'TensorFlow'
    return f'{kind}: {said[0] if said else type(error).__name__}'


def fail(prog, message, status):
    print(f'{prog}: error: {message}', file=sys.stderr)
    sys.exit(status)


# ----------------------------------------------------------------- training a recipe

def train_recipe(name, argv=None):
    """Train recipe `name` as the command line (or `argv`) asks, then leave its pictures."""
    recipe = RECIPES[name]
    options = training_parser(name, recipe).parse_args(argv)
    run_dir = Path(options.out_dir) / name
    one_line_errors(f'run_{name}.py', lambda: train_locked(name, recipe_data(name, recipe, options),
                                                           options, run_dir))


# The flags that are settings of the run: None when not given (run_settings.settle).
SETTING_FLAGS = ('epochs', 'batch_size', 'z_dim', 'variant', 'learning_rate', 'beta1', 'seed')


def recipe_data(name, recipe, options):
    """A recipe's training split, before the run folder is touched: bad data leaves no trace."""
    try:
        images, labels = recipe.load('train', data_dir=options.data_dir)
        class_names = recipe_class_names(name, recipe, options.data_dir, labels)
        data_files = (cifar10.data_files('train', options.data_dir) if recipe.dataset == 'cifar10'
                      else datasets.data_files(recipe.dataset, 'train', options.data_dir))
    except OSError as error:  # missing, unreadable or undownloadable data
        raise CommandError(str(error)) from None
    return TrainingData(images, labels, class_names, title=recipe.title, recipe=name, dataset=recipe.dataset,
                        record={'images': len(images), 'classes': np.unique(labels).tolist(),
                                'class_names': class_names,
                                'sha256': {str(path): datasets.file_sha256(path) for path in data_files}},
                        epochs=recipe.epochs)


def train_folder(argv=None, prog='cgan.py train'):
    """Train on an image folder (see folders.py) as the command line (or `argv`) asks."""
    options = folder_training_parser(prog).parse_args(argv)
    name = Path(options.folder).resolve().name or 'folder'
    run_dir = Path(options.out_dir) / name
    one_line_errors(prog, lambda: train_locked(name, folder_data(options, run_dir), options, run_dir))


def folder_training_parser(prog):
    parser = OneLineErrorParser(
        prog=prog, description='Train a conditional GAN on your own images: a folder of class '
                               'folders of images (DIR/<class name>/...), or of loose images for '
                               'an unconditional model; then draw every class.')
    parser.add_argument('folder', help='the image folder; the run goes into OUT_DIR/<its name>/')
    parser.add_argument('--size', type=positive_int,
                        help=f'the images\' side in pixels, a multiple of 4 from {folders.MIN_SIZE} '
                             f'to {folders.MAX_SIZE} (default: the most common size, rounded; '
                             f'with --resume the run\'s own)')
    parser.add_argument('--channels', type=int, choices=(1, 3),
                        help='1 gray or 3 RGB (default: 3 if any image is in colour, else 1; '
                             'with --resume the run\'s own)')
    parser.add_argument('--skip-unreadable', action='store_true',
                        help='train without the files that are no readable images (counted), '
                             'instead of refusing the folder')
    parser.add_argument('--folder-changed', action='store_true',
                        help='with --resume: go on although the folder\'s files changed since '
                             'the run started (the new files are recorded)')
    add_run_flags(parser, '<folder name>', FOLDER_EPOCHS)
    return parser


def folder_data(options, run_dir):
    """An image folder's training part (the held-out tenth stays out), checked before the run
    folder is touched. A resumed run takes its size and channels, and its decoded images from
    its cache when the folder is unchanged."""
    folder = Path(options.folder)
    size, channels = options.size, options.channels
    if options.resume:
        from condgan.run_settings import recorded  # TensorFlow: the model checks the run's shape
        saved_shape = recorded(run_dir).get('model', {}).get('image_shape')
        if saved_shape:
            size = size or saved_shape[0]
            channels = channels or saved_shape[2]
    cache = run_dir / folders.CACHE_FILE
    loaded = folders.load(folder, size, channels, options.skip_unreadable,
                          cache if options.resume else None)
    run_folder = run_dir.resolve()
    if run_folder == folder.resolve() or folder.resolve() in run_folder.parents:
        raise CommandError(f'{run_dir}: the run folder would be inside the image folder {folder}: '
                           f'choose another --out-dir')
    for note in loaded.notes:
        print(note)
    images, labels = loaded.train_part()
    record = loaded.record()
    size, _, channels = loaded.images.shape[1:]

    def resumed_record(recorded):
        change = folders.changes(recorded.get('files', {}), record['files'])
        if change and not options.folder_changed:
            raise CommandError(f'{folder} changed since the run in {run_dir} started: {change}; '
                               f'pass --folder-changed to go on with it as it is now, or start a '
                               f'new run with another --out-dir')
        return record if change else recorded

    return TrainingData(images, labels, loaded.class_names, title=f'the image folder {folder}', recipe='folder',
                        dataset='folder', record=record, source=loaded.source(options.skip_unreadable),
                        resumed_record=resumed_record,
                        keep=lambda run_dir: folders.save_cache(loaded, size, channels, cache), epochs=FOLDER_EPOCHS)


def train_locked(name, data, options, run_dir):
    started = time.monotonic()
    if run_dir.exists() and not run_dir.is_dir():
        raise CommandError(f'{run_dir} is a file, not a run folder: choose another --out-dir')
    with RunLock(run_dir) as lock, removed_unless_checkpointed(lock):
        check_recipe(data.recipe, run_dir)
        from condgan.gan import CGan  # TensorFlow: seconds to import
        from condgan.run_settings import settle
        from condgan.training import RunFinished
        images = data.images
        run = settle(run_dir, data, {flag: getattr(options, flag) for flag in SETTING_FLAGS}, options.resume,
                     defaults={'epochs': data.epochs, 'batch_size': BATCH_SIZE, 'z_dim': Z_DIM})
        record = starting_record(data, run_dir, options, run)
        data.keep(run_dir)
        gan = CGan(datasets.Dataset(images, data.labels, width=images.shape[2], height=images.shape[1],
                                    channels=images.shape[3], seed=run.settings.seed),
                   generator_name=name, out_dir=options.out_dir, class_names=run.class_names,
                   data_source=data.source)
        try:
            gan.train(run, options.save_every, options.max_steps)
        except RunFinished as finished:
            missing = missing_outputs(name, run_dir, record, gan)
            if not missing:
                print(f'{name}: {finished}')
                return
            # Stopped after its last step (a signal, kill -9, a full disk): finish, don't train.
            print(f'{name}: step {int(gan.step_losses[-1, 0])} was trained; writing what the run '
                  f'lacks: {", ".join(missing)}')
        training_seconds = time.monotonic() - started
        steps = int(gan.step_losses[-1, 0])
        record['sessions'][-1].update(reached_step=steps, seconds=round(training_seconds, 1))
        record.update(steps=steps, finished=now())
        with stopped_by_signals(f'{name}.pkl, its pictures and run.json'):
            leave_pictures(gan, name, run_dir, run.settings.seed)
            write_json(run_dir / 'run.json', record)
    print(f'{data.title}: step {steps} after {training_seconds / 60:.1f} min; see {run_dir}/ '
          f'(classes.png, progress.gif, interpolation.gif, losses.png, {name}.pkl, run.json)')


def check_recipe(name, run_dir):
    """A folder of another recipe is refused before anything is read or written."""
    record_path = run_dir / 'run.json'
    recipe = read_json(record_path).get('recipe') if record_path.exists() else name
    if recipe != name:
        raise RunFolderError(f'{run_dir} holds a run of the {recipe!r} recipe, not '
                             f'{name!r}: choose another --out-dir')


def starting_record(data, run_dir, options, run):
    """The run's record (run.json) with this session added: for a resumed run its own, else a
    new one, written before the first step."""
    settled = {**run.config.to_json(), **asdict(run.settings)}
    arguments = {**vars(options), **{flag: settled[flag] for flag in SETTING_FLAGS}}  # defaults resolved
    session = {'started': now(), 'arguments': arguments, 'versions': versions()}
    if run.resume:
        record_path = run_dir / 'run.json'
        record = read_json(record_path) if record_path.exists() else {'recipe': data.recipe}
        record['sessions'] = record.get('sessions', []) + [session]
        if 'data' in record:  # the data a resumed run goes on with, against what it had
            data_record = data.resumed_record(record['data'])
            if data_record != record['data']:  # the folder changed, and the user said go on
                record['data'] = data_record
                write_json(record_path, record)
        return record
    record = {'recipe': data.recipe, 'dataset': data.dataset, 'started': now(), 'sessions': [session],
              'seed': run.settings.seed, 'data': data.record}
    write_json(run_dir / 'run.json', record)
    return record


def final_outputs(name, gan):
    """What a run leaves once it has trained its last step."""
    return [f'{name}.pkl', 'losses.png', 'classes.png', 'progress.gif'] + (
        ['interpolation.gif'] if gan.num_classes > 1 else [])


def missing_outputs(name, run_dir, record, gan):
    """What the run in `run_dir`, trained to the step of `gan`, still lacks: its final files,
    and run.json's record of that step."""
    missing = [file for file in final_outputs(name, gan) if not (run_dir / file).exists()]
    if record.get('steps') != int(gan.step_losses[-1, 0]) or 'finished' not in record:
        missing.append('run.json')
    return missing


@contextlib.contextmanager
def stopped_by_signals(what):
    """While `what` is written after training, Ctrl-C and SIGTERM stop with one line that
    says so (exit 130 or 143); the writes remove their partial files as they unwind, and
    --resume writes them again from the newest checkpoint."""
    def stop(signum, frame):
        said = 'interrupted' if signum == signal.SIGINT else 'stopped by SIGTERM'
        raise CommandError(f'{said} while writing {what}: the checkpoints are whole; run the '
                           f'same command with --resume to write them', 128 + signum)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def recipe_class_names(name, recipe, data_dir, labels):
    """The name of each class in the data, by its label value (a folder of digits 3 and 7
    only has the classes '3' and '7'); data with labels that are not the recipe's classes
    is refused."""
    names = list(recipe.class_names(data_dir))
    unknown = sorted(set(np.unique(labels).tolist()) - set(range(len(names))))
    if unknown:
        files = datasets.data_files(recipe.dataset, 'train', data_dir)
        [labels_file] = [path for path in files if 'labels' in path.name]
        mappings = [path for path in files if path.name.endswith('mapping.txt')]
        if mappings:  # the names come from a file: one too short is what is wrong
            raise CommandError(f'{mappings[0]} names {len(names)} classes (0 to {len(names) - 1}), but '
                               f'{labels_file} holds label {unknown[0]}: expected a name for each label')
        raise CommandError(f'{labels_file} holds label {unknown[0]}, which is not one of the {name} '
                           f'recipe\'s classes 0 to {len(names) - 1}')
    return [names[value] for value in np.unique(labels).tolist()]


def leave_pictures(gan, name, run_dir, seed):
    """The pickle, losses.png, classes.png, interpolation.gif and progress.gif of a trained model."""
    write_atomically(run_dir / f'{name}.pkl', lambda f: pickle.dump(gan, f))
    steps_per_epoch = -(-len(gan.dataset.data) // gan.batch_size)
    pictures.plot_losses(gan.step_losses, gan.epoch_losses, steps_per_epoch, run_dir / 'losses.png')
    rows = gan.generate_new(target_class=-1, rows=gan.num_classes or pictures.CLASS_COLUMNS,
                            cols=pictures.CLASS_COLUMNS, plot=False, seed=seed)
    pictures.save_classes_png(rows, gan.class_names, run_dir / 'classes.png')  # no names: no classes
    if gan.num_classes > 1:
        first, last = gan.classes[0], gan.classes[-1]
        pictures.save_interpolation_gif(gan.interpolate(first, last, pictures.INTERPOLATION_STEPS, seed),
                                        gan.class_names[0], gan.class_names[-1], run_dir / 'interpolation.gif')
    pictures.save_progress_gif(run_dir, run_dir / 'progress.gif')


def versions():
    import tensorflow as tf
    return {'python': platform.python_version(), 'tensorflow': tf.__version__, 'numpy': np.__version__}


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# ----------------------------------------------------------------- using a trained model

def new_file(text):
    """-o: a file to write, in a folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise CommandError(f'-o {path} is a folder: name the PNG file to write')
    if path.parent.exists() and not path.parent.is_dir():
        raise CommandError(f'-o {path}: {path.parent} is a file, not a folder')
    if not path.parent.is_dir():
        raise CommandError(f'-o {path}: no folder {path.parent}: create it, or name a PNG file in an existing one')
    return path


def generate(options):
    output = new_file(options.output)
    if options.rows * options.cols > MAX_GENERATED:
        raise CommandError(f'--rows x --cols is {options.rows * options.cols} images; at most '
                           f'{MAX_GENERATED} are drawn at once')
    gan = model_from(options)
    images = gan.generate_new(class_value(gan, options.target_class), options.rows, options.cols,
                              plot=False, seed=options.seed)
    pictures.save_png(pictures.images_grid(images, options.cols), output)
    written = [str(output)]
    if options.npy:
        write_atomically(output.with_suffix('.npy'), lambda f: np.save(f, images))
        written.append(str(output.with_suffix('.npy')))
    print(f'{len(images)} images: {", ".join(written)}')


def class_value(gan, text):
    """A --target-class as the model knows it: -1, a class value, or a class name (EMNIST 'A')."""
    if text == '-1':
        return -1
    for value, name in zip(gan.classes, gan.class_names):
        if text in (str(value), name):
            return value
    return gan.class_position(text)  # raises the error that lists the classes


def export(options):
    gan = model_from(options)
    import tensorflow as tf
    from condgan.export import export_saved_model
    tf.get_logger().setLevel('ERROR')  # the TF1 SavedModel builder's deprecation notices: not the user's
    folder = Path(options.folder)
    missing = [path for path in [folder, *folder.parents] if not path.exists()]
    try:
        export_saved_model(gan, options.folder)
    except FileExistsError as error:  # a folder that is not empty: bad input, not a fault
        raise CommandError(str(error)) from None
    except BaseException:  # half a SavedModel is none: leave the disk as it was
        for path in [missing[-1]] if missing else list(folder.iterdir()):  # the folder was empty
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise
    print(f'SavedModel: {options.folder}')


def main(argv=None):
    """`python cgan.py COMMAND ...`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = command_parser()
    if argv and argv[0] == 'train':
        return train_folder(argv[1:])
    if argv and argv[0] in ('evaluate', 'synthesize', 'demo'):  # their own parsers, in their modules
        import importlib
        command = importlib.import_module(f'condgan.{argv[0]}')
        return one_line_errors(f'cgan.py {argv[0]}', lambda: command.main(argv[1:]))
    options = parser.parse_args(argv)
    one_line_errors(f'cgan.py {options.command}', lambda: options.run(options))


def command_parser():
    parser = OneLineErrorParser(prog='cgan.py', description='Use a trained CGan.')
    commands = parser.add_subparsers(dest='command', required=True,
                                     metavar='{train,generate,export,evaluate,synthesize,demo}')
    commands.add_parser('train', help='train on your own image folder: python cgan.py train --help')
    model_help = ('a pickled CGan (such as runs/mnist/mnist.pkl, written by run_mnist.py) or a run '
                  'folder (such as runs/mnist: its newest checkpoint, else its pickle); a pickle can '
                  'run code when loaded: load only your own')
    generate_command = commands.add_parser(
        'generate', help='draw new images into a PNG grid',
        description='Draw rows x cols new images with a trained CGan into a PNG grid.')
    add_model_arguments(generate_command, model_help)
    generate_command.add_argument('--target-class', default='-1',
                                  help='the class to draw, by value or name (8, A, T-shirt/top); -1 '
                                       '(default) draws one class per row, in class order')
    generate_command.add_argument('--rows', type=positive_int, default=5, help='grid rows (default: 5)')
    generate_command.add_argument('--cols', type=positive_int, default=5, help='grid columns (default: 5)')
    generate_command.add_argument('-o', '--output', default='generated.png',
                                  help='the PNG grid to write (default: generated.png)')
    generate_command.add_argument('--npy', action='store_true',
                                  help='also write the images as a float32 array (rows*cols, H, W, C) '
                                       'in [-1, 1]: the output path with the suffix .npy')
    generate_command.add_argument('--seed', type=seed_number, help='fixes z, so the same images come again')
    generate_command.set_defaults(run=generate)

    export_command = commands.add_parser(
        'export', help='write the generator as a TensorFlow SavedModel',
        description='Write the generator as a TensorFlow SavedModel, for code that knows '
                    'nothing of this project (see condgan/export.py).')
    add_model_arguments(export_command, model_help)
    export_command.add_argument('folder', type=folder_or_new, help='the new folder to write')
    export_command.set_defaults(run=export)
    commands.add_parser('evaluate', help='how good a generator is: python cgan.py evaluate --help')
    commands.add_parser('synthesize', help='a generated dataset in IDX files: python cgan.py synthesize --help')
    commands.add_parser('demo', help='a page in the browser to draw with a generator: python cgan.py demo --help')
    return parser
