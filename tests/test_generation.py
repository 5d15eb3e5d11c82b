"""Generating from a trained CGan: shapes, the all-classes grid, the moving statistics,
interpolation."""
import numpy as np
import pytest
import tensorflow as tf

from condgan.checkpoints import CheckpointError, checkpoint_prefixes
from condgan.datasets import Dataset
from condgan.generation import GeneratorSession, generator_inputs
from gan_helpers import MOVING, ORIGINAL_GENERATOR, make_gan, trained


def test_generate_new_shapes_range_and_errors(dataset, tmp_path):
    gan = trained(dataset, tmp_path, steps=1)
    images = gan.generate_new(target_class=8, rows=10, cols=10, plot=False)
    assert images.shape == (100, 28, 28, 1)
    assert images.min() >= -1 and images.max() <= 1
    assert gan.generate_new(target_class=8, rows=1, cols=1, plot=False).shape == (1, 28, 28, 1)
    with pytest.raises(ValueError, match=r'unknown class 10; this model knows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 \(or -1'):
        gan.generate_new(target_class=10, plot=False)
    with pytest.raises(ValueError, match='rows must be at least 1; got 0'):
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


def test_images_grid_pads_a_last_short_row(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    images = np.linspace(-1, 1, 5 * 4 * 4).reshape(5, 4, 4, 1)
    grid = gan.images_grid(images, 3)
    assert grid.shape == (8, 12) and grid.dtype == np.uint8
    assert grid.max() == 255 and np.all(grid[4:, 8:] == 0)


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
