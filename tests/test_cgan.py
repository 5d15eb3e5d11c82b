"""CGan: the graph against the SPEC, a few real training steps, generation, pickling, and a
test for each bug of the original that we fix. Data: the real MNIST in CGAN_DATA_DIR."""
import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from condgan import model
from condgan.checkpoints import CheckpointError, checkpoint_prefixes
from condgan.generation import GeneratorSession, generator_inputs
from condgan.gan import CGan
from condgan.runs import RunFolderError
from condgan.training import build_training_graph, epoch_batches
from condgan.datasets import Dataset, load_mnist

tf1 = tf.compat.v1
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# SPEC section 2: the variables tf.layers gave the original, at z_dim 96, 10 classes, 28x28x1.
ORIGINAL_GENERATOR = {
    'generator/dense/kernel': (106, 7 * 7 * 512), 'generator/dense/bias': (7 * 7 * 512,),
    'generator/conv2d_transpose/kernel': (5, 5, 256, 512), 'generator/conv2d_transpose/bias': (256,),
    'generator/conv2d_transpose_1/kernel': (5, 5, 128, 256), 'generator/conv2d_transpose_1/bias': (128,),
    'generator/conv2d_transpose_2/kernel': (5, 5, 1, 128), 'generator/conv2d_transpose_2/bias': (1,),
}
ORIGINAL_DISCRIMINATOR = {
    'discriminator/conv2d/kernel': (5, 5, 11, 32), 'discriminator/conv2d/bias': (32,),
    'discriminator/conv2d_1/kernel': (5, 5, 32, 64), 'discriminator/conv2d_1/bias': (64,),
    'discriminator/conv2d_2/kernel': (5, 5, 64, 128), 'discriminator/conv2d_2/bias': (128,),
    'discriminator/dense/kernel': (7 * 7 * 128, 1), 'discriminator/dense/bias': (1,),
}
for network, sizes in (('generator', (512, 256, 128)), ('discriminator', (32, 64, 128))):
    table = ORIGINAL_GENERATOR if network == 'generator' else ORIGINAL_DISCRIMINATOR
    for suffix, size in zip(('', '_1', '_2'), sizes):
        for name in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            table[f'{network}/batch_normalization{suffix}/{name}'] = (size,)
MOVING = ('moving_mean', 'moving_variance')


@pytest.fixture(scope='module')
def mnist():
    images, labels = load_mnist()
    return images[:200], labels[:200]


@pytest.fixture
def dataset(mnist):
    return Dataset(*mnist, channels=1, seed=0)


def make_gan(dataset, tmp_path, **options):
    options = {'batch_size': 8, 'generator_name': 'mnist', 'seed': 1, **options}
    return CGan(dataset, out_dir=str(tmp_path), **options)


def trained(dataset, tmp_path, steps=2, **options):
    gan = make_gan(dataset, tmp_path, **options)
    gan.fit(max_steps=steps, save_every_n=steps, plot=False)
    return gan


def variable_shapes(graph):
    with graph.as_default():
        return {v.op.name: tuple(v.shape) for v in tf1.global_variables()
                if v.op.name.startswith(('generator/', 'discriminator/')) and '/Adam' not in v.op.name}


def run_python(code, cwd, timeout=120):
    """Python in a new process in `cwd`, with what the install made importable (the
    repository's root files only when `cwd` is the repository)."""
    env = {**without_pythonpath(), 'TF_CPP_MIN_LOG_LEVEL': '3'}
    return subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def without_pythonpath():
    return {name: value for name, value in os.environ.items() if name != 'PYTHONPATH'}


# ------------------------------------------------------------------ the graph

def test_variables_have_the_original_names_and_shapes(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    net = build_training_graph(gan.config, gan.settings)
    assert variable_shapes(net.graph) == {**ORIGINAL_GENERATOR, **ORIGINAL_DISCRIMINATOR}
    with net.graph.as_default():
        trainable = {v.op.name: np.prod(v.shape) for v in tf1.trainable_variables()}
    assert sum(n for name, n in trainable.items() if name.startswith('generator/')) == 6_785_793
    assert sum(n for name, n in trainable.items() if name.startswith('discriminator/')) == 271_745
    assert not any(name.endswith(MOVING) for name in trainable)


def test_other_image_sizes_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (20, 32, 24, 3), np.uint8), rng.integers(0, 3, 20),
                   width=24, height=32, channels=3)
    gan = trained(data, tmp_path, steps=1, batch_size=4)
    images = gan.generate_new(target_class=2, rows=2, cols=3, plot=False)
    assert images.shape == (6, 32, 24, 3)
    assert gan.generator_weights['generator/dense/kernel'].shape == (96 + 3, 8 * 6 * 512)
    with pytest.raises(ValueError, match='multiples of 4'):
        CGan(Dataset(np.zeros((4, 30, 30), np.uint8), [0, 1, 0, 1], width=30, height=30, channels=1))


def test_losses_are_the_formulas_with_one_sided_smoothing():
    real_logits = np.array([[2.0], [-1.0], [0.5]], np.float32)
    fake_logits = np.array([[-3.0], [0.2], [1.5]], np.float32)

    def cross_entropy(logits, target):  # -t log s(x) - (1 - t) log(1 - s(x))
        sigmoid = 1 / (1 + np.exp(-logits.astype(np.float64)))
        return np.mean(-target * np.log(sigmoid) - (1 - target) * np.log(1 - sigmoid))

    with tf.Graph().as_default(), tf1.Session() as session:
        d_loss, g_loss = session.run([model.discriminator_loss(model.ModelConfig(smooth=0.1), real_logits, fake_logits),
                                      model.generator_loss(model.ModelConfig(), fake_logits)])
    assert d_loss == pytest.approx(cross_entropy(real_logits, 0.9) + cross_entropy(fake_logits, 0.0), rel=1e-5)
    assert g_loss == pytest.approx(cross_entropy(fake_logits, 1.0), rel=1e-5)


def test_dropout_keeps_each_unit_independently_with_probability_one_half():
    with tf.Graph().as_default(), tf1.Session() as session:
        x = tf1.placeholder(tf.bfloat16, (None, 4, 4, 64))
        seed = tf1.placeholder(tf.int64, (2,))
        dropped = model.drop_half(x, seed)
        gradient = tf.gradients(dropped, x, grad_ys=tf.ones_like(dropped))[0]
        ones = np.ones((256, 4, 4, 64), np.float32)
        first, gradient = session.run([tf.cast(t, tf.float32) for t in (dropped, gradient)],
                                      {x: ones, seed: (5, 1)})
        second = session.run(tf.cast(dropped, tf.float32), {x: ones, seed: (5, 2)})
        again = session.run(tf.cast(dropped, tf.float32), {x: ones, seed: (5, 1)})
        assert dropped.shape.as_list() == [None, 4, 4, 64]
    kept = first == 2
    assert np.all(kept | (first == 0))                 # kept units doubled, the others zeroed
    assert np.array_equal(gradient, first)             # the gradient flows through kept units
    assert 0.49 < kept.mean() < 0.51
    assert 0.24 < (kept[..., :-1] & kept[..., 1:]).mean() < 0.26  # neighbours independent
    for channel in range(16):                          # every bit of a draw is used
        assert 0.45 < kept[..., channel::16].mean() < 0.55
    assert 0.24 < (kept & (second == 2)).mean() < 0.26  # a new mask for every step's seed
    assert np.array_equal(first, again)                 # the same for the same seed (resume)


@pytest.mark.parametrize('strides', [1, 2])
def test_transposed_convolution_has_tensorflows_gradients(strides):
    rng = np.random.default_rng(0)
    x_values = rng.normal(size=(3, 7, 6, 24)).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as session:
        x = tf.constant(x_values)
        y = model.conv_transpose(x, 8, strides, 'conv2d_transpose')
        kernel = tf1.global_variables('conv2d_transpose/kernel')[0]
        session.run(tf1.global_variables_initializer())
        expected = tf.nn.conv2d_transpose(x, kernel, (3, 7 * strides, 6 * strides, 8), strides, 'SAME')
        dy = tf.constant(rng.normal(size=(3, 7 * strides, 6 * strides, 8)).astype(np.float32))
        ours = session.run(tf.gradients(y, [x, kernel], grad_ys=dy))
        theirs = session.run(tf.gradients(expected, [x, kernel], grad_ys=dy))
        np.testing.assert_allclose(*session.run([y, expected]), rtol=1e-5, atol=1e-5)
    for our_gradient, their_gradient in zip(ours, theirs):
        np.testing.assert_allclose(our_gradient, their_gradient, rtol=1e-4, atol=1e-4)


def test_hidden_layers_use_leaky_relu_max_alpha_x_x():
    values = np.linspace(-3, 3, 7 * 16, dtype=np.float32).reshape(1, 1, 7, 16)
    with tf.Graph().as_default(), tf1.Session() as session:
        x = tf.constant(values)
        with tf1.variable_scope('layer', reuse=tf1.AUTO_REUSE):
            activated = model.normalize_activate_drop(x, 0.2, False, 'batch_normalization', None)
            normalized = model.batch_norm(x, False, 'batch_normalization')
        session.run(tf1.global_variables_initializer())
        normalized, activated = session.run([normalized, activated])
    np.testing.assert_allclose(activated, np.maximum(0.2 * normalized, normalized), rtol=1e-6)


def test_discriminator_sees_the_label_planes(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    with tf.Graph().as_default(), tf1.Session() as session:
        images = tf1.placeholder(tf.float32, (None, 28, 28, 1))
        labels = tf1.placeholder(tf.float32, (None, 28, 28, 10))
        seed = tf1.placeholder(tf.int64, (2,))
        logits = model.label_planes_discriminator(gan.config, images, labels, seed)
        session.run(tf1.global_variables_initializer())
        batch = np.zeros((2, 28, 28, 1), np.float32)
        planes = np.zeros((2, 28, 28, 10), np.float32)
        planes[0, ..., 3] = planes[1, ..., 7] = 1
        # Dropout is random: compare the means of many passes.
        outputs = np.mean([session.run(logits, {images: batch, labels: planes, seed: (0, i)})
                           for i in range(20)], axis=0)
    assert abs(outputs[0, 0] - outputs[1, 0]) > 1e-3


# ------------------------------------------------------------------ training

def test_a_few_steps_on_real_mnist(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    gan.fit(max_steps=1, save_every_n=1, plot=False)
    first = dict(gan.generator_weights)
    history = gan.fit(max_steps=4, save_every_n=3, plot=True, resume=True)
    assert np.all(np.isfinite(gan.step_losses))
    assert gan.step_losses[:, 0].tolist() == [1, 2, 3, 4]
    assert history.shape == (1, 2) and np.allclose(history[0], gan.step_losses[:, 1:].mean(axis=0))
    changed = [name for name in first if not np.array_equal(first[name], gan.generator_weights[name])]
    assert 'generator/dense/kernel' in changed and 'generator/batch_normalization/moving_mean' in changed
    files = set(os.listdir(gan.model_dir))
    assert {'checkpoint', 'losses.csv', 'losses.png', 'samples_1.png', 'samples_3.png', 'samples_4.png'} <= files
    # The generator's output depends on the label: the same z, two classes.
    assert not np.allclose(gan.generate_new(3, 1, 4, plot=False, seed=5),
                           gan.generate_new(7, 1, 4, plot=False, seed=5), atol=1e-4)


def test_tensorboard_events_hold_losses_outputs_and_samples(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    gan.fit(max_steps=4, save_every_n=2, plot=False, tensorboard=True)
    events = [name for name in os.listdir(gan.model_dir) if name.startswith('events.out.tfevents')]
    assert len(events) == 1
    tags = {}
    for event in tf1.train.summary_iterator(os.path.join(gan.model_dir, events[0])):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(event.step)
    assert tags['loss/discriminator'] == tags['loss/generator'] == [1, 2, 3, 4]
    assert tags['discriminator_output/real'] == tags['discriminator_output/fake'] == [1, 2, 3, 4]
    assert tags['samples'] == [2, 4]


def test_evaluation_during_training_is_recorded(dataset, tmp_path):
    def evaluation(generate, per_class):  # what evaluate.Judge.evaluate_generator returns
        images = generate(3, per_class)
        assert images.shape == (per_class, 28, 28, 1)
        return {'conditional_accuracy': 0.5, 'frechet_distance': float(np.abs(images).mean()) + 1,
                'diversity_ratio': 1.0}

    gan = make_gan(dataset, tmp_path)
    gan.fit(max_steps=2, save_every_n=2, plot=False, tensorboard=True, evaluation=evaluation, eval_every=2)
    assert [row['step'] for row in gan.evaluations] == [2]
    figures = gan.evaluations[0]
    assert 0 <= figures['conditional_accuracy'] <= 1 and figures['frechet_distance'] > 0
    gan.fit(max_steps=3, save_every_n=1, plot=False, evaluation=evaluation, eval_every=1, resume=True)
    rows = (tmp_path / 'mnist' / 'evaluation.csv').read_text().splitlines()
    assert rows[0] == 'step,conditional_accuracy,frechet_distance,diversity_ratio'
    assert [row.split(',')[0] for row in rows[1:]] == ['2', '3']


def test_a_last_partial_batch_trains(mnist, tmp_path):
    """Bug 1: the original reshaped the label planes with the configured batch size."""
    data = Dataset(mnist[0][:20], mnist[1][:20], channels=1)
    gan = make_gan(data, tmp_path, epochs=2)
    history = gan.fit(save_every_n=100, plot=False)
    assert gan.step_losses[:, 0].tolist() == [1, 2, 3, 4, 5, 6]  # 8 + 8 + 4, twice
    assert history.shape == (2, 2)


def test_epoch_losses_are_the_means_of_their_steps(mnist, tmp_path):
    """Bug 7: the original's epoch losses came from one batch inside a bare except."""
    data = Dataset(mnist[0][:16], mnist[1][:16], channels=1)
    history = make_gan(data, tmp_path, epochs=3).fit(save_every_n=100, plot=False)
    steps = np.loadtxt(tmp_path / 'mnist' / 'losses.csv', delimiter=',', skiprows=1)
    assert steps.shape == (6, 3)
    assert np.allclose(history, steps[:, 1:].reshape(3, 2, 2).mean(axis=1))


def test_every_epoch_has_a_new_order(dataset, tmp_path):
    """Bug 8: the original never reshuffled."""
    first, second = (np.concatenate(epoch_batches(len(dataset.data), 8, 3, epoch)) for epoch in (0, 1))
    assert sorted(first) == sorted(second) == list(range(len(dataset.data)))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, np.concatenate(epoch_batches(len(dataset.data), 8, 3, 0)))


def test_the_learning_rate_is_used(dataset, tmp_path):
    """Bug 4: the original fed a learning-rate placeholder that nothing read."""
    def kernel_after(steps, learning_rate, name):
        gan = make_gan(dataset, tmp_path, generator_name=name)
        gan.fit(learning_rate=learning_rate, max_steps=steps, save_every_n=steps, plot=False)
        return gan.generator_weights['generator/dense/kernel']

    assert np.array_equal(kernel_after(1, 0.0, 'a'), kernel_after(3, 0.0, 'b'))
    assert not np.array_equal(kernel_after(1, 0.001, 'c'), kernel_after(3, 0.001, 'd'))


def test_a_seed_makes_training_repeatable(dataset, tmp_path):
    first = trained(dataset, tmp_path, generator_name='a', seed=7).generator_weights
    second = trained(dataset, tmp_path, generator_name='b', seed=7).generator_weights
    other = trained(dataset, tmp_path, generator_name='c', seed=8).generator_weights
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not np.array_equal(first['generator/dense/kernel'], other['generator/dense/kernel'])


@pytest.mark.parametrize('precision', ['mixed_bfloat16', 'mixed_float16'])  # float16: the GPU option
def test_mixed_precision_keeps_float32_weights(dataset, tmp_path, precision):
    # One step: this CPU has no bfloat16 instructions, so TensorFlow emulates them, slowly.
    gan = trained(dataset, tmp_path, steps=1, precision=precision)
    assert np.all(np.isfinite(gan.step_losses))
    reader = tf.train.load_checkpoint(checkpoint_prefixes(gan.model_dir)[0])
    dtypes = reader.get_variable_to_dtype_map()
    assert {dtypes[name] for name in ORIGINAL_GENERATOR} == {tf.float32}
    images = gan.generate_new(target_class=3, rows=2, cols=2, plot=False)
    assert images.dtype == np.float32 and np.all(np.abs(images) <= 1)
    with pytest.raises(ValueError, match="precision must be one of .*'float32'.*; got 'half'"):
        make_gan(dataset, tmp_path, precision='half')


def test_the_training_graph_never_grows(dataset, tmp_path):
    """Bug 3: the original built a new generator for every sample grid."""
    gan = make_gan(dataset, tmp_path)
    assert build_training_graph(gan.config, gan.settings).graph.finalized  # adding an op would raise
    gan.fit(max_steps=3, save_every_n=1, plot=False)
    assert {'samples_1.png', 'samples_2.png', 'samples_3.png'} <= set(os.listdir(gan.model_dir))


def test_resume_continues_the_step_count(dataset, tmp_path):
    gan = trained(dataset, tmp_path, steps=2)
    with pytest.raises(RunFolderError, match='fit\\(resume=True\\)'):
        make_gan(dataset, tmp_path).fit(max_steps=2, plot=False)
    again = make_gan(dataset, tmp_path)
    again.fit(max_steps=5, save_every_n=5, resume=True, plot=False)
    assert again.step_losses[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert np.array_equal(again.step_losses[:2], gan.step_losses)
    assert checkpoint_prefixes(gan.model_dir)[0].endswith('mnist-5')
    # A folder without a checkpoint holds no training to lose: resume starts it afresh.
    assert make_gan(dataset, tmp_path, generator_name='new').fit(resume=True, max_steps=1, plot=False).shape == (1, 2)


def test_a_run_recorded_before_the_variants_resumes_as_the_book(dataset, tmp_path):
    trained(dataset, tmp_path, steps=1)
    path = tmp_path / 'mnist' / 'config.json'
    record = json.loads(path.read_text())
    del record['model']['variant']  # as a run of the version before the modern variant
    path.write_text(json.dumps(record))
    make_gan(dataset, tmp_path).fit(max_steps=2, save_every_n=2, resume=True, plot=False)
    with pytest.raises(RunFolderError, match="variant 'book' -> 'modern'"):
        make_gan(dataset, tmp_path, variant='modern').fit(max_steps=3, resume=True, plot=False)


def test_resume_from_another_model_is_a_clear_error(dataset, tmp_path):
    trained(dataset, tmp_path, steps=1)
    bigger = make_gan(dataset, tmp_path, z_dim=10)
    with pytest.raises(RunFolderError, match='other settings; resuming must keep them: z_dim 96 -> 10'):
        bigger.fit(max_steps=2, resume=True, plot=False)
    os.remove(tmp_path / 'mnist' / 'config.json')  # as in a run of the first version
    with pytest.raises(ValueError, match='does not fit this model'):
        bigger.fit(max_steps=2, resume=True, plot=False)


def test_divergence_stops_with_the_step_and_keeps_the_good_checkpoint(dataset, tmp_path):
    gan = trained(dataset, tmp_path, steps=2)
    with pytest.raises(FloatingPointError, match=r'diverged at step 3 \(D loss .*, G loss nan\); the newest checkpoint, mnist-2, is the last good one'):
        gan.fit(learning_rate=1e30, max_steps=10, save_every_n=1, resume=True, plot=False)
    assert checkpoint_prefixes(gan.model_dir)[0].endswith('mnist-2')
    assert gan.fit(max_steps=3, save_every_n=1, resume=True, plot=False).shape == (1, 2)


@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_returns(tmp_path, stop_signal):
    script = f"""
import signal
# As in a terminal: a background job (CI may be one) starts with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
from condgan.datasets import Dataset, load_mnist
from condgan.gan import CGan
images, labels = load_mnist()
gan = CGan(Dataset(images[:64], labels[:64], channels=1), batch_size=8, epochs=1000,
           generator_name='mnist', out_dir={str(tmp_path)!r})
gan.fit(save_every_n=100000, plot=False)
print('returned after', len(gan.step_losses), 'steps')
"""
    env = {**without_pythonpath(), 'TF_CPP_MIN_LOG_LEVEL': '3'}
    with open(tmp_path / 'stderr', 'w') as stderr, subprocess.Popen(
            [sys.executable, '-c', script], env=env, stdout=subprocess.PIPE, stderr=stderr,
            text=True) as child:
        try:
            deadline = time.monotonic() + 300  # a loaded machine takes a while to import TF
            while 'd_loss' not in (tmp_path / 'stderr').read_text():
                assert time.monotonic() < deadline and child.poll() is None, 'training never started'
                time.sleep(0.2)
            child.send_signal(stop_signal)
            output, _ = child.communicate(timeout=300)
        finally:
            child.kill()  # a child that outlives a failed test would train for hours
    assert child.returncode == 0, (tmp_path / 'stderr').read_text()[-2000:]
    steps = int(output.split('returned after')[1].split()[0])
    assert steps >= 1
    newest = checkpoint_prefixes(tmp_path / 'mnist')[0]
    assert newest.endswith(f'mnist-{steps}')
    assert tf.train.load_checkpoint(newest).get_tensor('global_step') == steps  # exactly the steps counted
    # Said on stderr, beside the progress bar: stdout is the program's own output.
    said = 'interrupted' if stop_signal == signal.SIGINT else 'stopped by SIGTERM'
    assert f'{said} at step {steps}: saving a checkpoint' in (tmp_path / 'stderr').read_text()
    assert said not in output


def test_an_unlabeled_dataset_trains_a_plain_dcgan(mnist, tmp_path):
    gan = trained(Dataset(mnist[0][:32], channels=1), tmp_path, steps=1)
    assert gan.generator_weights['generator/dense/kernel'].shape == (96, 7 * 7 * 512)
    assert gan.generate_new(target_class=8, rows=2, cols=2, plot=False).shape == (4, 28, 28, 1)


# ------------------------------------------------------------------ generating

def test_generate_new_shapes_range_and_errors(dataset, tmp_path):
    gan = trained(dataset, tmp_path, steps=1)
    images = gan.generate_new(target_class=8, rows=10, cols=10, plot=False)
    assert images.shape == (100, 28, 28, 1)
    assert images.min() >= -1 and images.max() <= 1
    assert gan.generate_new(target_class=8, rows=1, cols=1, plot=False).shape == (1, 28, 28, 1)
    with pytest.raises(ValueError, match=r'unknown class 10; this model knows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 \(or -1'):
        gan.generate_new(target_class=10, plot=False)
    with pytest.raises(ValueError, match='rows and cols must be at least 1'):
        gan.generate_new(rows=0, plot=False)
    with pytest.raises(CheckpointError, match='call fit'):
        make_gan(dataset, tmp_path, generator_name='untrained').generate_new(plot=False)


def test_all_classes_grid_has_one_class_per_row(mnist, tmp_path):
    """Bug 2: the original indexed the grid wrongly when rows != cols, and failed with more
    columns than classes."""
    data = Dataset(mnist[0][:30], mnist[1][:30] % 3, channels=1)
    gan = trained(data, tmp_path, steps=1)
    grid = gan.generate_new(target_class=-1, rows=5, cols=7, plot=False, seed=11)
    assert grid.shape == (35, 28, 28, 1)
    for row, target in enumerate([0, 1, 2, 0, 1]):  # classes cycle over the rows
        same_z = gan.generate_new(target_class=target, rows=5, cols=7, plot=False, seed=11)
        assert np.allclose(grid[row * 7:(row + 1) * 7], same_z[row * 7:(row + 1) * 7], atol=1e-5)
        assert not np.allclose(grid[row * 7:(row + 1) * 7], gan.generate_new(
            target_class=(target + 1) % 3, rows=5, cols=7, plot=False, seed=11)[row * 7:(row + 1) * 7], atol=1e-4)


def test_generation_uses_the_saved_moving_statistics(dataset, tmp_path):
    """Bug 6: the original never saved the moving statistics; ours generate with them, so an
    image depends on its z and class only, not on the batch around it."""
    gan = trained(dataset, tmp_path, steps=2)
    reader = tf.train.load_checkpoint(checkpoint_prefixes(gan.model_dir)[0])
    moving = [name for name in ORIGINAL_GENERATOR if name.endswith(MOVING)]
    assert all(reader.has_tensor(name) for name in moving)
    assert not np.allclose(reader.get_tensor('generator/batch_normalization/moving_mean'), 0)
    many = gan.generate_new(target_class=4, rows=4, cols=4, plot=False, seed=2)
    alone = gan.generate_new(target_class=4, rows=1, cols=1, plot=False, seed=2)
    assert np.allclose(many[0], alone[0], atol=1e-5)


def test_interpolate_moves_from_one_class_to_another(dataset, tmp_path):
    gan = trained(dataset, tmp_path, steps=1)
    frames = gan.interpolate(1, 7, steps=6, seed=4)
    assert frames.shape == (6, 28, 28, 1)
    assert np.allclose(frames[0], gan.generate_new(1, 1, 1, plot=False, seed=4)[0], atol=1e-5)
    assert np.allclose(frames[-1], gan.generate_new(7, 1, 1, plot=False, seed=4)[0], atol=1e-5)
    with pytest.raises(ValueError, match='unknown class 12'):
        gan.interpolate(1, 12)


# ------------------------------------------------------------------ checkpoints of the original

def write_original_checkpoint(folder, name='generator'):
    """A generator checkpoint as the original wrote it: trainable variables only."""
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(n, shape, initializer=tf1.random_normal_initializer(0, 0.05))
                     for n, shape in ORIGINAL_GENERATOR.items() if not n.endswith(MOVING)]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver(var_list=variables).save(session, os.path.join(folder, name), global_step=1000)
            return {v.op.name: value for v, value in zip(variables, session.run(variables))}


def test_from_checkpoint_reads_an_original_checkpoint(tmp_path):
    written = write_original_checkpoint(str(tmp_path))
    gan = CGan.from_checkpoint(str(tmp_path))
    assert gan.legacy_generation
    assert all(np.array_equal(gan.generator_weights[n], value) for n, value in written.items())
    images = gan.generate_new(target_class=8, rows=3, cols=3, plot=False)
    assert images.shape == (9, 28, 28, 1) and np.all(np.abs(images) <= 1)
    with pytest.raises(ValueError, match='generator/dense/kernel: expected \\(101, 25088\\)'):
        CGan.from_checkpoint(str(tmp_path), classes=range(5))
    with pytest.raises(CheckpointError, match='no checkpoint'):
        CGan.from_checkpoint(str(tmp_path / 'nowhere'))


def test_the_originals_restore_reads_our_model_folder(dataset, tmp_path):
    """The original's generate_new: a Saver over the generator's trainable variables,
    restored from tf.train.latest_checkpoint of the folder."""
    gan = trained(dataset, tmp_path, steps=1)
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(n, shape) for n, shape in ORIGINAL_GENERATOR.items()
                     if not n.endswith(MOVING)]
        with tf1.Session() as session:
            tf1.train.Saver(var_list=variables).restore(session, tf.train.latest_checkpoint(gan.model_dir))
            restored = dict(zip([v.op.name for v in variables], session.run(variables)))
    assert all(np.array_equal(value, gan.generator_weights[n]) for n, value in restored.items())
    ours = CGan.from_checkpoint(gan.model_dir, generator_name='mnist')
    assert not ours.legacy_generation


# ------------------------------------------------------------------ pickling

def test_pickle_generates_in_a_new_process_elsewhere(dataset, tmp_path):
    """Bug 5: the original's pickle needed the training folder as the current directory and
    could not be pickled after generate_new."""
    gan = trained(dataset, tmp_path, steps=1)
    before = gan.generate_new(target_class=8, rows=2, cols=2, plot=False, seed=3)
    path = tmp_path / 'mnist.pkl'
    with open(path, 'wb') as f:
        pickle.dump(gan, f)
    assert len(path.read_bytes()) < 40e6  # weights, not the training images
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.rename(gan.model_dir, tmp_path / 'moved')  # no model folder to fall back on
    result = run_python(f"""
import pickle, numpy as np
gan = pickle.load(open({str(path)!r}, 'rb'))
images = gan.generate_new(target_class=8, rows=10, cols=10, plot=False)
print(images.shape, images.min() >= -1, images.max() <= 1)
np.save('same.npy', gan.generate_new(target_class=8, rows=2, cols=2, plot=False, seed=3))
pickle.dumps(gan)
""", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == '(100, 28, 28, 1) True True'
    assert np.allclose(np.load(elsewhere / 'same.npy'), before, atol=1e-5)


def test_an_incompatible_pickle_is_a_clear_error(dataset, tmp_path):
    state = make_gan(dataset, tmp_path).__getstate__()
    state['format'] = 0
    gan = CGan.__new__(CGan)
    with pytest.raises(ValueError, match='another version of cgan'):
        gan.__setstate__(state)


def test_an_unpickled_gan_explains_it_cannot_train(dataset, tmp_path):
    gan = pickle.loads(pickle.dumps(trained(dataset, tmp_path, steps=1)))
    with pytest.raises(ValueError, match='has no dataset'):
        gan.fit(plot=False)


def test_images_grid_pads_a_last_short_row(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    images = np.linspace(-1, 1, 5 * 4 * 4).reshape(5, 4, 4, 1)
    grid = gan.images_grid(images, 3)
    assert grid.shape == (8, 12) and grid.dtype == np.uint8
    assert grid.max() == 255 and np.all(grid[4:, 8:] == 0)


def test_a_pickle_of_the_first_version_still_generates_the_same_images(tmp_path):
    """tests/data/cgan_format1.pkl.gz was written by the first version's code (its class was
    `cgan.CGan`, format 1): an 8x8 model of classes 3, 5, 7, with the images it generated."""
    data = os.path.join(REPO, 'tests', 'data')
    with gzip.open(os.path.join(data, 'cgan_format1.pkl.gz')) as f:
        (tmp_path / 'old.pkl').write_bytes(f.read())
    np.save(tmp_path / 'expected.npy', np.load(os.path.join(data, 'cgan_format1_class5_seed0.npy')))
    check = """
import numpy as np
images = gan.generate_new(target_class=5, rows=2, cols=3, plot=False, seed=0)
assert np.allclose(images, np.load('{folder}/expected.npy'), atol=1e-5), abs(images - np.load('{folder}/expected.npy')).max()
print(gan.classes, gan.image_shape)
"""
    # The book's way, from the repository (its cgan.py), and condgan's loader from anywhere.
    for cwd, load in ((REPO, "import pickle; gan = pickle.load(open('{folder}/old.pkl', 'rb'))"),
                      (tmp_path, "from condgan.gan import load; gan = load('{folder}/old.pkl')")):
        result = run_python((load + check).format(folder=tmp_path), cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == '[3, 5, 7] (8, 8, 1)'


# ------------------------------------------------------------------ the modern variant

MODERN = model.ModelConfig(variant='modern')


def test_the_modern_variant_has_its_own_networks(dataset, tmp_path):
    net = build_training_graph(MODERN, make_gan(dataset, tmp_path).settings)
    shapes = variable_shapes(net.graph)
    assert shapes['generator/dense/kernel'] == (106, 7 * 7 * 256)
    assert shapes['generator/conv2d_transpose_1/kernel'] == (5, 5, 64, 128)
    # The image alone goes in (no label planes); the class meets its features at the end.
    assert shapes['discriminator/conv2d/kernel'] == (5, 5, 1, 64)
    assert shapes['discriminator/embedding/kernel'] == (10, 7 * 7 * 128)
    assert not any(name.startswith('discriminator/batch_normalization') for name in shapes)
    with pytest.raises(ValueError, match="variant must be one of book, modern; got 'new'"):
        model.ModelConfig(variant='new')


def test_fit_trains_each_variant_with_its_own_optimiser_settings(dataset, tmp_path):
    book = trained(dataset, tmp_path / 'book', steps=1)
    modern = trained(dataset, tmp_path / 'modern', steps=1, variant='modern')
    assert (book.learning_rate, book.beta1) == (0.0002, 0.35)
    assert (modern.learning_rate, modern.beta1) == (0.0002, 0.5)
    recorded = json.loads((tmp_path / 'modern' / 'mnist' / 'config.json').read_text())
    assert recorded['training']['beta1'] == 0.5
    chosen = make_gan(dataset, tmp_path / 'chosen', variant='modern')
    chosen.fit(learning_rate=0.001, beta1=0.2, max_steps=1, plot=False)
    assert (chosen.learning_rate, chosen.beta1) == (0.001, 0.2)


def test_spectral_normalisation_divides_by_the_largest_singular_value():
    kernel_value = np.random.default_rng(0).normal(size=(5, 5, 3, 8)).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as session:
        kernel = tf1.get_variable('kernel', initializer=kernel_value)
        normalized = model.spectral_normalized(kernel, update_singular_vector=True)
        update = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        session.run(tf1.global_variables_initializer())
        for _ in range(50):  # one power-iteration step each, as one a training step
            session.run(update)
        result = session.run(normalized)
    singular_values = np.linalg.svd(result.reshape(-1, 8), compute_uv=False)
    assert singular_values[0] == pytest.approx(1, abs=1e-3)
    np.testing.assert_allclose(result * np.linalg.svd(kernel_value.reshape(-1, 8), compute_uv=False)[0],
                               kernel_value, rtol=1e-3)


def test_the_projection_discriminator_judges_the_class_without_randomness():
    with tf.Graph().as_default(), tf1.Session() as session:
        images = tf1.placeholder(tf.float32, (None, 28, 28, 1))
        one_hot = tf1.placeholder(tf.float32, (None, 10))
        seed = tf1.placeholder(tf.int64, (2,))
        logits = model.discriminator(MODERN, images, one_hot, seed)
        session.run(tf1.global_variables_initializer())
        batch = np.random.default_rng(0).uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
        same_images = np.repeat(batch[:1], 2, axis=0)
        classes = np.eye(10, dtype=np.float32)[[3, 7]]
        first, again = (session.run(logits, {images: same_images, one_hot: classes, seed: s})
                        for s in ((0, 1), (0, 2)))
    np.testing.assert_array_equal(first, again)  # no dropout, no batch statistics
    assert abs(first[0, 0] - first[1, 0]) > 1e-4  # the same image, another class


def test_the_modern_losses_are_the_hinge_loss():
    real_logits = np.array([[2.0], [-1.0], [0.5]], np.float32)
    fake_logits = np.array([[-3.0], [0.2], [1.5]], np.float32)
    with tf.Graph().as_default(), tf1.Session() as session:
        d_loss, g_loss = session.run([model.discriminator_loss(MODERN, real_logits, fake_logits),
                                      model.generator_loss(MODERN, fake_logits)])
    assert d_loss == pytest.approx(np.mean(np.maximum(0, 1 - real_logits)) + np.mean(np.maximum(0, 1 + fake_logits)))
    assert g_loss == pytest.approx(-np.mean(fake_logits))


@pytest.mark.parametrize('variant', ['book', 'modern'])
def test_generation_is_as_bright_as_training_from_the_first_steps(dataset, tmp_path, variant):
    """The moving statistics are measured afresh at every save: after 2 steps the images of
    inference mode already look like those the generator draws in training (before, the
    running averages still sat near 0 and 1 and the grids came out near-black)."""
    gan = trained(dataset, tmp_path, steps=2, variant=variant)
    z = generator_inputs(gan.config, np.arange(500) % 10, np.random.default_rng(0))
    inference = GeneratorSession(gan.config, gan.generator_weights)
    as_in_training = GeneratorSession(gan.config, gan.generator_weights, legacy=True)
    drawn, trained_like = inference.run(z), as_in_training.run(z)
    assert abs(drawn.mean() - trained_like.mean()) < 0.05
    if variant == 'modern':  # the book's dropout adds contrast in training, so only the mean
        assert abs(drawn.std() - trained_like.std()) < 0.05
