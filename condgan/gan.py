"""`CGan`, the book's API: a conditional GAN that draws new images of a class you choose.

    gan = CGan(Dataset(images, labels, channels=1), epochs=16, generator_name='mnist')
    gan.fit(learning_rate=0.0002, beta1=0.35)
    eights = gan.generate_new(target_class=8, rows=5, cols=5)
    pickle.dump(gan, open('mnist.pkl', 'wb'))   # the generator's weights: loads anywhere

The class is a front: the networks are in `model.py`, training in `training.py`, the
generator's session in `generation.py`, the checkpoints in `checkpoints.py`.
"""
import os
import pickle
import numpy as np

from condgan import checkpoints, pretrained
from condgan.generation import GeneratorSession, generator_inputs, grid_layout
from condgan.checks import random_seed, whole_number
from condgan.model import ModelConfig
from condgan.pictures import from_pixels, images_grid, plot_images, plot_losses
from condgan.run_settings import recorded, resolved, settle
from condgan.runs import RunLock, TrainingData, model_source, removed_unless_checkpointed
from condgan.training import Training, TrainingSettings
from condgan.weights import generator_variable_shapes

PICKLE_FORMAT = 1  # bump when the pickled state changes shape
BOOK_DEFAULTS = {'classes': tuple(range(10)), 'image_shape': (28, 28, 1), 'z_dim': 96}


class CGan:
    """A conditional DCGAN over a `datasets.Dataset` (an unlabeled one gives a plain DCGAN).

    Everything it writes goes to the model folder `<out_dir>/<generator_name>/`.
    `legacy_generation` (set by `from_checkpoint` for checkpoints of the original code, which
    hold no moving statistics) generates as the original did: batch statistics and dropout.
    """

    def __init__(self, dataset, epochs=None, batch_size=None, z_dim=None, generator_name='generator',
                 alpha=None, smooth=None, learning_rate=None, beta1=None,
                 out_dir=None, seed=None, max_to_keep=None, precision=None, xla=None,
                 classes=None, image_shape=None, class_names=None, variant=None, data_source=None):
        """`classes` and `image_shape` describe a model without a dataset (generation only);
        with a dataset they come from it. `class_names` name the classes in pictures and
        commands (default: their values). `variant` 'modern' trains the opt-in networks and
        losses (see model.py). `data_source` says where an image folder's model came from
        (folders.FolderImages.source), for `evaluate` and `synthesize`; None for the book's datasets.

        A setting left None is a resumed run's own (`fit(resume=True)`), else its default:
        epochs 1, batch_size 32, z_dim 96, alpha 0.2, smooth 0.1, variant 'book', Adam's
        learning_rate and beta1 the variant's (`recipes.VARIANT_DEFAULTS`), seed a fresh
        one, precision 'auto' (`precision.default_precision()`), xla False, max_to_keep 5. A
        value given here is trained with, unless `fit` is given another.
        """
        if dataset is not None:
            self.data = TrainingData(dataset.data, dataset.labels, class_names)
            image_shape, classes = self.data.image_shape, self.data.classes
        elif classes is None or image_shape is None:
            raise ValueError("CGan needs a dataset, or classes and image_shape for a model "
                             "that only generates")
        else:
            self.data = None
        self.dataset = dataset
        self.generator_name = generator_name
        self.model_dir = os.path.join(os.path.abspath(out_dir or os.getcwd()), generator_name)
        # What the user gave: settled again, with the run's own values, when training starts.
        self.request = {name: value for name, value in dict(
            epochs=epochs, batch_size=batch_size, z_dim=z_dim, alpha=alpha, smooth=smooth,
            learning_rate=learning_rate, beta1=beta1, seed=seed, max_to_keep=max_to_keep,
            precision=precision, xla=xla, variant=variant).items() if value is not None}
        self.config, self.settings, self.class_names = resolved(image_shape, classes, class_names, self.request)
        self.max_value = 255 if dataset is None else dataset.max_value
        self.data_source = data_source
        self.legacy_generation = False
        self.generator_weights = None          # {variable name: array} once trained or loaded
        self.step_losses = np.zeros((0, 3))    # rows of (step, d_loss, g_loss)
        self.epoch_losses = np.zeros((0, 2))   # rows of (d_loss, g_loss), mean over each epoch
        self.evaluations = []                  # figures by step, with fit(evaluation=...)
        self._generation = None                # the generator's session, built once

    # The book's attributes, read from the configuration.
    classes = property(lambda self: list(self.config.classes))
    num_classes = property(lambda self: self.config.num_classes)
    image_shape = property(lambda self: self.config.image_shape)
    z_dim = property(lambda self: self.config.z_dim)
    alpha = property(lambda self: self.config.alpha)
    smooth = property(lambda self: self.config.smooth)
    variant = property(lambda self: self.config.variant)
    epochs = property(lambda self: self.settings.epochs)
    batch_size = property(lambda self: self.settings.batch_size)
    learning_rate = property(lambda self: self.settings.learning_rate)
    beta1 = property(lambda self: self.settings.beta1)
    seed = property(lambda self: self.settings.seed)
    precision = property(lambda self: self.settings.precision)
    cmap = property(lambda self: 'gray' if self.image_shape[2] == 1 else None)

    # ------------------------------------------------------------- training

    def fit(self, learning_rate=None, beta1=None, resume=False, save_every_n=1000,
            max_steps=None, plot=True, tensorboard=False, evaluation=None, eval_every=None):
        """Train for `epochs` epochs; returns the (epochs, 2) array of mean D and G losses.

        Adam's `learning_rate` and `beta1` are those given here, else the constructor's, else
        the resumed run's own, else the variant's (`recipes.VARIANT_DEFAULTS`: the book's
        0.0002 and 0.35; modern 0.0002 and 0.5). `config.json` records what it trains with.

        Every `save_every_n` steps a sample grid is written (and shown in Jupyter) and both
        networks are checkpointed. `resume=True` continues from the newest intact checkpoint
        at its step, and refuses settings that contradict the run's (`epochs` may grow, and
        the learning rate change); a folder without a checkpoint starts afresh. Ctrl-C (or
        SIGTERM) saves a checkpoint after the step it is in and returns. `max_steps` stops
        early (a quick look). `tensorboard=True` writes events into the model folder.
        `evaluation` (such as `evaluate.Judge.evaluate_generator`) judges the generator every
        `eval_every` steps; the figures go to `self.evaluations` and `evaluation.csv`. A loss
        that is not a number raises `TrainingDiverged`.
        """
        if self.dataset is None:
            raise ValueError("this CGan has no dataset (it was loaded from a pickle or a "
                             "checkpoint): create CGan(dataset, ...) to train")
        given = {**self.request, **{name: value for name, value in
                                    dict(learning_rate=learning_rate, beta1=beta1).items() if value is not None}}
        with RunLock(self.model_dir) as lock, removed_unless_checkpointed(lock):
            run = settle(self.model_dir, self.data, given, resume)
            steps_per_epoch = self.train(run, save_every_n, max_steps, tensorboard, evaluation, eval_every)
        if plot and len(self.step_losses):
            plot_losses(self.step_losses, self.epoch_losses, steps_per_epoch,
                        os.path.join(self.model_dir, 'losses.png'))
        return self.epoch_losses

    def train(self, run, save_every_n=1000, max_steps=None, tensorboard=False, evaluation=None,
              eval_every=None):
        """Train as `run` (`run_settings.settle`'s) says, in the model folder, which the caller
        has locked; returns the steps of an epoch. `fit` without its checks and lock."""
        whole_number('save_every_n', save_every_n)
        if max_steps is not None:
            whole_number('max_steps', max_steps)
        if eval_every is not None:
            whole_number('eval_every', eval_every)
        self.close()
        self.config, self.settings, self.class_names = run.config, run.settings, run.class_names
        training = Training(self.config, self.settings, self.dataset, self.model_dir,
                            self.generator_name, {'class_names': list(self.class_names),
                                                  'data_source': self.data_source})
        try:
            training.run(run.resume, save_every_n, max_steps, tensorboard, evaluation, eval_every)
        finally:  # what was saved, also when training stops with an error
            if training.generator_weights is not None:
                self.generator_weights = training.generator_weights
                self.legacy_generation = False
                self.step_losses = training.history.step_losses
                self.epoch_losses = training.history.epoch_losses
                self.evaluations = training.evaluations
        return training.steps_per_epoch

    # ------------------------------------------------------------- generating

    def generate_new(self, target_class=-1, rows=5, cols=5, plot=True, seed=None):
        """`rows * cols` new images (n, H, W, C) in [-1, 1].

        `target_class` is a class value: all images of that class. -1 covers the classes in
        order, one class per row, starting again from the first class when there are more
        rows than classes. An unconditional model ignores `target_class`. `seed` fixes z.
        """
        rows, cols = whole_number('rows', rows), whole_number('cols', cols)
        if seed is not None:
            random_seed('seed', seed)
        if target_class == -1 or not self.num_classes:
            positions = grid_layout(self.num_classes, rows, cols)
        else:
            positions = np.full(rows * cols, self.class_position(target_class))
        rng = np.random.default_rng(seed)
        images = self._generator().run(generator_inputs(self.config, positions, rng), rng)
        if plot:
            plot_images(images, cols)
        return images

    def interpolate(self, start_class, end_class, steps=50, seed=None):
        """Images (steps, H, W, C) of one fixed z while the label vector moves linearly from
        the one-hot vector of `start_class` to that of `end_class`."""
        if not self.num_classes:
            raise ValueError("an unconditional model has no classes to interpolate between")
        steps = whole_number('steps', steps, 2)
        if seed is not None:
            random_seed('seed', seed)
        one_hot = np.eye(self.num_classes, dtype=np.float32)
        start, end = one_hot[self.class_position(start_class)], one_hot[self.class_position(end_class)]
        weights = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        rng = np.random.default_rng(seed)
        z = rng.uniform(-1, 1, (1, self.z_dim)).astype(np.float32)
        inputs = np.concatenate([np.repeat(z, steps, axis=0), (1 - weights) * start + weights * end], axis=1)
        return self._generator().run(inputs, rng)

    def class_position(self, target_class):
        """The index of a class value (or name) in `self.classes`, or a ValueError listing them."""
        for position, (value, name) in enumerate(zip(self.classes, self.class_names)):
            if target_class == value or (isinstance(target_class, str) and target_class == name):
                return position
        known = ', '.join(f'{value}' if str(value) == name else f'{value} ({name})'
                          for value, name in zip(self.classes, self.class_names))
        raise ValueError(f"unknown class {target_class!r}; this model knows {known} "
                         f"(or -1 for all of them)")

    def _generator(self):
        if self._generation is None:
            if self.generator_weights is None:
                if not checkpoints.checkpoint_prefixes(self.model_dir):
                    raise checkpoints.CheckpointError(
                        f"this CGan has not been trained and {self.model_dir} holds no checkpoint: "
                        f"call fit() first")
                self.load_checkpoint(self.model_dir)
            self._generation = GeneratorSession(self.config, self.generator_weights, self.legacy_generation)
        return self._generation

    def load_checkpoint(self, model_dir):
        """Take the generator weights of the newest intact checkpoint in `model_dir`, and its
        step (`checkpoint_step`)."""
        self.close()
        self.generator_weights, self.legacy_generation, prefix = checkpoints.read_generator_weights(
            model_dir, generator_variable_shapes(self.config))
        self.checkpoint_step = checkpoints.step_in_name(prefix)

    def close(self):
        """Free the generator's session (built again when next needed)."""
        if self._generation is not None:
            self._generation.close()
            self._generation = None

    @classmethod
    def from_checkpoint(cls, ckpt_dir, classes=None, image_shape=None, z_dim=None,
                        generator_name=None, alpha=None):
        """A CGan ready for `generate_new` from the newest generator checkpoint in `ckpt_dir`.

        A folder of this project describes its model (config.json): no argument is needed.
        For checkpoints of the original code (generator trainable variables only: those
        generate as the original did, see `legacy_generation`) the book's MNIST model is
        assumed unless `classes`, `image_shape` or `z_dim` say otherwise.
        """
        record = recorded(ckpt_dir)  # checked, as every reading of config.json
        config = {**BOOK_DEFAULTS, 'alpha': 0.2, **record.get('model', {}),
                  **{k: v for k, v in {'classes': classes, 'image_shape': image_shape,
                                       'z_dim': z_dim, 'alpha': alpha}.items() if v is not None}}
        gan = cls(None, z_dim=config['z_dim'], alpha=config['alpha'],
                  smooth=config.get('smooth'), classes=config['classes'],
                  image_shape=config['image_shape'], variant=config.get('variant'),
                  precision='float32',
                  generator_name=generator_name or record.get('checkpoint_name', 'generator'),
                  class_names=record.get('class_names'), data_source=record.get('data_source'))
        gan.model_dir = os.path.abspath(ckpt_dir)
        gan.load_checkpoint(gan.model_dir)
        return gan

    @classmethod
    def pretrained(cls, name):
        """A generator that ships with cgan, ready for `generate_new`: 'mnist' or 'fashion'
        (see `pretrained.names()` and pretrained.py). Needs no data, network or training."""
        record = pretrained.describe(name)
        model = record['model']
        gan = cls(None, z_dim=model['z_dim'], alpha=model['alpha'], smooth=model['smooth'],
                  classes=model['classes'], image_shape=model['image_shape'], variant=model['variant'],
                  precision='float32', generator_name=record['generator_name'],
                  class_names=record['class_names'])
        gan.generator_weights = pretrained.read_weights(name)
        return gan

    def export_saved_model(self, path):
        """The generator as a TensorFlow SavedModel (see export.py)."""
        from condgan.export import export_saved_model
        export_saved_model(self, path)

    # ------------------------------------------------------------- pickling

    def __getstate__(self):
        """Everything the generator needs, its weights included; no data, graph or session."""
        state = {k: v for k, v in self.__dict__.items() if k not in ('dataset', 'data', '_generation')}
        state['format'] = PICKLE_FORMAT
        return state

    def __setstate__(self, state):
        if state.get('format') != PICKLE_FORMAT:
            raise ValueError(f"this pickle holds a CGan of format {state.get('format')!r}, written "
                             f"by another version of cgan; this version reads format "
                             f"{PICKLE_FORMAT}. Load the model with CGan.from_checkpoint(model_dir) "
                             f"instead")
        state = dict(state)
        del state['format']
        if 'config' not in state:  # written before the configuration was one object
            state = from_first_layout(state)
        state.setdefault('data_source', None)  # written before image folders
        state.pop('data', None)  # written before its data was left out, as its dataset is
        self.__dict__.update(state)
        self.dataset = self.data = None
        self._generation = None

    # ------------------------------------------------------------- pictures

    def images_grid(self, images, n_cols):
        """Images (n, H, W, C) in [-1, 1] as one uint8 grid picture, `n_cols` wide."""
        return images_grid(images, n_cols)

    def plot_images(self, images, n_cols):
        plot_images(images, n_cols)

    def show_original_images(self, n_images):
        """A grid of the first `n_images` training images."""
        plot_images(from_pixels(self.dataset.data[:n_images], self.max_value), int(np.ceil(np.sqrt(n_images))))


def from_first_layout(state):
    """A pickle of the first version (one attribute per setting) in today's attributes."""
    config = ModelConfig(state.pop('image_shape'), state.pop('classes'), state.pop('z_dim'),
                         state.pop('alpha'), state.pop('smooth'))
    seed = state.pop('seed')
    settings = TrainingSettings(state.pop('epochs'), state.pop('batch_size'), state.pop('learning_rate'),
                                state.pop('beta1'), 0 if seed is None else seed, state.pop('precision'),
                                state.pop('xla'), state.pop('max_to_keep'))
    state.pop('cmap', None)
    return {**state, 'config': config, 'settings': settings,
            'class_names': tuple(str(value) for value in config.classes)}


def load(path):
    """A pickled CGan, with a one-line error for a file that is not one.

    Pickles of the first version name the module `cgan` (the repository's root file); they
    are read as this module's, so they load in any folder.
    """
    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return super().find_class('condgan.gan' if module == 'cgan' else module, name)
    try:
        with open(path, 'rb') as f:
            gan = Unpickler(f).load()
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a pickled CGan") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, KeyError, ValueError) as error:
        raise ValueError(f"{path} is not a readable pickled CGan ({type(error).__name__}: {error})") from None
    if not isinstance(gan, CGan):
        raise ValueError(f"{path} holds a {type(gan).__name__}, not a pickled CGan")
    return gan


def load_model(path):
    """A CGan from a pickle, or from a run folder: its newest intact checkpoint (the run's
    latest state, also when a resumed session stopped before writing the pickle), else its
    pickle."""
    path = model_source(path)
    return CGan.from_checkpoint(str(path)) if path.is_dir() else load(path)
