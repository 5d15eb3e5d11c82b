"""Training the two networks: the training graph, the loop, checkpoints, the loss history,
TensorBoard events and stopping on Ctrl-C or SIGTERM.

A run is exactly repeatable and exactly resumable on a CPU: the batch order comes from the
seed and the epoch, z and the dropout masks from the seed and the step (stateless random
ops), and the checkpoint holds every variable, the optimizers' included. So a run that is
interrupted, however often and however (Ctrl-C, SIGTERM, kill -9), then resumed, ends with
the same losses and weights as one that never stopped.
"""
import contextlib
import csv
import io
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm  # tqdm.auto wants ipywidgets in Jupyter; text bars work everywhere

from condgan import checkpoints
from condgan.checks import none_or, one_of, real_number, true_or_false, whole_number
from condgan.datasets import batch_indices
from condgan.files import write_atomically
from condgan.generation import generator_inputs, grid_layout, session_config
from condgan.layers import BATCH_STATISTICS
from condgan.model import discriminator, discriminator_loss, generator, generator_loss
from condgan.pictures import save_png, images_grid, show_in_notebook
from condgan.precision import COMPUTE_DTYPES
from condgan.runs import CONFIG_FILE, RunFolderError, write_json
from condgan.weights import check_shapes, generator_variables

tf1 = tf.compat.v1

EVALUATION_FIGURES = ('conditional_accuracy', 'frechet_distance', 'diversity_ratio')
SAMPLE_COLUMNS = 5   # sample grids: 5 images of each of the first 10 classes, same z all run
CALIBRATION_IMAGES = 256  # the generator's batch-norm statistics are measured on this many
GENERATOR_AVERAGE_DECAY = 0.999  # of the modern variant's moving average of the generator


@dataclass(frozen=True)
class TrainingSettings:
    """How a model trains; it checks itself, as `ModelConfig` does: a bad value is a
    ValueError naming the setting."""
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.0002  # Adam, both networks
    beta1: float = 0.35            # Adam's first-moment decay
    seed: int = None               # batch order, initial weights, z and dropout; None:
                                   # drawn when training starts (run_settings.settle)
    precision: str = 'float32'     # a key of precision.COMPUTE_DTYPES
    xla: bool = False              # compile the training step with XLA
    max_to_keep: int = 5           # checkpoints kept in the model folder

    def __post_init__(self):
        checked = dict(epochs=whole_number('epochs', self.epochs),
                       batch_size=whole_number('batch_size', self.batch_size),
                       learning_rate=real_number('learning_rate', self.learning_rate, minimum=0),
                       beta1=real_number('beta1', self.beta1, minimum=0, below=1),
                       seed=none_or(whole_number, 'seed', self.seed, 0, 2**63 - 1),
                       precision=one_of('precision', self.precision, list(COMPUTE_DTYPES)),
                       xla=true_or_false('xla', self.xla),
                       max_to_keep=whole_number('max_to_keep', self.max_to_keep))
        for name, value in checked.items():
            object.__setattr__(self, name, value)


class TrainingDiverged(FloatingPointError):
    """A loss that is no longer a number; the newest checkpoint is the last good one."""


class RunFinished(RunFolderError):
    """A resumed run that had already trained every step it was asked for."""


# ----------------------------------------------------------------- the training graph

@dataclass(frozen=True)
class TrainingGraph:
    """The finalized graph of one training step, and the tensors and ops a run uses."""
    graph: tf.Graph
    # Fed each step (see training_feed):
    real_images_uint8: tf.Tensor     # [batch, H, W, C] uint8
    class_index: tf.Tensor           # [batch] int32, each image's class position
    step: tf.Tensor                  # int64, the step counted from 0: seeds z and dropout
    learning_rate: tf.Tensor         # float32, defaults to the settings'
    # Run:
    train_step: tf.Operation         # the D update, then the G update
    d_loss: tf.Tensor
    g_loss: tf.Tensor
    summaries: tf.Tensor             # TensorBoard's, merged
    calibrate_batch_norm: tf.Operation  # the generator's moving statistics from a large batch
    sample_z: tf.Tensor              # [n, z_dim + K], fed to draw `samples`
    samples: tf.Tensor               # [n, H, W, C] in [-1, 1], in inference mode
    # Bookkeeping:
    saver: tf1.train.Saver           # every variable, the optimizers' included
    global_step: tf.Variable
    generation_weights: dict         # checkpoint name -> the variable generation reads
    initializer: tf.Operation


def build_training_graph(config, settings, max_value=255):
    """The graph of one training step: a D update, then a G update, as one op.

    It is fed uint8 images, their class positions and the step number; it scales the
    images, draws z and the dropout masks from (seed, step), and builds the label planes.
    The original ran the G update in a second `session.run`, after the D update, so the
    generator learned against the updated discriminator. Here the G loss is the
    discriminator read again after its update (control dependency), on the same fakes:
    the generator's forward pass is shared by both updates instead of run twice.
    """
    height, width, channels = config.image_shape
    compute_dtype = COMPUTE_DTYPES[settings.precision]
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(settings.seed)  # the initial weights
        real_images_uint8 = tf1.placeholder(tf.uint8, (None, height, width, channels), 'real_images_uint8')
        class_index = tf1.placeholder(tf.int32, (None,), 'class_index')
        step = tf1.placeholder(tf.int64, (), 'step')
        learning_rate = tf1.placeholder_with_default(tf.constant(settings.learning_rate, tf.float32), (),
                                                     'learning_rate')
        batch = tf.shape(real_images_uint8)[0]
        step_seed = tf.stack([tf.constant(settings.seed, tf.int64), step])

        def stream(number):  # an independent random stream of this step
            return tf.random.experimental.stateless_fold_in(step_seed, number)

        # The original scaled batches to [-0.5, 0.5], then doubled them to tanh's [-1, 1].
        real_images = (tf.cast(real_images_uint8, tf.float32) / max_value - 0.5) * 2
        z, one_hot = random_generator_inputs(config, batch, class_index, stream(0))  # [batch, z_dim + K]

        with tf.xla.experimental.jit_scope(compile_ops=settings.xla):
            fake_images = generator(config, z, True, stream(1), compute_dtype)
            real_logits = discriminator(config, real_images, one_hot, stream(2), compute_dtype,
                                        update_singular_vectors=True)
            fake_logits = discriminator(config, fake_images, one_hot, stream(3), compute_dtype)
            d_loss = discriminator_loss(config, real_logits, fake_logits)

            variables = tf1.trainable_variables()
            d_vars = [v for v in variables if v.name.startswith('discriminator/')]
            g_vars = [v for v in variables if v.name.startswith('generator/')]
            global_step = tf1.train.get_or_create_global_step()
            # Batch-norm moving statistics of both networks, from the passes above.
            with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                d_train = adam(learning_rate, settings).minimize(d_loss, var_list=d_vars)
            with tf.control_dependencies([d_train]):
                g_loss = generator_loss(config, discriminator(config, fake_images, one_hot, stream(4),
                                                              compute_dtype))
                train_step = adam(learning_rate, settings).minimize(g_loss, var_list=g_vars,
                                                                    global_step=global_step)
            average = None
            if config.averages_generator:
                # Decay min(0.999, (1 + step) / (10 + step)): early averages forget the start fast.
                average = tf1.train.ExponentialMovingAverage(GENERATOR_AVERAGE_DECAY, num_updates=global_step)
                with tf.control_dependencies([train_step]):
                    train_step = average.apply(g_vars)

        # For TensorBoard: the losses, and how sure D is that real and fake images are real.
        tf1.summary.scalar('loss/discriminator', d_loss)
        tf1.summary.scalar('loss/generator', g_loss)
        tf1.summary.scalar('discriminator_output/real', tf.reduce_mean(tf.sigmoid(real_logits)))
        tf1.summary.scalar('discriminator_output/fake', tf.reduce_mean(tf.sigmoid(fake_logits)))
        # The generator that draws: with the averaged weights, where the variant keeps them.
        with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=lambda getter, *args, **kwargs:
                                averaged(getter(*args, **kwargs), average)):
            calibrate_batch_norm = batch_norm_calibration(config, settings.seed, compute_dtype)
            # Built once here, not at every sample grid (the original's graph grew all along).
            sample_z = tf1.placeholder(tf.float32, (None, config.generator_input_size))
            samples = generator(config, sample_z, False)
        net = TrainingGraph(
            graph=graph, real_images_uint8=real_images_uint8, class_index=class_index, step=step,
            learning_rate=learning_rate, train_step=train_step, d_loss=d_loss, g_loss=g_loss,
            calibrate_batch_norm=calibrate_batch_norm, sample_z=sample_z, samples=samples,
            summaries=tf1.summary.merge_all(),
            # checkpoints.prune keeps max_to_keep; the Saver's own pruning calls TensorFlow's
            # deprecated remove_checkpoint, whose warning lands in the progress bar.
            saver=tf1.train.Saver(max_to_keep=None, save_relative_paths=True),
            global_step=global_step, generation_weights={
                name: averaged(variable, average) for name, variable in generator_variables(graph).items()},
            initializer=tf1.global_variables_initializer())
        graph.finalize()
    return net


def averaged(variable, average):
    """`variable`'s moving average in `average` (a tf.train.ExponentialMovingAverage, or
    None) where it keeps one, else `variable`."""
    kept = None if average is None else average.average(variable)
    return variable if kept is None else kept


def random_generator_inputs(config, batch, class_index, random_seed):
    """`batch` z uniform in [-1, 1] from `random_seed`, joined to the one-hot vectors of the
    classes at `class_index` [batch]: ([batch, z_dim + K], the one-hot [batch, K] or None)."""
    z = tf.random.stateless_uniform((batch, config.z_dim), random_seed, -1.0, 1.0)
    if not config.num_classes:
        return z, None
    one_hot = tf.one_hot(class_index, config.num_classes)
    return tf.concat([z, one_hot], axis=1), one_hot


def batch_norm_calibration(config, seed, compute_dtype):
    """The op that sets the generator's moving statistics to those of one large batch of the
    generator as it is now (every class alike, the same z each time).

    Generation normalises with the moving statistics. Their running averages start at 0 and
    1 and lag the weights, so the first few hundred steps drew near-black grids; measured
    afresh before every checkpoint, sample grid and evaluation, they fit the weights saved.
    Training never reads them, so this changes nothing of what it learns.
    """
    class_index = tf.range(CALIBRATION_IMAGES) % max(config.num_classes, 1)
    random_seed = tf.constant([seed, -1], tf.int64)  # no training step draws this stream
    z, _ = random_generator_inputs(config, CALIBRATION_IMAGES, class_index, random_seed)
    measured_so_far = len(tf1.get_collection(BATCH_STATISTICS))
    generator(config, z, True, random_seed, compute_dtype)
    return tf.group([assignment
                     for moving_mean, mean, moving_variance, variance
                     in tf1.get_collection(BATCH_STATISTICS)[measured_so_far:]
                     for assignment in (moving_mean.assign(mean), moving_variance.assign(variance))])


def adam(learning_rate, settings):
    optimizer = tf1.train.AdamOptimizer(learning_rate, settings.beta1)
    if settings.precision == 'mixed_float16':
        # float16 gradients underflow; a dynamic loss scale keeps them representable.
        optimizer = tf1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, 'dynamic')
    return optimizer


def epoch_batches(num_images, batch_size, seed, epoch):
    """The batches of one epoch, as index arrays into the dataset.

    A new order every epoch (the original kept one order all along), drawn from the seed
    and the epoch number, so a resumed run sees the batches an uninterrupted one would.
    """
    return batch_indices(num_images, batch_size, np.random.default_rng([seed, epoch]))


def training_feed(net, dataset, batch, step, learning_rate):
    """The inputs of step `step` (counted from 0): the uint8 images and class positions at
    `batch`, gathered from memory (the graph scales them and draws z)."""
    feed = {net.real_images_uint8: dataset.data[batch], net.step: step,
            net.learning_rate: learning_rate}
    if dataset.labels is not None:
        feed[net.class_index] = dataset.label_indices[batch]
    return feed


# ----------------------------------------------------------------- the run

class Training:
    """One training run of a model folder: its settings, its history, its loop.

    `fit` of a CGan builds one and calls `run`, with the folder locked and the settings
    settled (run_settings.settle). Its `config.json` (model and settings) is written before
    the first step.
    """

    def __init__(self, config, settings, dataset, model_dir, checkpoint_name, extra_record=None):
        self.config = config
        self.settings = settings
        self.dataset = dataset
        self.model_dir = Path(model_dir)
        self.checkpoint_name = checkpoint_name
        self.extra_record = extra_record or {}  # written into config.json (class names, ...)
        self.history = LossHistory(self.steps_per_epoch)
        self.evaluations = []
        self.generator_weights = None
        self.recorded = False  # whether config.json holds this session's settings

    @property
    def steps_per_epoch(self):
        return -(-len(self.dataset.data) // self.settings.batch_size)  # the last may be smaller

    def total_steps(self, max_steps):
        total = self.settings.epochs * self.steps_per_epoch
        return total if max_steps is None else min(total, max_steps)

    def run(self, resume=False, save_every=1000, max_steps=None, tensorboard=False,
            evaluation=None, eval_every=None):
        """Train, or with `resume` go on from the folder's newest intact checkpoint. The
        caller holds the folder's lock, and settled the settings (run_settings.settle)."""
        net = build_training_graph(self.config, self.settings, self.dataset.max_value)
        total_steps = self.total_steps(max_steps)
        # The Saver works only inside its graph's context (outside it TF 2 is eager).
        with net.graph.as_default(), tf1.Session(config=session_config()) as session:
            if resume:
                step = self.restore(session, net)
                if step >= total_steps:
                    raise RunFinished(f"{self.model_dir} already reached step {step} of the "
                                      f"{total_steps} asked for: nothing to do (raise the epochs or "
                                      f"max steps to train on)")
            else:
                session.run(net.initializer)
                step = 0
                write_json(self.model_dir / CONFIG_FILE, self.record())
            self.recorded = not resume  # a resumed run's settings are recorded with its first checkpoint
            checkpoints.prune(self.model_dir, self.settings.max_to_keep)  # earlier sessions' leftovers
            with StopRequests() as stop, \
                    contextlib.closing(EventWriter(self.model_dir if tensorboard else None)) as events:
                self._loop(session, net, step, total_steps, save_every, stop, events, evaluation, eval_every)
        return self

    def record(self):
        return {'model': self.config.to_json(), 'training': asdict(self.settings),
                'checkpoint_name': self.checkpoint_name, **self.extra_record}

    def restore(self, session, net):
        """Restore the newest intact checkpoint and the history up to its step."""
        def restore(prefix):
            with net.graph.as_default():
                expected = {v.op.name: tuple(v.shape) for v in tf1.global_variables()}
            check_shapes(checkpoints.stored_shapes(prefix), expected, f'the checkpoint {prefix}')
            net.saver.restore(session, prefix)
            return int(session.run(net.global_step))
        step, prefix = checkpoints.first_readable(self.model_dir, restore)
        self.history.read(self.model_dir / 'losses.csv', step)
        self.evaluations = read_evaluations(self.model_dir / 'evaluation.csv', step)
        self.keep_generator_weights(session, net)
        return step

    def _loop(self, session, net, step, total_steps, save_every, stop, events, evaluation, eval_every):
        # The same z for every sample grid of the run, so the grids show training progress.
        classes = self.config.num_classes
        sample_z = generator_inputs(self.config, grid_layout(classes, min(classes, 10) or 5, SAMPLE_COLUMNS),
                                    np.random.default_rng(self.settings.seed))
        progress = tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True)
        losses = []
        try:
            while step < total_steps and not stop.requested:
                epoch, batch_in_epoch = divmod(step, self.steps_per_epoch)
                batches = epoch_batches(len(self.dataset.data), self.settings.batch_size,
                                        self.settings.seed, epoch)
                for batch in batches[batch_in_epoch:]:
                    if step >= total_steps or stop.requested:
                        break
                    started = time.perf_counter()
                    summarize = events.active and (step + 1) % max(1, save_every // 10) == 0
                    fetches = [net.train_step, net.d_loss, net.g_loss] + ([net.summaries] if summarize else [])
                    _, d_loss, g_loss, *summary = session.run(fetches, training_feed(
                        net, self.dataset, batch, step, self.settings.learning_rate))
                    step += 1
                    if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                        raise TrainingDiverged(self.divergence_message(step, d_loss, g_loss))
                    events.add(summary[0] if summary else None, step)
                    losses.append((step, d_loss, g_loss))
                    if evaluation is not None and eval_every and step % eval_every == 0:
                        self.evaluate(session, net, evaluation, step, events)
                    progress.update(1)
                    progress.set_postfix(epoch=epoch + 1, d_loss=f'{d_loss:.3f}', g_loss=f'{g_loss:.3f}',
                                         img_per_s=f'{len(batch) / (time.perf_counter() - started):.0f}')
                    if step % save_every == 0 or step == total_steps:
                        self.save(session, net, step, losses, sample_z, events)
                        losses = []
            if stop.requested:
                if not losses and not checkpoints.checkpoint_prefixes(self.model_dir):
                    raise KeyboardInterrupt(f"{stop.requested} before the first step: nothing to save")
                progress.write(f"{stop.requested} at step {step}: saving a checkpoint in {self.model_dir}",
                               file=sys.stderr)  # beside the progress bar; stdout is for results
                if losses:
                    self.save(session, net, step, losses, sample_z, events)
        finally:
            progress.close()

    def divergence_message(self, step, d_loss, g_loss):
        saved = checkpoints.checkpoint_prefixes(self.model_dir)
        keeps = (f"the newest checkpoint, {os.path.basename(saved[0])}, is the last good one: resume "
                 f"with a lower learning rate" if saved else
                 "no checkpoint was written before it: start again with a lower learning rate")
        return f"training diverged at step {step} (D loss {d_loss}, G loss {g_loss}); {keeps}"

    def save(self, session, net, step, losses, sample_z, events):
        """The history, then a checkpoint of both networks and their optimizers, then the
        sample grid. The history comes first: a crash between the two leaves rows past the
        checkpoint, which a resume drops, never a checkpoint past the history."""
        self.history.add(losses)
        self.history.write(self.model_dir / 'losses.csv')
        session.run(net.calibrate_batch_norm)
        net.saver.save(session, str(self.model_dir / self.checkpoint_name), global_step=step,
                       write_meta_graph=False)
        if not self.recorded:
            write_json(self.model_dir / CONFIG_FILE, self.record())
            self.recorded = True
        checkpoints.prune(self.model_dir, self.settings.max_to_keep)
        self.keep_generator_weights(session, net)
        images = session.run(net.samples, {net.sample_z: sample_z})
        path = self.model_dir / f'samples_{step}.png'
        save_png(images_grid(images, SAMPLE_COLUMNS), path)
        events.add_png('samples', path, step)
        show_in_notebook(path)

    def keep_generator_weights(self, session, net):
        self.generator_weights = dict(zip(net.generation_weights, session.run(
            list(net.generation_weights.values()))))

    def evaluate(self, session, net, evaluation, step, events, per_class=50):
        """Record `evaluation(generate, per_class)`'s figures (see evaluate.Judge)."""
        rng = np.random.default_rng([self.settings.seed, step])
        session.run(net.calibrate_batch_norm)

        def generate(class_position, count):
            z = generator_inputs(self.config, np.full(count, class_position), rng)
            return session.run(net.samples, {net.sample_z: z})

        figures = evaluation(generate, per_class=per_class)
        row = {'step': step, **{name: figures[name] for name in EVALUATION_FIGURES}}
        self.evaluations.append(row)
        write_csv(self.model_dir / 'evaluation.csv', list(row), [list(r.values()) for r in self.evaluations])
        events.add(tf1.Summary(value=[tf1.Summary.Value(tag=f'evaluation/{name}', simple_value=figures[name])
                                      for name in EVALUATION_FIGURES]), step)


# ----------------------------------------------------------------- the loss history

class LossHistory:
    """Each step's D and G loss, and each epoch's mean of them."""

    def __init__(self, steps_per_epoch):
        self.steps_per_epoch = steps_per_epoch
        self.step_losses = np.zeros((0, 3))   # rows of (step, d_loss, g_loss)

    @property
    def epoch_losses(self):
        """Rows of (d_loss, g_loss): the mean of each epoch's steps so far."""
        epochs = (self.step_losses[:, 0] - 1) // self.steps_per_epoch
        return np.array([self.step_losses[epochs == e, 1:].mean(axis=0)
                         for e in np.unique(epochs)]).reshape(-1, 2)

    def add(self, losses):
        if losses:
            self.step_losses = np.concatenate([self.step_losses, np.array(losses, float)])

    def write(self, path):
        write_csv(path, ['step', 'd_loss', 'g_loss'],
                  [[int(step), d_loss, g_loss] for step, d_loss, g_loss in self.step_losses])

    def read(self, path, up_to_step):
        """The rows of steps 1 to `up_to_step` from losses.csv: every one, once."""
        try:
            rows = np.loadtxt(path, delimiter=',', skiprows=1, ndmin=2) if up_to_step else np.zeros((0, 3))
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{path} cannot be read as the run's loss history ({error})") from None
        rows = rows[rows[:, 0] <= up_to_step] if len(rows) else np.zeros((0, 3))
        if rows.shape[1:] != (3,) or not np.array_equal(rows[:, 0], np.arange(1, up_to_step + 1)):
            raise RunFolderError(f"{path} does not hold the losses of steps 1 to {up_to_step}, which "
                                 f"the checkpoint has trained (truncated or edited?)")
        self.step_losses = rows


def write_csv(path, header, rows):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, lambda f: f.write(text.getvalue().encode()))


def read_evaluations(path, up_to_step):
    if not path.exists():
        return []
    with open(path) as f:
        return [{name: (int if name == 'step' else float)(value) for name, value in row.items()}
                for row in csv.DictReader(f) if int(row['step']) <= up_to_step]


# ----------------------------------------------------------------- events and signals

class EventWriter:
    """TensorBoard events in a folder, or nothing at all when the folder is None."""

    def __init__(self, folder):
        self.writer = None if folder is None else tf1.summary.FileWriter(str(folder), tf1.get_default_graph())
        self.active = self.writer is not None

    def add(self, summary, step):
        if self.active and summary is not None:
            self.writer.add_summary(summary, step)

    def add_png(self, tag, path, step):
        if self.active:
            image = tf1.Summary.Image(encoded_image_string=Path(path).read_bytes())
            self.add(tf1.Summary(value=[tf1.Summary.Value(tag=tag, image=image)]), step)

    def close(self):
        if self.active:
            self.writer.close()


class StopRequests:
    """Ctrl-C and SIGTERM (a spot instance's notice, `kill`) ask training to stop after the
    step it is in, so the checkpoint holds exactly the steps counted. A second Ctrl-C
    interrupts at once. Signals reach the main thread only: elsewhere this does nothing."""

    def __init__(self):
        self.requested = None  # what asked, once something has
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.request)
        return self

    def request(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = 'interrupted' if signum == signal.SIGINT else 'stopped by SIGTERM'

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

