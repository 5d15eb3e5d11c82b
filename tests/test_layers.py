"""The layers against TensorFlow's own: dropout, the transposed convolution's gradients,
the leaky ReLU, spectral normalisation."""
import numpy as np
import pytest
import tensorflow as tf

from condgan import layers

tf1 = tf.compat.v1


def test_dropout_keeps_each_unit_independently_with_probability_one_half():
    with tf.Graph().as_default(), tf1.Session() as session:
        x = tf1.placeholder(tf.bfloat16, (None, 4, 4, 64))
        seed = tf1.placeholder(tf.int64, (2,))
        dropped = layers.drop_half(x, seed)
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
        y = layers.conv_transpose(x, 8, strides, 'conv2d_transpose')
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
            activated = layers.normalize_activate_drop(x, 0.2, False, 'batch_normalization', None)
            normalized = layers.batch_norm(x, False, 'batch_normalization')
        session.run(tf1.global_variables_initializer())
        normalized, activated = session.run([normalized, activated])
    np.testing.assert_allclose(activated, np.maximum(0.2 * normalized, normalized), rtol=1e-6)


def test_spectral_normalisation_divides_by_the_largest_singular_value():
    kernel_value = np.random.default_rng(0).normal(size=(5, 5, 3, 8)).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as session:
        kernel = tf1.get_variable('kernel', initializer=kernel_value)
        normalized = layers.spectral_normalized(kernel, update_singular_vector=True)
        update = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        session.run(tf1.global_variables_initializer())
        for _ in range(50):  # one power-iteration step each, as one a training step
            session.run(update)
        result = session.run(normalized)
    singular_values = np.linalg.svd(result.reshape(-1, 8), compute_uv=False)
    assert singular_values[0] == pytest.approx(1, abs=1e-3)
    np.testing.assert_allclose(result * np.linalg.svd(kernel_value.reshape(-1, 8), compute_uv=False)[0],
                               kernel_value, rtol=1e-3)
