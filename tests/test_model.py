"""The networks against the SPEC: variable names and shapes, losses, both variants."""
import numpy as np
import pytest
import tensorflow as tf

from condgan import model
from condgan.datasets import Dataset
from condgan.gan import CGan
from condgan.training import build_training_graph
from gan_helpers import (MOVING, ORIGINAL_DISCRIMINATOR, ORIGINAL_GENERATOR, make_gan, trained,
                         variable_shapes)

tf1 = tf.compat.v1


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


def test_discriminator_sees_the_label_planes(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path)
    with tf.Graph().as_default(), tf1.Session() as session:
        images = tf1.placeholder(tf.float32, (None, 28, 28, 1))
        labels = tf1.placeholder(tf.float32, (None, 28, 28, 10))
        seed = tf1.placeholder(tf.int64, (2,))
        logits = model.label_planes_discriminator(gan.config, images, labels, seed)
        session.run(tf1.global_variables_initializer())
        batch = np.zeros((2, 28, 28, 1), np.float32)

        def logits_of(classes):  # the same images and dropout masks, the planes of `classes`
            planes = np.zeros((2, 28, 28, 10), np.float32)
            planes[[0, 1], :, :, classes] = 1
            return session.run(logits, {images: batch, labels: planes, seed: (0, 1)})

        first, again, other = logits_of([3, 7]), logits_of([3, 7]), logits_of([3, 8])
    np.testing.assert_array_equal(first, again)  # nothing but the planes differs between passes
    assert not np.allclose(first[1], other[1], rtol=0, atol=1e-4)  # another class, another logit


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
    with pytest.raises(ValueError, match="variant must be one of 'book', 'modern'; got 'new'"):
        model.ModelConfig(variant='new')


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
