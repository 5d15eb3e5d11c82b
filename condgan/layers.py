"""The layers of both networks, and the work that makes them fast on a CPU.

Each layer creates its variables under the names `tf.layers` gave them in the original
(`conv2d/kernel`, `batch_normalization_1/moving_mean`, ...), so checkpoints move between the
original and this. The `tf.compat.v1.layers` API itself needs the legacy Keras package on
TF 2.21, so the layers are written from `tf.compat.v1.get_variable` and `tf.nn`.

What is here for speed, each measured by bench.py: the kernel gradient of the transposed
convolution as a forward convolution, dropout from one random bit a unit, and the leaky
ReLU as one op. Dropout masks are stateless, seeded from the step and the layer's name, so
a resumed run draws what an uninterrupted one would.
"""
import re

import tensorflow as tf

tf1 = tf.compat.v1

BATCH_NORM_MOMENTUM = 0.99  # tf.layers.batch_normalization's defaults
BATCH_NORM_EPSILON = 1e-3
# Training-mode batch norm puts (moving_mean, batch mean, moving_variance, batch variance)
# here, so that the moving statistics can be set to those of a large batch (see training.py).
BATCH_STATISTICS = 'batch_statistics'


def dense(x, units, name, **normalization):
    kernel, bias = layer_weights(name, (x.shape[-1], units), units, x.dtype, **normalization)
    return tf.matmul(x, kernel) + bias


def conv(x, filters, strides, name, **normalization):
    """5x5 convolution, 'same' padding."""
    kernel, bias = layer_weights(name, (5, 5, x.shape[-1], filters), filters, x.dtype, **normalization)
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


def layer_weights(name, kernel_shape, units, dtype, normalized=False, update_singular_vector=False):
    """A layer's kernel (Glorot uniform: the original's Xavier) and bias, float32 variables
    read in the layer's compute dtype. `normalized`: the kernel spectrally normalised."""
    with tf1.variable_scope(name):
        kernel = tf1.get_variable('kernel', kernel_shape, initializer=tf1.glorot_uniform_initializer())
        bias = tf1.get_variable('bias', (units,), initializer=tf1.zeros_initializer())
        if normalized:
            kernel = spectral_normalized(kernel, update_singular_vector)
    return tf.cast(kernel, dtype), tf.cast(bias, dtype)


def spectral_normalized(kernel, update_singular_vector):
    """The kernel divided by its largest singular value, as a matrix [inputs, units]
    (Miyato et al., 2018): each layer then stretches no input by more than 1, which keeps the
    discriminator smooth and its gradients useful to the generator.

    The singular value comes from one step of power iteration a training step, from the
    singular vector kept in a variable (so it is in the checkpoint, and a resumed run goes on
    exactly). `update_singular_vector`: this use of the layer moves that vector on (one use a
    step does; the update goes to UPDATE_OPS).
    """
    matrix = tf.reshape(kernel, (-1, kernel.shape[-1]))                          # [inputs, units]
    singular_vector = tf1.get_variable('singular_vector', (1, matrix.shape[1]), trainable=False,
                                       initializer=tf1.random_normal_initializer())  # [1, units]
    left = tf.math.l2_normalize(tf.matmul(singular_vector, matrix, transpose_b=True))  # [1, inputs]
    right = tf.math.l2_normalize(tf.matmul(left, matrix))                        # [1, units]
    left, right = tf.stop_gradient(left), tf.stop_gradient(right)
    if update_singular_vector:
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, singular_vector.assign(right))
    return kernel / tf.reduce_sum(tf.matmul(left, matrix) * right)


def batch_norm(x, training, name, momentum=BATCH_NORM_MOMENTUM):
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
    tf1.add_to_collection(BATCH_STATISTICS, (moving_mean, mean, moving_variance, variance))
    for moving, batch_value in ((moving_mean, mean), (moving_variance, variance)):
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, moving.assign_sub(
            (moving - batch_value) * (1 - momentum)))
    return y


def normalize_activate_drop(x, alpha, training, batch_norm_name, random_seed):
    """Batch norm, leaky ReLU, dropout: what follows every hidden layer of the book's networks."""
    x = normalize_activate(x, alpha, training, batch_norm_name)
    if not training:
        return x
    return drop_half(x, tf.random.experimental.stateless_fold_in(random_seed, layer_number(batch_norm_name)))


def normalize_activate(x, alpha, training, batch_norm_name):
    # The original's max(alpha*x, x), as one op: tf.maximum and its gradient took five
    # elementwise passes over the activations.
    return tf.nn.leaky_relu(batch_norm(x, training, batch_norm_name), alpha)


def drop_half(x, random_seed):
    """Dropout with keep probability one half: each unit is kept and doubled, or zeroed.

    A unit kept with probability 1/2 needs one random bit, so one 16-bit draw decides 16
    units (tf.nn.dropout draws a float per unit; its random numbers took 7% of a step).
    Every hidden layer has a multiple of 16 channels. The mask is a function of
    `random_seed` (shape [2]), so that a resumed run draws what an uninterrupted one would.
    """
    channels = x.shape[-1]
    draws = tf.random.stateless_uniform(tf.concat([tf.shape(x)[:-1], [channels // 16, 1]], 0),
                                        random_seed, 0, 2**16, tf.int32)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(draws, tf.range(16)), 1)
    return x * tf.cast(tf.reshape(bits, tf.shape(x)) * 2, x.dtype)


def layer_number(batch_norm_name):
    """0, 1, 2 for batch_normalization, _1, _2: each layer its own dropout stream."""
    suffix = re.search(r'_(\d+)$', batch_norm_name)
    return int(suffix[1]) if suffix else 0


def conv_block(x, filters, strides, alpha, training, conv_name, batch_norm_name, random_seed):
    return normalize_activate_drop(conv(x, filters, strides, conv_name), alpha, training,
                                   batch_norm_name, random_seed)
