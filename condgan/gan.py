"""A conditional GAN (CGan) that draws new images of a class you choose.

Two networks play against each other. The generator turns random noise z, joined to the
one-hot vector of a class, into an image. The discriminator looks at an image together with
its class (the one-hot vector repeated at every pixel as extra channels, the "label
planes") and says whether the image is real. Trained together, the generator learns to
draw images that pass for real images *of the requested class*.

This is the model of the chapter "Building GANs for Conditional Image Creation" of
"TensorFlow Deep Learning Projects" (Packt, 2018), in TF1 graph mode (`tf.compat.v1`) on
TensorFlow 2. Layers are written from `tf.compat.v1.get_variable` and `tf.nn` (the
`tf.compat.v1.layers` API needs the legacy Keras package on TF 2.21), with exactly the
variable names `tf.layers` gave them, so checkpoints move between the original and this.

    gan = CGan(Dataset(images, labels, channels=1), epochs=16, generator_name='mnist')
    gan.fit(learning_rate=0.0002, beta1=0.35)
    eights = gan.generate_new(target_class=8, rows=5, cols=5)
"""
import contextlib
import csv
import os
import re
import signal
import threading
import time
import types

import numpy as np
import tensorflow as tf
from tqdm import tqdm  # tqdm.auto wants ipywidgets in Jupyter; text bars work everywhere

tf1 = tf.compat.v1

PICKLE_FORMAT = 1           # bump when the pickled state changes shape
BATCH_NORM_MOMENTUM = 0.99  # tf.layers.batch_normalization's defaults
BATCH_NORM_EPSILON = 1e-3
EVALUATION_FIGURES = ('conditional_accuracy', 'frechet_distance', 'diversity_ratio')
# Mixed precision: convolutions and matmuls in 16 bits, variables and losses in float32.
# bfloat16 suits CPUs with AVX-512 BF16 (and TPUs), float16 GPUs (with loss scaling).
COMPUTE_DTYPES = {'float32': tf.float32, 'mixed_bfloat16': tf.bfloat16, 'mixed_float16': tf.float16}


class CGan:
    """A conditional DCGAN over a `datasets.Dataset` (an unlabeled one gives a plain DCGAN).

    Generation (`generate_new`, the sample grids) runs the generator in inference mode:
    batch norm on its moving statistics, no dropout, so an image depends only on its z and
    class, not on the other images of the batch. `legacy_generation` (set by
    `from_checkpoint` for checkpoints of the original code, which hold no moving
    statistics) generates as the original did: batch statistics and dropout.
    """

    def __init__(self, dataset, epochs=1, batch_size=32, z_dim=96, generator_name='generator',
                 alpha=0.2, smooth=0.1, learning_rate=0.001, beta1=0.35,
                 out_dir=None, seed=None, max_to_keep=5, precision='auto', xla=False,
                 classes=None, image_shape=None):
        """`classes` and `image_shape` describe a model without a dataset (generation only);
        with a dataset they come from it. `precision` 'auto' is `default_precision()`."""
        if dataset is not None:
            classes = [] if dataset.labels is None else np.asarray(dataset.classes).tolist()
            image_shape = dataset.data.shape[1:]
        elif classes is None or image_shape is None:
            raise ValueError("CGan needs a dataset, or classes and image_shape for a model "
                             "that only generates")
        height, width, channels = image_shape
        if height % 4 or width % 4:
            raise ValueError(f"image height and width must be multiples of 4 (the generator "
                             f"doubles a (H/4, W/4) start twice); got {height}x{width}")
        if precision == 'auto':
            precision = default_precision()
        if precision not in COMPUTE_DTYPES:
            raise ValueError(f"precision must be one of {sorted(COMPUTE_DTYPES)}; got {precision!r}")
        if batch_size < 1 or epochs < 1 or z_dim < 1:
            raise ValueError(f"batch_size, epochs and z_dim must be at least 1; got "
                             f"{batch_size}, {epochs}, {z_dim}")
        self.dataset = dataset
        self.epochs = epochs
        self.batch_size = batch_size
        self.z_dim = z_dim                  # noise size; the generator's input is z + one-hot
        self.generator_name = generator_name
        self.alpha = alpha                  # leaky ReLU slope
        self.smooth = smooth                # one-sided label smoothing: real target 1 - smooth
        self.learning_rate = learning_rate  # Adam, both networks
        self.beta1 = beta1
        self.seed = seed
        self.max_to_keep = max_to_keep      # checkpoints kept in the model folder
        self.precision = precision          # a key of COMPUTE_DTYPES
        self.xla = xla                      # compile the training step with XLA
        self.model_dir = os.path.join(os.path.abspath(out_dir or os.getcwd()), generator_name)
        self.classes = list(classes)
        self.image_shape = (height, width, channels)
        self.max_value = 255 if dataset is None else dataset.max_value
        self.cmap = 'gray' if channels == 1 else None
        self.legacy_generation = False
        self.generator_weights = None       # {variable name: array} once trained or loaded
        self.step_losses = np.zeros((0, 3))  # rows of (step, d_loss, g_loss)
        self.epoch_losses = np.zeros((0, 2))  # rows of (d_loss, g_loss), mean over the epoch
        self.evaluations = []               # dicts of EVALUATION_FIGURES by step (eval_every)
        self._generation = None             # the inference graph and session, built once

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def steps_per_epoch(self):
        return -(-len(self.dataset.data) // self.batch_size)  # the last batch may be smaller

    # ---------------------------------------------------------------- the graph

    def instantiate_inputs(self):
        """The original's placeholders, each fed by default from inside the graph.

        Feed `input_real` (images in [-1, 1]), `input_z` (z joined to the one-hot labels) and
        `labels` (the label planes) as the original did; or feed only `real_images_uint8` and
        `class_index` and let the graph draw z and build the label planes.
        """
        height, width, channels = self.image_shape
        real_images_uint8 = tf1.placeholder(tf.uint8, (None, height, width, channels),
                                            name='real_images_uint8')
        class_index = tf1.placeholder(tf.int32, (None,), name='class_index')
        batch = tf.shape(real_images_uint8)[0]

        # The original scaled batches to [-0.5, 0.5], then doubled them to the generator's
        # tanh range [-1, 1].
        scaled = (tf.cast(real_images_uint8, tf.float32) / self.max_value - 0.5) * 2
        input_real = tf1.placeholder_with_default(scaled, (None, height, width, channels),
                                                  name='input_real')
        z = tf1.random_uniform((batch, self.z_dim), -1.0, 1.0)
        if self.num_classes:
            one_hot = tf.one_hot(class_index, self.num_classes)           # [batch, K]
            z = tf.concat([z, one_hot], axis=1)                           # [batch, z_dim + K]
            planes = label_planes(one_hot, height, width)                 # [batch, H, W, K]
            labels = tf1.placeholder_with_default(
                planes, (None, height, width, self.num_classes), name='labels')
        else:
            labels = None
        input_z = tf1.placeholder_with_default(z, (None, self.z_dim + self.num_classes),
                                               name='input_z')
        learning_rate = tf1.placeholder_with_default(
            tf.constant(self.learning_rate, tf.float32), (), name='learning_rate')
        return real_images_uint8, class_index, input_real, input_z, labels, learning_rate

    def discriminator(self, images, labels, training=True):
        """Logits that `images` are real images of the classes in `labels` (label planes)."""
        with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE):
            x = images if labels is None else tf.concat([images, labels], axis=3)
            x = tf.cast(x, COMPUTE_DTYPES[self.precision])
            x = conv_block(x, 32, 2, self.alpha, training, 'conv2d', 'batch_normalization')
            # [batch, H/2, W/2, 32]
            x = conv_block(x, 64, 2, self.alpha, training, 'conv2d_1', 'batch_normalization_1')
            # [batch, H/4, W/4, 64]
            x = conv_block(x, 128, 1, self.alpha, training, 'conv2d_2', 'batch_normalization_2')
            # [batch, H/4, W/4, 128]
            x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))         # [batch, H/4*W/4*128]
            logits = tf.cast(dense(x, 1, 'dense'), tf.float32)            # [batch, 1]
            return tf.sigmoid(logits), logits

    def generator(self, z, training=True):
        """Images in [-1, 1] drawn from z joined to the one-hot labels.

        Inference (training=False) always computes in float32: generation is cheap next to
        training, and its images then never depend on the precision or the batch.
        """
        height, width, channels = self.image_shape
        with tf1.variable_scope('generator', reuse=tf1.AUTO_REUSE):
            x = tf.cast(z, COMPUTE_DTYPES[self.precision] if training else tf.float32)
            x = dense(x, height // 4 * width // 4 * 512, 'dense')      # [batch, H/4*W/4*512]
            x = tf.reshape(x, (-1, height // 4, width // 4, 512))      # [batch, H/4, W/4, 512]
            x = normalize_activate_drop(x, self.alpha, training, 'batch_normalization')
            x = conv_transpose(x, 256, 2, 'conv2d_transpose')          # [batch, H/2, W/2, 256]
            x = normalize_activate_drop(x, self.alpha, training, 'batch_normalization_1')
            x = conv_transpose(x, 128, 2, 'conv2d_transpose_1')        # [batch, H, W, 128]
            x = normalize_activate_drop(x, self.alpha, training, 'batch_normalization_2')
            logits = conv_transpose(x, channels, 1, 'conv2d_transpose_2')  # [batch, H, W, C]
            return tf.tanh(tf.cast(logits, tf.float32))

    def loss(self, input_real, input_z, labels):
        """Discriminator and generator losses, and the fake images they judge.

        The discriminator judges real and fake images each with their labels.
        """
        fake_images = self.generator(input_z)
        real_output, real_logits = self.discriminator(input_real, labels)
        fake_output, fake_logits = self.discriminator(fake_images, labels)
        d_loss = discriminator_loss(real_logits, fake_logits, self.smooth)
        # For TensorBoard: how sure D is that real images are real and fakes are real.
        tf1.summary.scalar('discriminator_output/real', tf.reduce_mean(real_output))
        tf1.summary.scalar('discriminator_output/fake', tf.reduce_mean(fake_output))
        tf1.summary.scalar('loss/discriminator', d_loss)
        return d_loss, generator_loss(fake_logits), fake_images

    def optimization(self, d_loss, fake_images, labels, learning_rate):
        """One training step as a single op: the D update, then the G update.

        The original ran the G update in a second `session.run`, after the D update, so the
        generator learned against the updated discriminator. Here the G loss is the
        discriminator read again after its update (control dependency), on the same fakes:
        the generator's forward pass is shared by both updates instead of run twice.
        Returns the training op and the G loss that its update minimised.
        """
        variables = tf1.trainable_variables()
        d_vars = [v for v in variables if v.name.startswith('discriminator/')]
        g_vars = [v for v in variables if v.name.startswith('generator/')]
        global_step = tf1.train.get_or_create_global_step()
        # Batch-norm moving statistics of both networks, from the passes in `loss`.
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            d_train = self._adam(learning_rate).minimize(d_loss, var_list=d_vars)
        with tf.control_dependencies([d_train]):
            g_loss = generator_loss(self.discriminator(fake_images, labels)[1])
            g_train = self._adam(learning_rate).minimize(g_loss, var_list=g_vars,
                                                         global_step=global_step)
        tf1.summary.scalar('loss/generator', g_loss)
        return g_train, g_loss

    def _adam(self, learning_rate):
        optimizer = tf1.train.AdamOptimizer(learning_rate, self.beta1)
        if self.precision == 'mixed_float16':
            # float16 gradients underflow; a dynamic loss scale keeps them representable.
            optimizer = tf1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, 'dynamic')
        return optimizer

    def _build_training_graph(self):
        graph = tf.Graph()
        with graph.as_default():
            if self.seed is not None:
                tf1.set_random_seed(self.seed)
            (real_images_uint8, class_index, input_real, input_z, labels,
             learning_rate) = self.instantiate_inputs()
            with tf.xla.experimental.jit_scope(compile_ops=self.xla):
                d_loss, _, fake_images = self.loss(input_real, input_z, labels)
                train_step, g_loss = self.optimization(d_loss, fake_images, labels, learning_rate)
            # Built once here, not at every sample grid (the original's graph grew all along).
            sample_z = tf1.placeholder(tf.float32, (None, self.z_dim + self.num_classes))
            samples = self.generator(sample_z, training=False)
            net = TrainingGraph(
                graph=graph, real_images_uint8=real_images_uint8, class_index=class_index,
                learning_rate=learning_rate, train_step=train_step, d_loss=d_loss,
                g_loss=g_loss, sample_z=sample_z, samples=samples,
                summaries=tf1.summary.merge_all(),
                saver=tf1.train.Saver(max_to_keep=self.max_to_keep),
                global_step=tf1.train.get_global_step(),
                generator_variables=generator_variables(graph),
                initializer=tf1.global_variables_initializer())
            graph.finalize()
        return net

    # ------------------------------------------------------------- training

    def fit(self, learning_rate=0.0002, beta1=0.35, resume=False, save_every_n=1000,
            max_steps=None, plot=True, tensorboard=False, eval_every=None, eval_data_dir=None):
        """Train for `self.epochs` epochs; returns the (epochs, 2) array of mean D and G losses.

        Every `save_every_n` steps a sample grid is written (and shown in Jupyter) and both
        networks are checkpointed in `self.model_dir`. `resume=True` continues from the
        latest checkpoint at its step; Ctrl-C (or SIGTERM: a spot instance's notice, `kill`)
        saves a checkpoint and returns. `max_steps` stops early (a quick look).
        `tensorboard=True` writes TensorBoard events into the model folder: the losses and D's
        mean output on real and fake images every `save_every_n // 10` steps, the sample grids.
        `eval_every=N` judges the generator every N steps with evaluate.py's classifier (on
        the real data in `eval_data_dir`, or found as the loaders find it) and records the
        figures in `self.evaluations`, `evaluation.csv` and TensorBoard.
        A non-finite loss stops training with an error, before
        any checkpoint of that step: the latest one is the last good one (the G loss is read
        after the D update, so weights that blew up show in the step that blew them up).
        """
        if self.dataset is None:
            raise ValueError("this CGan has no dataset (it was loaded from a pickle or a "
                             "checkpoint): create CGan(dataset, ...) to train")
        if save_every_n < 1:
            raise ValueError(f"save_every_n must be at least 1; got {save_every_n}")
        self.learning_rate, self.beta1 = learning_rate, beta1
        latest = tf.train.latest_checkpoint(self.model_dir)
        if resume and latest is None:
            raise FileNotFoundError(f"resume=True but there is no checkpoint in {self.model_dir}")
        if not resume and latest is not None:
            raise FileExistsError(
                f"{self.model_dir} already holds a training run ({os.path.basename(latest)}); "
                f"continue it with fit(resume=True), or choose another generator_name or "
                f"out_dir, or delete that folder")
        os.makedirs(self.model_dir, exist_ok=True)
        self._close_generation()

        judge = None
        if eval_every:
            from condgan import evaluate  # it imports this module
            judge = evaluate.Judge.for_model(self, eval_data_dir)
        net = self._build_training_graph()
        # The Saver works only inside its graph's context (outside it TF 2 is eager).
        with net.graph.as_default(), tf1.Session(config=session_config()) as session, \
                sigterm_as_keyboard_interrupt(), \
                contextlib.closing(EventWriter(self.model_dir if tensorboard else None)) as events, \
                judge or contextlib.nullcontext():
            if resume:
                restore_checkpoint(net.saver, session, latest)
                self._read_history(int(session.run(net.global_step)))
            else:
                session.run(net.initializer)
                self.step_losses, self.epoch_losses = np.zeros((0, 3)), np.zeros((0, 2))
                self.evaluations = []
            self._train(session, net, save_every_n, max_steps, events, judge, eval_every)
        if plot and len(self.step_losses):
            self._plot_losses()
        return self.epoch_losses

    def _train(self, session, net, save_every_n, max_steps, events, judge, eval_every):
        total_steps = self.epochs * self.steps_per_epoch
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        step = int(session.run(net.global_step))
        # The same z for every sample grid of the run, so the grids show training progress.
        sample_z = self._sample_inputs(self._grid_layout(min(self.num_classes, 10) or 5, 5),
                                       np.random.default_rng(self.seed))
        shuffle_seed = self.seed if self.seed is not None else np.random.SeedSequence().entropy
        progress = tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True)
        losses = []
        try:
            while step < total_steps:
                epoch, batch_in_epoch = divmod(step, self.steps_per_epoch)
                for batch in self.epoch_batches(epoch, shuffle_seed)[batch_in_epoch:]:
                    if step >= total_steps:
                        break
                    started = time.perf_counter()
                    summarize = events.active and (step + 1) % max(1, save_every_n // 10) == 0
                    d_loss, g_loss, summary = self.run_training_step(session, net, batch, summarize)
                    step += 1
                    events.add(summary, step)
                    if judge is not None and step % eval_every == 0:
                        self._evaluate(session, net, judge, step, events)
                    if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                        raise FloatingPointError(
                            f"training diverged at step {step}: D loss {d_loss}, G loss {g_loss}; "
                            f"the latest checkpoint in {self.model_dir} is the last good one "
                            f"(try a lower learning rate, then fit(resume=True))")
                    losses.append((step, d_loss, g_loss))
                    progress.update(1)
                    progress.set_postfix(epoch=epoch + 1, d_loss=f'{d_loss:.3f}', g_loss=f'{g_loss:.3f}',
                                         img_per_s=f'{len(batch) / (time.perf_counter() - started):.0f}')
                    if step % save_every_n == 0 or step == total_steps:
                        self._record_losses(losses)
                        losses = []
                        self._save(session, net, step)
                        self._save_samples(session, net, sample_z, step, events)
        except KeyboardInterrupt:
            progress.write(f"interrupted at step {step}: saving a checkpoint in {self.model_dir}")
            self._record_losses(losses)
            self._save(session, net, step)
        finally:
            progress.close()

    def _evaluate(self, session, net, judge, step, events, per_class=50):
        rng = np.random.default_rng([self.seed or 0, step])

        def generate(class_position, count):
            z = self._sample_inputs(np.full(count, class_position), rng)
            return session.run(net.samples, {net.sample_z: z})

        figures = judge.evaluate_generator(generate, per_class=per_class)
        row = {'step': step, **{name: figures[name] for name in EVALUATION_FIGURES}}
        self.evaluations.append(row)
        path = os.path.join(self.model_dir, 'evaluation.csv')
        with open(path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.evaluations)
        events.add(tf1.Summary(value=[tf1.Summary.Value(tag=f'evaluation/{name}', simple_value=figures[name])
                                      for name in EVALUATION_FIGURES]), step)

    def run_training_step(self, session, net, batch, summarize=False):
        """One D and one G update on the images at the indices `batch`: their losses, and
        the TensorBoard summary of the step if `summarize` (else None)."""
        fetches = [net.train_step, net.d_loss, net.g_loss] + ([net.summaries] if summarize else [])
        _, d_loss, g_loss, *summary = session.run(fetches, self.training_feed(net, batch))
        return d_loss, g_loss, (summary or [None])[0]

    def training_feed(self, net, batch):
        """The step's inputs: the uint8 images and class indices at `batch`, gathered from
        memory (the graph scales them and draws z), and the learning rate."""
        feed = {net.real_images_uint8: self.dataset.data[batch],
                net.learning_rate: self.learning_rate}
        if self.num_classes:
            feed[net.class_index] = self.dataset.label_indices[batch]
        return feed

    def epoch_batches(self, epoch, shuffle_seed):
        """The batches of one epoch, as index arrays into the dataset.

        A new order every epoch (the original kept one order all along), drawn from the seed
        and the epoch number, so a resumed run sees the batches an uninterrupted one would.
        """
        order = np.random.default_rng([shuffle_seed, epoch]).permutation(len(self.dataset.data))
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def _save(self, session, net, step):
        """Checkpoint both networks and their optimizers, and keep the generator's weights.

        tf.train.Saver writes the new files first and points the `checkpoint` file at them
        last (an atomic rename), so a crash mid-save leaves the previous checkpoint latest.
        """
        net.saver.save(session, os.path.join(self.model_dir, self.generator_name),
                       global_step=step, write_meta_graph=False)
        self.generator_weights = dict(zip(net.generator_variables.keys(),
                                          session.run(list(net.generator_variables.values()))))
        self._write_loss_history()

    def _record_losses(self, losses):
        """Add steps' losses to the history; an epoch's row is the mean of its steps so far."""
        if not losses:
            return
        self.step_losses = np.concatenate([self.step_losses, np.array(losses)])
        epochs = (self.step_losses[:, 0] - 1) // self.steps_per_epoch
        self.epoch_losses = np.array([self.step_losses[epochs == e, 1:].mean(axis=0)
                                      for e in np.unique(epochs)]).reshape(-1, 2)

    def _write_loss_history(self):
        with open(os.path.join(self.model_dir, 'losses.csv'), 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['step', 'd_loss', 'g_loss'])
            writer.writerows([int(step), d_loss, g_loss] for step, d_loss, g_loss in self.step_losses)

    def _read_history(self, checkpoint_step):
        """The losses and evaluations up to the checkpoint being resumed."""
        path = os.path.join(self.model_dir, 'losses.csv')
        rows = np.loadtxt(path, delimiter=',', skiprows=1, ndmin=2) if os.path.exists(path) else np.zeros((0, 3))
        self.step_losses = np.zeros((0, 3))
        self._record_losses([tuple(row) for row in rows if row[0] <= checkpoint_step])
        path = os.path.join(self.model_dir, 'evaluation.csv')
        with open(path) if os.path.exists(path) else contextlib.nullcontext([]) as f:
            self.evaluations = [{name: (int if name == 'step' else float)(value) for name, value in row.items()}
                                for row in csv.DictReader(f) if int(row['step']) <= checkpoint_step]

    # ------------------------------------------------------------- generating

    def generate_new(self, target_class=-1, rows=5, cols=5, plot=True, seed=None):
        """`rows * cols` new images (n, H, W, C) in [-1, 1].

        `target_class` is a class value: all images of that class. -1 covers the classes in
        order, one class per row, starting again from the first class when there are more
        rows than classes. An unconditional model ignores `target_class`. `seed` fixes z.
        """
        if rows < 1 or cols < 1:
            raise ValueError(f"rows and cols must be at least 1; got rows={rows}, cols={cols}")
        if target_class == -1 or not self.num_classes:
            classes = self._grid_layout(rows, cols)
        else:
            classes = np.full(rows * cols, self.class_position(target_class))
        z = self._sample_inputs(classes, np.random.default_rng(seed))
        images = self._generation_session().run(z)
        if plot:
            self.plot_images(images, cols)
        return images

    def interpolate(self, start_class, end_class, steps=50, seed=None):
        """Images (steps, H, W, C) of one fixed z while the label vector moves linearly from
        the one-hot vector of `start_class` to that of `end_class`."""
        if not self.num_classes:
            raise ValueError("an unconditional model has no classes to interpolate between")
        if steps < 2:
            raise ValueError(f"steps must be at least 2; got {steps}")
        one_hot = np.eye(self.num_classes, dtype=np.float32)
        start, end = one_hot[self.class_position(start_class)], one_hot[self.class_position(end_class)]
        weights = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        z = np.random.default_rng(seed).uniform(-1, 1, (1, self.z_dim)).astype(np.float32)
        inputs = np.concatenate([np.repeat(z, steps, axis=0), (1 - weights) * start + weights * end], axis=1)
        return self._generation_session().run(inputs)

    def class_position(self, target_class):
        """The index of a class value in `self.classes`, or a ValueError listing them."""
        for position, value in enumerate(self.classes):
            if value == target_class:
                return position
        raise ValueError(f"unknown class {target_class!r}; this model knows "
                         f"{self.classes} (or -1 for all of them)")

    def _grid_layout(self, rows, cols):
        """Class positions for a rows x cols grid: one class per row, cycling."""
        return np.repeat(np.arange(rows) % max(self.num_classes, 1), cols)

    def _sample_inputs(self, class_positions, rng):
        """Generator inputs: uniform z joined to the one-hot vectors of the classes."""
        z = rng.uniform(-1, 1, size=(len(class_positions), self.z_dim)).astype(np.float32)
        one_hot = np.eye(self.num_classes, dtype=np.float32)[class_positions] if self.num_classes \
            else np.zeros((len(class_positions), 0), np.float32)
        return np.concatenate([z, one_hot], axis=1)

    def _generation_session(self):
        if self._generation is None:
            if self.generator_weights is None:
                self._load_latest_checkpoint()
            self._generation = GeneratorSession(self)
        return self._generation

    def _load_latest_checkpoint(self):
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest is None:
            raise FileNotFoundError(f"this CGan has not been trained and {self.model_dir} holds "
                                    f"no checkpoint: call fit() first")
        self.generator_weights, self.legacy_generation = read_generator_weights(
            latest, self._generator_variable_shapes())

    def _close_generation(self):
        if self._generation is not None:
            self._generation.close()
            self._generation = None

    def _generator_variable_shapes(self):
        graph = tf.Graph()
        with graph.as_default():
            self.generator(tf1.placeholder(tf.float32, (None, self.z_dim + self.num_classes)))
        return {name: tuple(v.shape) for name, v in generator_variables(graph).items()}

    @classmethod
    def from_checkpoint(cls, ckpt_dir, classes=range(10), image_shape=(28, 28, 1), z_dim=96,
                        generator_name='generator', alpha=0.2):
        """A CGan ready for `generate_new` from the latest generator checkpoint in `ckpt_dir`.

        Reads checkpoints of this project and of the original code (generator trainable
        variables only: those generate as the original did, see `legacy_generation`).
        """
        latest = tf.train.latest_checkpoint(os.path.abspath(ckpt_dir))
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir} (looked for its 'checkpoint' file)")
        gan = cls(None, z_dim=z_dim, generator_name=generator_name, alpha=alpha,
                  classes=classes, image_shape=image_shape)
        gan.model_dir = os.path.abspath(ckpt_dir)
        gan._load_latest_checkpoint()
        return gan

    def export_saved_model(self, path):
        """The generator as a TensorFlow SavedModel (see export.py)."""
        from condgan.export import export_saved_model
        export_saved_model(self, path)

    # ------------------------------------------------------------- pickling

    def __getstate__(self):
        """Everything the generator needs, its weights included; no data, graph or session."""
        state = {k: v for k, v in self.__dict__.items() if k not in ('dataset', '_generation')}
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
        self.__dict__.update(state)
        self.dataset = None
        self._generation = None

    # ------------------------------------------------------------- pictures

    def images_grid(self, images, n_cols):
        """Images (n, H, W, C) as one uint8 grid picture, `n_cols` wide, rescaled to 0-255.

        A last row that is not full is padded with black. One channel gives (rows*H, cols*W).
        """
        n_images, height, width, channels = images.shape
        n_rows = -(-n_images // n_cols)
        low, high = images.min(), images.max()
        scaled = ((images - low) / max(high - low, 1e-12) * 255).astype(np.uint8)
        padded = np.zeros((n_rows * n_cols, height, width, channels), np.uint8)
        padded[:n_images] = scaled
        grid = (padded.reshape(n_rows, n_cols, height, width, channels)
                .transpose(0, 2, 1, 3, 4).reshape(n_rows * height, n_cols * width, channels))
        return grid[:, :, 0] if channels == 1 else grid

    def plot_images(self, images, n_cols):
        import matplotlib.pyplot as plt
        grid = self.images_grid(images, n_cols)
        plt.figure(figsize=(n_cols, -(-len(images) // n_cols)))
        plt.imshow(grid, cmap=self.cmap)
        plt.axis('off')
        plt.show()

    def show_original_images(self, n_images):
        """A grid of the first `n_images` training images."""
        self.plot_images(self.dataset.data[:n_images], int(np.ceil(np.sqrt(n_images))))

    def _save_samples(self, session, net, sample_z, step, events):
        images = session.run(net.samples, {net.sample_z: sample_z})
        path = os.path.join(self.model_dir, f'samples_{step}.png')
        save_png(self.images_grid(images, 5), path)
        events.add_png('samples', path, step)
        show_in_notebook(path)

    def _plot_losses(self):
        """losses.png: each step's losses (faint), their moving average, each epoch's mean."""
        from matplotlib.figure import Figure
        figure = Figure(figsize=(8, 4))
        axes = figure.add_subplot()
        steps = self.step_losses[:, 0]
        window = max(1, len(steps) // 50)
        epoch_ends = np.minimum(np.arange(1, len(self.epoch_losses) + 1) * self.steps_per_epoch, steps[-1])
        for column, (name, color) in enumerate([('discriminator', 'tab:blue'), ('generator', 'tab:orange')]):
            losses = self.step_losses[:, column + 1]
            axes.plot(steps, losses, color=color, alpha=0.2, linewidth=0.8)
            smoothed = np.convolve(losses, np.ones(window) / window, mode='valid')
            axes.plot(steps[window - 1:], smoothed, color=color, label=name)
            axes.plot(epoch_ends, self.epoch_losses[:, column], 'o', color=color)
        axes.set_title(f'faint: each step; line: moving mean of {window} steps; dots: epoch means',
                       fontsize=9)
        axes.set_xlabel('step')
        axes.set_ylabel('loss')
        axes.legend()
        path = os.path.join(self.model_dir, 'losses.png')
        figure.savefig(path)
        show_in_notebook(path)


# ----------------------------------------------------------------- graph containers

class TrainingGraph(types.SimpleNamespace):
    """The tensors and ops of a training graph that `fit` runs (see _build_training_graph)."""


class EventWriter:
    """TensorBoard events in a folder, or nothing at all when the folder is None."""

    def __init__(self, folder):
        self.writer = None if folder is None else tf1.summary.FileWriter(folder, tf1.get_default_graph())
        self.active = self.writer is not None

    def add(self, summary, step):
        if self.active and summary is not None:
            self.writer.add_summary(summary, step)

    def add_png(self, tag, path, step):
        if self.active:
            with open(path, 'rb') as f:
                image = tf1.Summary.Image(encoded_image_string=f.read())
            self.add(tf1.Summary(value=[tf1.Summary.Value(tag=tag, image=image)]), step)

    def close(self):
        if self.active:
            self.writer.close()


class GeneratorSession:
    """The generator alone, in its own graph and session, loaded with a CGan's weights."""

    def __init__(self, gan):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.z = tf1.placeholder(tf.float32, (None, gan.z_dim + gan.num_classes))
            self.images = gan.generator(self.z, training=gan.legacy_generation)
            variables = generator_variables(self.graph)
            check_weights(gan.generator_weights, {n: tuple(v.shape) for n, v in variables.items()})
            values = {name: tf1.placeholder(v.dtype.base_dtype, v.shape) for name, v in variables.items()}
            load = [v.assign(values[name]) for name, v in variables.items()]
            self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=session_config())
        self.session.run(load, {values[name]: gan.generator_weights[name] for name in variables})

    def run(self, z):
        return self.session.run(self.images, {self.z: z})

    def close(self):
        self.session.close()


# ----------------------------------------------------------------- layers
# Each creates its variables under the names tf.layers used, so checkpoints match the original.

def dense(x, units, name):
    kernel, bias = layer_weights(name, (x.shape[-1], units), units, x.dtype)
    return tf.matmul(x, kernel) + bias


def conv(x, filters, strides, name):
    """5x5 convolution, 'same' padding."""
    kernel, bias = layer_weights(name, (5, 5, x.shape[-1], filters), filters, x.dtype)
    return tf.nn.conv2d(x, kernel, strides, 'SAME') + bias


def conv_transpose(x, filters, strides, name):
    """5x5 transposed convolution, 'same' padding: (H, W) grows to (H*strides, W*strides)."""
    kernel, bias = layer_weights(name, (5, 5, filters, x.shape[-1]), filters, x.dtype)
    height, width = x.shape[1] * strides, x.shape[2] * strides
    output_shape = tf.stack([tf.shape(x)[0], height, width, filters])
    y = transposed_convolution(x, kernel, output_shape, strides)
    return tf.ensure_shape(y, (None, height, width, filters)) + bias


def transposed_convolution(x, kernel, output_shape, strides):
    """tf.nn.conv2d_transpose with 'same' padding, and a faster way to its kernel's gradient."""
    @tf.custom_gradient
    def convolve(x, kernel):
        def gradients(dy):  # for x TensorFlow's own, for the kernel the same sum made faster
            return (tf.nn.conv2d(dy, kernel, strides, 'SAME'),
                    transposed_convolution_kernel_gradient(x, dy, strides))
        return tf.nn.conv2d_transpose(x, kernel, output_shape, strides, 'SAME'), gradients

    return convolve(x, kernel)


def transposed_convolution_kernel_gradient(x, dy, strides):
    """The gradient of a 5x5 'same' transposed convolution's kernel [5, 5, out, in], from its
    input x [batch, H, W, in] and its output's gradient dy [batch, H*strides, W*strides, out].

    Its element [i, j, out, in] is the sum over the batch and (h, w) of
    padded_dy[batch, strides*h + i, strides*w + j, out] * x[batch, h, w, in], padded_dy being
    dy with the zeros that 'same' padding adds. TensorFlow computes this as a convolution's
    backward-weights pass, which oneDNN runs at under half its forward speed on these small
    images (bfloat16: 61 against 31 ms for the 7x7 layer at batch 32). Read with the batch
    as the channels, the same sum is a forward convolution: of the images
    padded_dy[out, H', W', batch] with the filter x[H, W, batch, in] dilated by `strides`,
    giving [out, 5, 5, in].
    """
    padding = 5 - strides  # what 'same' adds to dy for a stride-`strides` 5x5 convolution
    before, after = padding // 2, padding - padding // 2
    padded_dy = tf.pad(dy, ((0, 0), (before, after), (before, after), (0, 0)))
    gradient = tf.nn.conv2d(tf.transpose(padded_dy, (3, 1, 2, 0)), tf.transpose(x, (1, 2, 0, 3)),
                            1, 'VALID', dilations=strides)
    return tf.transpose(gradient, (1, 2, 0, 3))


def layer_weights(name, kernel_shape, units, dtype):
    """A layer's kernel (Glorot uniform: the original's Xavier) and bias, float32 variables
    read in the layer's compute dtype."""
    with tf1.variable_scope(name):
        kernel = tf1.get_variable('kernel', kernel_shape, initializer=tf1.glorot_uniform_initializer())
        bias = tf1.get_variable('bias', (units,), initializer=tf1.zeros_initializer())
    return tf.cast(kernel, dtype), tf.cast(bias, dtype)


def batch_norm(x, training, name):
    """Batch normalisation over all axes but the channels.

    In training the batch's statistics normalise and the moving statistics are updated (the
    update ops go to UPDATE_OPS, as tf.layers did); in inference the moving ones normalise.
    """
    channels = x.shape[-1]
    with tf1.variable_scope(name):
        gamma = tf1.get_variable('gamma', (channels,), initializer=tf1.ones_initializer())
        beta = tf1.get_variable('beta', (channels,), initializer=tf1.zeros_initializer())
        moving_mean = tf1.get_variable('moving_mean', (channels,), trainable=False,
                                       initializer=tf1.zeros_initializer())
        moving_variance = tf1.get_variable('moving_variance', (channels,), trainable=False,
                                           initializer=tf1.ones_initializer())
    if not training:
        y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_variance,
                                          BATCH_NORM_EPSILON, is_training=False)
        return y
    y, mean, variance = tf1.nn.fused_batch_norm(x, gamma, beta, epsilon=BATCH_NORM_EPSILON)
    for moving, batch_value in ((moving_mean, mean), (moving_variance, variance)):
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, moving.assign_sub(
            (moving - batch_value) * (1 - BATCH_NORM_MOMENTUM)))
    return y


def normalize_activate_drop(x, alpha, training, batch_norm_name):
    """Batch norm, leaky ReLU, dropout: what follows every hidden layer."""
    x = batch_norm(x, training, batch_norm_name)
    # The original's max(alpha*x, x), as one op: tf.maximum and its gradient took five
    # elementwise passes over the activations.
    x = tf.nn.leaky_relu(x, alpha)
    return drop_half(x) if training else x


def drop_half(x):
    """Dropout with keep probability one half: each unit is kept and doubled, or zeroed.

    A unit kept with probability 1/2 needs one random bit, so one 16-bit draw decides 16
    units (tf.nn.dropout draws a float per unit; its random numbers took 7% of a step).
    Every hidden layer has a multiple of 16 channels.
    """
    channels = x.shape[-1]
    draws = tf1.random_uniform(tf.concat([tf.shape(x)[:-1], [channels // 16, 1]], 0),
                               0, 2**16, tf.int32)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(draws, tf.range(16)), 1)
    return x * tf.cast(tf.reshape(bits, tf.shape(x)) * 2, x.dtype)


def conv_block(x, filters, strides, alpha, training, conv_name, batch_norm_name):
    return normalize_activate_drop(conv(x, filters, strides, conv_name), alpha, training,
                                   batch_norm_name)


def discriminator_loss(real_logits, fake_logits, smooth):
    """Real images aimed at 1 - smooth (one-sided label smoothing), fakes at 0."""
    return (sigmoid_cross_entropy(real_logits, 1.0 - smooth)
            + sigmoid_cross_entropy(fake_logits, 0.0))


def generator_loss(fake_logits):
    """The generator wants its fakes called real."""
    return sigmoid_cross_entropy(fake_logits, 1.0)


def sigmoid_cross_entropy(logits, target):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        logits=logits, labels=tf.fill(tf.shape(logits), target)))


def label_planes(one_hot, height, width):
    """One-hot labels [batch, K] repeated at every pixel: [batch, height, width, K]."""
    return tf.tile(one_hot[:, None, None, :], (1, height, width, 1))


# ----------------------------------------------------------------- helpers

def generator_variables(graph):
    """The generator's variables by checkpoint name, moving statistics included."""
    with graph.as_default():
        return {v.op.name: v for v in tf1.global_variables()
                if v.op.name.startswith('generator/') and '/Adam' not in v.op.name}


def check_weights(weights, shapes):
    """A clear error when weights do not fit the generator (other classes, z_dim or size)."""
    problems = [f"{name}: expected {shape}, found {None if name not in weights else weights[name].shape}"
                for name, shape in shapes.items()
                if name not in weights or tuple(weights[name].shape) != shape]
    if problems:
        raise ValueError("the generator weights do not fit this model (different classes, z_dim "
                         "or image shape?): " + "; ".join(problems))


def read_generator_weights(checkpoint, shapes):
    """Generator weights from a checkpoint, and whether it is the original's kind.

    The original saved trainable variables only; their moving statistics are then set to
    0 and 1 (unused: such a model generates with batch statistics, as the original did).
    """
    reader = tf.train.load_checkpoint(checkpoint)
    stored = reader.get_variable_to_shape_map()
    missing_moving = [n for n in shapes if n.endswith(('moving_mean', 'moving_variance'))
                      and n not in stored]
    weights = {name: reader.get_tensor(name) for name in shapes if name in stored}
    for name in missing_moving:
        weights[name] = (np.zeros if name.endswith('moving_mean') else np.ones)(shapes[name], np.float32)
    check_weights(weights, shapes)
    return weights, bool(missing_moving)


def restore_checkpoint(saver, session, checkpoint):
    """Restore every variable, after checking the shapes (TF would restore a resource
    variable of another shape and fail only at the first step)."""
    stored = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    with session.graph.as_default():
        problems = [f"{v.op.name}: expected {tuple(v.shape)}, found "
                    f"{tuple(stored[v.op.name]) if v.op.name in stored else None}"
                    for v in tf1.global_variables()
                    if tuple(stored.get(v.op.name, ())) != tuple(v.shape) or v.op.name not in stored]
    if problems:
        raise ValueError(f"the checkpoint {checkpoint} does not fit this model (another dataset, "
                         f"z_dim or image shape?): " + "; ".join(problems[:5]))
    saver.restore(session, checkpoint)


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt():
    """Let SIGTERM stop training the way Ctrl-C does (signals reach the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_precision():
    """'mixed_bfloat16' where training runs on a CPU that computes in bfloat16 (AVX-512 BF16
    or AMX), else 'float32'. Measured on such a CPU it trains about 1.7 times faster, with
    images as good at equal steps (see the README)."""
    if tf.config.list_physical_devices('GPU'):
        return 'float32'
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:  # not Linux: no cheap way to tell
        return 'float32'
    return 'mixed_bfloat16' if re.search(r'\b(avx512_bf16|amx_bf16)\b', flags) else 'float32'


def session_config():
    return tf1.ConfigProto(allow_soft_placement=True)


def save_png(grid, path):
    from PIL import Image
    Image.fromarray(grid).save(path)


def show_in_notebook(path):
    """Show a PNG inline when running in Jupyter; elsewhere the file is enough."""
    try:
        shell = get_ipython()  # noqa: F821 (defined only inside IPython)
    except NameError:
        return
    if type(shell).__name__ == 'ZMQInteractiveShell':
        from IPython.display import Image, display
        display(Image(filename=path))


if __name__ == '__main__':
    from condgan.recipes import generate_main
    generate_main()
