"""Training and generation speed of CGan on real MNIST, in one process.

Compares the project's training step with a "book-style" step on the same model, computed
as the original computed it: NumPy z and label planes fed through feed_dict, a D
`session.run` then a G `session.run`, float32, and the original's layer ops (tf.maximum for
the leaky ReLU, tf.nn.dropout, TensorFlow's own gradients of the transposed convolutions).
Figures are medians of --repeats timed runs of --steps steps after warm-up, the kinds of
step alternating so that a change of load hits all of them.

--variants times more settings of the project's step beside the default, so that each
change shows on its own in one run: PRECISION, then +book_layers for the original's layer
ops, +xla for XLA, +modern for the modern variant's networks.

--image-shape times other image sizes, as an image folder's model has them: the MNIST digits
resized to HxW (nearest neighbour) and, for 3 channels, gray repeated into RGB. The pixels do
not change a step's cost; the shape does. Each kind's peak memory is that of a process of its
own that builds and trains only that kind (--memory-of, run by bench.py itself).

    python bench.py --batch 32 --variants float32+book_layers float32 float32+xla [--json]
    python bench.py --image-shape 64x64x3 --variants mixed_bfloat16+modern
"""
import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from condgan import layers, model
from condgan.datasets import Dataset, load_mnist
from condgan.gan import CGan
from condgan.recipes import OneLineErrorParser
from condgan.generation import session_config
from condgan.training import build_training_graph, epoch_batches, training_feed

tf1 = tf.compat.v1


def main():
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', help='MNIST folder (default: the loaders\' usual search)')
    parser.add_argument('--batch', type=int, default=32, help='batch size (default 32)')
    parser.add_argument('--steps', type=int, default=20, help='training steps per timed run')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs of each kind')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--variants', nargs='*', default=[], metavar='PRECISION[+book_layers][+xla][+modern]',
                        help='more settings of the project\'s step to time beside the default, '
                             'e.g. float32+book_layers float32 float32+xla float32+modern')
    parser.add_argument('--generate-counts', nargs='+', type=int, default=[1, 100, 1000],
                        metavar='N', help='generate_new sizes to time (default 1 100 1000)')
    parser.add_argument('--image-shape', type=image_shape, default=(28, 28, 1), metavar='HxWxC',
                        help='the images\' height, width and channels (default 28x28x1, MNIST\'s)')
    parser.add_argument('--memory-of', metavar='KIND', help=argparse.SUPPRESS)  # one kind, for its peak memory
    parser.add_argument('--json', action='store_true', help='print one JSON object last')
    args = parser.parse_args()

    height, width, channels = args.image_shape
    images, labels = load_mnist('train', args.data_dir)
    dataset = Dataset(images, labels, width=width, height=height, channels=channels, seed=0)
    gan = CGan(dataset, batch_size=args.batch, learning_rate=0.0002, seed=0)
    variants = {name: CGan(dataset, batch_size=args.batch, learning_rate=0.0002, seed=0,
                           precision=name.split('+')[0], xla='+xla' in name,
                           variant='modern' if '+modern' in name else 'book')
                for name in args.variants}
    if args.memory_of:
        print(json.dumps(memory_alone(args.memory_of, gan, variants, args)))
        return
    figures = {'batch': args.batch, 'steps': args.steps, 'repeats': args.repeats,
               'image_shape': list(gan.image_shape),  # as the graphs were built
               'default_settings': {'precision': gan.precision, 'xla': gan.settings.xla}}
    figures.update(training_speed(gan, variants, args))
    figures['peak_rss_mb'] = peak_rss_mb()
    figures['generate_seconds'] = generation_latency(gan, args.generate_counts)
    figures['memory_mb'] = {name: memory_in_own_process(name, args) for name in figures['train_img_per_sec']}

    print(f"{height}x{width}x{channels} images, batch {args.batch}, images/s of training (median of "
          f"{args.repeats} runs of {args.steps} steps; spread = (max - min) / median), and the peak "
          f"resident memory of a process training that kind alone (before its graph was built):")
    for name, rate in figures['train_img_per_sec'].items():
        memory = figures['memory_mb'][name]
        print(f"  {name:<24} {rate:7.1f}   spread {figures['spread'][name]:.0%}   "
              f"{memory['peak']:6,} MB ({memory['before_graph']:,})")
    print(f"speedup of the default step over the book-style step: {figures['speedup']:.2f}x")
    print(f"graph ops: {figures['graph_ops']['before']} before training, {figures['graph_ops']['after']} after")
    print(f"peak resident memory: {figures['peak_rss_mb']} MB")
    step_us = 1e6 * args.batch / figures['train_img_per_sec']['default']
    print(f"preparing a batch (uint8 images and class indices gathered in memory): "
          f"{figures['batch_preparation_us']:.0f} us, {figures['batch_preparation_us'] / step_us:.3%} of a default step")
    for count, (first, warm) in figures['generate_seconds'].items():
        print(f"generate_new {count:>4} images: first call {first:.3f} s, warm {warm:.3f} s")
    if args.json:
        print(json.dumps(figures))


def image_shape(text):
    """'32x32x3' -> (32, 32, 3): an argparse type."""
    try:
        height, width, channels = (int(part) for part in text.split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxWxC, such as 32x32x3") from None
    if height < 1 or width < 1 or channels not in (1, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes and 1 or 3 channels")
    return height, width, channels


def memory_in_own_process(kind, args):
    """The resident memory, in MB, of a child bench.py that builds and trains only `kind`:
    {'before_graph': with TensorFlow and the data loaded, 'peak': after its steps}."""
    command = [sys.executable, __file__, '--memory-of', kind, '--batch', str(args.batch),
               '--steps', str(args.steps), '--warmup', str(args.warmup),
               '--image-shape', 'x'.join(map(str, args.image_shape)), '--variants', *args.variants]
    if args.data_dir:
        command += ['--data-dir', args.data_dir]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode:
        last_line = (child.stderr.strip().splitlines() or ['no message'])[-1]
        raise SystemExit(f"bench.py: measuring the memory of {kind} failed (exit status "
                         f"{child.returncode}): {last_line}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def memory_alone(kind, gan, variants, args):
    """What `memory_in_own_process` reports, measured in this process for `kind` alone."""
    before = peak_rss_mb()
    steps, sessions, _ = build_steps(gan, variants, args, kinds={kind})
    for i in range(args.warmup + args.steps):
        steps[kind](sessions[kind], i)
    return {'before_graph': before, 'peak': peak_rss_mb()}


def peak_rss_mb():
    """This process's peak resident memory in MB. Linux's VmHWM, not getrusage: a child
    started by fork and exec inherits the parent's ru_maxrss, but not its VmHWM."""
    with open('/proc/self/status') as status:
        kilobytes = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    return round(int(kilobytes) / 1024)


def training_speed(gan, variants, args):
    """Images per second of each kind of step, median over interleaved timed runs."""
    steps, sessions, nets = build_steps(gan, variants, args)
    ops_before = len(nets['default'].graph.get_operations())
    for name, step in steps.items():
        for i in range(args.warmup):
            step(sessions[name], i)
    rates = {name: [] for name in steps}
    for repeat in range(args.repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            for i in range(args.steps):
                step(sessions[name], repeat * args.steps + i)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - started))
    ops_after = len(nets['default'].graph.get_operations())
    preparation_us = batch_preparation_time(gan, nets['default'])
    generation_weights = nets['default'].generation_weights
    gan.generator_weights = dict(zip(generation_weights, sessions['default'].run(
        list(generation_weights.values()))))
    for session in sessions.values():
        session.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {'train_img_per_sec': medians,
            'speedup': medians['default'] / medians['book_style'],
            'spread': {name: (max(v) - min(v)) / medians[name] for name, v in rates.items()},
            'graph_ops': {'before': ops_before, 'after': ops_after},
            'batch_preparation_us': preparation_us}


def build_steps(gan, variants, args, kinds=None):
    """For each kind of step (all, or those in `kinds`): a function step(session, i) that runs
    training step i, and an initialized session of its graph; and the project's nets by kind."""
    def book_style():
        # The original computed in float32, whatever the project's default precision.
        with book_layers():
            book = BookStyleGraph(CGan(gan.dataset, batch_size=args.batch, learning_rate=0.0002,
                                       seed=0, precision='float32'))
        batches = iter(gan.dataset.get_batches(args.batch, rng=np.random.default_rng(0)))

        def step(session, i):
            nonlocal batches
            try:
                images, one_hot = next(batches)
            except StopIteration:
                batches = iter(gan.dataset.get_batches(args.batch, rng=np.random.default_rng(i)))
                images, one_hot = next(batches)
            book.run_step(session, images, one_hot)
        return book.graph, book.initializer, step

    def project(name, gan):
        with book_layers() if '+book_layers' in name else contextlib.nullcontext():
            net = build_training_graph(gan.config, gan.settings)
        epoch = epoch_batches(len(gan.dataset.data), args.batch, 0, 0)[:-1]  # full batches only

        def step(session, i):
            feed = training_feed(net, gan.dataset, epoch[i % len(epoch)], i, gan.learning_rate)
            session.run([net.train_step, net.d_loss, net.g_loss], feed)
        nets[name] = net
        return net.graph, net.initializer, step

    builders = {'book_style': book_style, 'default': lambda: project('default', gan),
                **{name: lambda name=name: project(name, variants[name]) for name in variants}}
    if kinds is not None and not kinds <= set(builders):
        raise SystemExit(f"bench.py: unknown kind {sorted(kinds - set(builders))}; expected one of {sorted(builders)}")
    nets, steps, sessions = {}, {}, {}
    for name, build in builders.items():
        if kinds is None or name in kinds:
            graph, initializer, steps[name] = build()
            sessions[name] = tf1.Session(graph=graph, config=session_config())
            sessions[name].run(initializer)
    return steps, sessions, nets


@contextlib.contextmanager
def book_layers():
    """Graphs built inside compute their layers with the original's ops: tf.maximum for the
    leaky ReLU, tf.nn.dropout, and TensorFlow's own gradients of the transposed convolutions."""
    def normalize_activate_drop(x, alpha, training, batch_norm_name, random_seed):
        x = layers.batch_norm(x, training, batch_norm_name)
        x = tf.maximum(alpha * x, x)
        return tf.nn.dropout(x, rate=0.5) if training else x

    def transposed_convolution(x, kernel, output_shape, strides):
        return tf.nn.conv2d_transpose(x, kernel, output_shape, strides, 'SAME')

    book = {'normalize_activate_drop': normalize_activate_drop,
            'transposed_convolution': transposed_convolution}
    project = {name: getattr(layers, name) for name in book}
    vars(layers).update(book)
    try:
        yield
    finally:
        vars(layers).update(project)


class BookStyleGraph:
    """The original's training graph, from the project's networks (with the original's
    layer ops when built inside `book_layers`): a D update op and a G update
    op, each run by its own `session.run` with every input fed from NumPy."""

    def __init__(self, gan):
        self.gan = gan
        config, (height, width, channels) = gan.config, gan.image_shape
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.input_real = tf1.placeholder(tf.float32, (None, height, width, channels))
            self.input_z = tf1.placeholder(tf.float32, (None, config.generator_input_size))
            self.labels = tf1.placeholder(tf.float32, (None, height, width, config.num_classes))
            unused_seed = tf.zeros(2, tf.int64)  # the book's layers draw with tf.nn.dropout
            fake_logits = model.label_planes_discriminator(
                config, model.generator(config, self.input_z, True, unused_seed), self.labels, unused_seed)
            real_logits = model.label_planes_discriminator(config, self.input_real, self.labels, unused_seed)
            d_loss = model.discriminator_loss(config, real_logits, fake_logits)
            g_loss = model.generator_loss(config, fake_logits)
            learning_rate = gan.learning_rate
            variables = tf1.trainable_variables()
            with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                self.d_train = tf1.train.AdamOptimizer(learning_rate, gan.beta1).minimize(
                    d_loss, var_list=[v for v in variables if v.name.startswith('discriminator/')])
                self.g_train = tf1.train.AdamOptimizer(learning_rate, gan.beta1).minimize(
                    g_loss, var_list=[v for v in variables if v.name.startswith('generator/')])
            self.initializer = tf1.global_variables_initializer()

    def run_step(self, session, images, one_hot):
        batch, (height, width, _) = len(images), self.gan.image_shape
        z = np.random.uniform(-1, 1, size=(batch, self.gan.z_dim))
        feed = {self.input_real: images * 2,
                self.input_z: np.concatenate([z, one_hot], axis=1),
                self.labels: one_hot.reshape(batch, 1, 1, -1) * np.ones((batch, height, width, 1))}
        session.run(self.d_train, feed)
        session.run(self.g_train, feed)


def batch_preparation_time(gan, net, repeats=1000):
    """Median microseconds to gather one step's feed (`training.training_feed`): what a
    prefetching input pipeline could hide."""
    batches = epoch_batches(len(gan.dataset.data), gan.batch_size, 0, 0)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        training_feed(net, gan.dataset, batches[i % len(batches)], i, gan.learning_rate)
        times.append(time.perf_counter() - started)
    return 1e6 * statistics.median(times)


def generation_latency(gan, counts, warm_repeats=3):
    """Seconds for generate_new of each size: the first call (graph and session built) and
    the median of warm calls."""
    results = {}
    for count in counts:
        gan.close()
        rows = max(r for r in range(1, int(np.sqrt(count)) + 1) if count % r == 0)
        started = time.perf_counter()
        gan.generate_new(target_class=-1, rows=rows, cols=count // rows, plot=False)
        first = time.perf_counter() - started
        warm = []
        for _ in range(warm_repeats):
            started = time.perf_counter()
            gan.generate_new(target_class=-1, rows=rows, cols=count // rows, plot=False)
            warm.append(time.perf_counter() - started)
        results[count] = (first, statistics.median(warm))
    return results


if __name__ == '__main__':
    main()
