"""Training: a few real steps on MNIST, what a run records, resuming, stopping, and the
bugs of the original training loop that we fix."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from condgan import training
from condgan.checkpoints import checkpoint_prefixes
from condgan.datasets import Dataset
from condgan.runs import RunFolderError
from condgan.training import build_training_graph, epoch_batches
from gan_helpers import ORIGINAL_GENERATOR, make_gan, trained, without_pythonpath

tf1 = tf.compat.v1


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


def test_the_training_graph_never_grows(dataset, tmp_path, monkeypatch):
    """Bug 3: the original built a new generator for every sample grid."""
    built = []

    def recorded(*args):  # the real graph, kept to count its ops once training is over
        net = build_training_graph(*args)
        built.append((net.graph, len(net.graph.get_operations())))
        return net

    monkeypatch.setattr(training, 'build_training_graph', recorded)
    gan = make_gan(dataset, tmp_path)
    gan.fit(max_steps=3, save_every_n=1, plot=False)
    assert {'samples_1.png', 'samples_2.png', 'samples_3.png'} <= set(os.listdir(gan.model_dir))
    [(graph, ops_when_built)] = built
    assert len(graph.get_operations()) == ops_when_built  # three steps, checkpoints and grids later


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
