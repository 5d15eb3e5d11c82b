"""The conditional GAN's two networks and their losses, as functions of a `ModelConfig`.

Two networks play against each other. The generator turns random noise z, joined to the
one-hot vector of a class, into an image. The discriminator looks at an image together with
its class (the one-hot vector repeated at every pixel as extra channels, the "label
planes") and says whether the image is real. Trained together, the generator learns to
draw images that pass for real images *of the requested class*.

This is the model of the chapter "Building GANs for Conditional Image Creation" of
"TensorFlow Deep Learning Projects" (Packt, 2018), in TF1 graph mode (`tf.compat.v1`): the
'book' variant, the default. The 'modern' variant (opt-in) keeps the generator's inputs and
outputs but learns much faster: a lighter generator without dropout, and a projection
discriminator (Miyato & Koyama, 2018) with spectral normalisation and the hinge loss.
Layers are written from `tf.compat.v1.get_variable` and `tf.nn` (the `tf.compat.v1.layers`
API needs the legacy Keras package on TF 2.21), with exactly the variable names `tf.layers`
gave them, so checkpoints move between the original and this.

Nothing here reads files, loops or keeps a session: `training.py` trains these networks,
`generation.py` runs the generator.
"""
import re
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from condgan.checks import real_number, whole_number

tf1 = tf.compat.v1

BATCH_NORM_MOMENTUM = 0.99  # tf.layers.batch_normalization's defaults
BATCH_NORM_EPSILON = 1e-3
# Mixed precision: convolutions and matmuls in 16 bits, variables and losses in float32.
# bfloat16 suits CPUs with AVX-512 BF16 (and TPUs), float16 GPUs (with loss scaling).
COMPUTE_DTYPES = {'float32': tf.float32, 'mixed_bfloat16': tf.bfloat16, 'mixed_float16': tf.float16}
VARIANTS = ('book', 'modern')
# The modern variant generates from a moving average of the generator's weights, which
# tf.train.ExponentialMovingAverage stores under '<variable name>' + this.
AVERAGE_SUFFIX = '/ExponentialMovingAverage'
# Training-mode batch norm puts (moving_mean, batch mean, moving_variance, batch variance)
# here, so that the moving statistics can be set to those of a large batch (see training.py).
BATCH_STATISTICS = 'batch_statistics'


@dataclass(frozen=True)
class ModelConfig:
    """What fixes the networks' shapes and mathematics; saved with every run and pickle."""
    image_shape: tuple = (28, 28, 1)   # (height, width, channels); sides multiples of 4
    classes: tuple = tuple(range(10))  # the class values, in one-hot order; () for a DCGAN
    z_dim: int = 96                    # noise size; the generator's input is z + one-hot
    alpha: float = 0.2                 # leaky ReLU slope
    smooth: float = 0.1                # one-sided label smoothing: real target 1 - smooth (book)
    variant: str = 'book'              # the networks and losses: 'book' or 'modern'

    def __post_init__(self):
        if np.ndim(self.image_shape) != 1 or len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (height, width, channels); got {self.image_shape!r}")
        object.__setattr__(self, 'image_shape', tuple(whole_number('image_shape', n) for n in self.image_shape))
        classes = np.asarray(self.classes)
        if classes.ndim != 1 or not (classes.size == 0 or np.issubdtype(classes.dtype, np.integer)):
            raise ValueError(f"classes must be a sequence of whole numbers (label values); got {self.classes!r}")
        object.__setattr__(self, 'classes', tuple(classes.tolist()))
        object.__setattr__(self, 'z_dim', whole_number('z_dim', self.z_dim))
        object.__setattr__(self, 'alpha', real_number('alpha', self.alpha, minimum=0))
        object.__setattr__(self, 'smooth', real_number('smooth', self.smooth, minimum=0, below=1))
        height, width, channels = self.image_shape
        if height % 4 or width % 4 or height < 4 or width < 4:
            raise ValueError(f"image height and width must be multiples of 4 (the generator "
                             f"doubles a (H/4, W/4) start twice); got {height}x{width}")
        if channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels; got {channels}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def generator_input_size(self):
        return self.z_dim + self.num_classes

    @property
    def averages_generator(self):
        """Whether images come from a moving average of the generator's weights (modern)."""
        return self.variant == 'modern'

    def to_json(self):
        return asdict(self)


# ----------------------------------------------------------------- layers
# Each creates its variables under the names tf.layers used, so checkpoints match the original.

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


# ----------------------------------------------------------------- the two networks

def discriminator(config, images, one_hot, random_seed, compute_dtype=tf.float32,
                  update_singular_vectors=False):
    """Logits [batch, 1] that `images` [batch, H, W, C] in [-1, 1] are real images of the
    classes `one_hot` [batch, K] (None for a plain DCGAN), by the config's variant.

    The book's runs only in training mode (batch statistics, dropout drawn from `random_seed`,
    shape [2]), as in the original. The modern one has neither; `update_singular_vectors`
    says whether this use moves its spectral normalisation on (once a training step).
    """
    if config.variant == 'modern':
        return projection_discriminator(config, images, one_hot, update_singular_vectors, compute_dtype)
    height, width, _ = config.image_shape
    planes = None if one_hot is None else label_planes(one_hot, height, width)
    return label_planes_discriminator(config, images, planes, random_seed, compute_dtype)


def label_planes_discriminator(config, images, label_planes, random_seed, compute_dtype=tf.float32):
    """The book's discriminator: the class as extra image channels, three convolutions with
    batch norm and dropout, one dense logit."""
    with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE):
        x = images if label_planes is None else tf.concat([images, label_planes], axis=3)
        x = tf.cast(x, compute_dtype)                                   # [batch, H, W, C+K]
        x = conv_block(x, 32, 2, config.alpha, True, 'conv2d', 'batch_normalization', random_seed)
        # [batch, H/2, W/2, 32]
        x = conv_block(x, 64, 2, config.alpha, True, 'conv2d_1', 'batch_normalization_1', random_seed)
        # [batch, H/4, W/4, 64]
        x = conv_block(x, 128, 1, config.alpha, True, 'conv2d_2', 'batch_normalization_2', random_seed)
        # [batch, H/4, W/4, 128]
        x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))             # [batch, H/4*W/4*128]
        return tf.cast(dense(x, 1, 'dense'), tf.float32)                # [batch, 1]


def projection_discriminator(config, images, one_hot, update_singular_vectors, compute_dtype=tf.float32):
    """The modern discriminator: two spectrally normalised convolutions, then the logit of
    a projection discriminator (Miyato & Koyama, 2018), w.f + e_y.f for the image's features
    f and the class's learned embedding e_y. The class meets the image's features at the
    end, where it can ask "is this a good 8?", rather than as 10 extra input channels."""
    normalized = {'normalized': True, 'update_singular_vector': update_singular_vectors}
    with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE):
        x = tf.cast(images, compute_dtype)                              # [batch, H, W, C]
        x = tf.nn.leaky_relu(conv(x, 64, 2, 'conv2d', **normalized), config.alpha)
        # [batch, H/2, W/2, 64]
        x = tf.nn.leaky_relu(conv(x, 128, 2, 'conv2d_1', **normalized), config.alpha)
        # [batch, H/4, W/4, 128]
        features = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))      # [batch, F = H/4*W/4*128]
        logits = dense(features, 1, 'dense', **normalized)              # [batch, 1]
        if one_hot is not None:
            class_embedding = dense(tf.cast(one_hot, compute_dtype), features.shape[1], 'embedding',
                                    **normalized)                       # [batch, F]
            logits += tf.reduce_sum(class_embedding * features, axis=1, keepdims=True)
        return tf.cast(logits, tf.float32)                              # [batch, 1]


def generator(config, z, training, random_seed=None, compute_dtype=tf.float32):
    """Images [batch, H, W, C] in [-1, 1] drawn from z joined to the one-hot labels
    [batch, z_dim + K], by the config's variant.

    In training mode batch norm uses the batch's statistics (and in the book's variant
    dropout, masks drawn from `random_seed`, shape [2], follows every hidden layer); in
    inference mode batch norm uses the moving statistics and nothing is dropped.
    """
    with tf1.variable_scope('generator', reuse=tf1.AUTO_REUSE):
        x = tf.cast(z, compute_dtype)                                   # [batch, z_dim + K]
        if config.variant == 'modern':
            logits = modern_generator_layers(config, x, training)
        else:
            logits = book_generator_layers(config, x, training, random_seed)
        return tf.tanh(tf.cast(logits, tf.float32))


def book_generator_layers(config, x, training, random_seed):
    """The book's generator up to its logits: a dense layer to (H/4, W/4, 512), then
    transposed convolutions of 256, 128 and C channels, with batch norm and dropout."""
    height, width, channels = config.image_shape
    x = dense(x, height // 4 * width // 4 * 512, 'dense')               # [batch, H/4*W/4*512]
    x = tf.reshape(x, (-1, height // 4, width // 4, 512))               # [batch, H/4, W/4, 512]
    x = normalize_activate_drop(x, config.alpha, training, 'batch_normalization', random_seed)
    x = conv_transpose(x, 256, 2, 'conv2d_transpose')                   # [batch, H/2, W/2, 256]
    x = normalize_activate_drop(x, config.alpha, training, 'batch_normalization_1', random_seed)
    x = conv_transpose(x, 128, 2, 'conv2d_transpose_1')                 # [batch, H, W, 128]
    x = normalize_activate_drop(x, config.alpha, training, 'batch_normalization_2', random_seed)
    return conv_transpose(x, channels, 1, 'conv2d_transpose_2')         # [batch, H, W, C]


def modern_generator_layers(config, x, training):
    """The modern generator up to its logits: the book's shape at half the channels (a
    quarter of the work) and no dropout, whose noise the discriminator kept seeing in the
    generator's strokes."""
    height, width, channels = config.image_shape
    x = dense(x, height // 4 * width // 4 * 256, 'dense')               # [batch, H/4*W/4*256]
    x = tf.reshape(x, (-1, height // 4, width // 4, 256))               # [batch, H/4, W/4, 256]
    x = normalize_activate(x, config.alpha, training, 'batch_normalization')
    x = conv_transpose(x, 128, 2, 'conv2d_transpose')                   # [batch, H/2, W/2, 128]
    x = normalize_activate(x, config.alpha, training, 'batch_normalization_1')
    x = conv_transpose(x, 64, 2, 'conv2d_transpose_1')                  # [batch, H, W, 64]
    x = normalize_activate(x, config.alpha, training, 'batch_normalization_2')
    return conv_transpose(x, channels, 1, 'conv2d_transpose_2')         # [batch, H, W, C]


def label_planes(one_hot, height, width):
    """One-hot labels [batch, K] repeated at every pixel: [batch, height, width, K]."""
    return tf.tile(one_hot[:, None, None, :], (1, height, width, 1))


# ----------------------------------------------------------------- losses

def discriminator_loss(config, real_logits, fake_logits):
    """Book: real images aimed at 1 - smooth (one-sided label smoothing), fakes at 0.
    Modern: the hinge loss, which stops pushing an image once it is judged with margin 1."""
    if config.variant == 'modern':
        return (tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
                + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits)))
    return (sigmoid_cross_entropy(real_logits, 1.0 - config.smooth)
            + sigmoid_cross_entropy(fake_logits, 0.0))


def generator_loss(config, fake_logits):
    """The generator wants its fakes called real."""
    if config.variant == 'modern':
        return -tf.reduce_mean(fake_logits)
    return sigmoid_cross_entropy(fake_logits, 1.0)


def sigmoid_cross_entropy(logits, target):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        logits=logits, labels=tf.fill(tf.shape(logits), target)))


# ----------------------------------------------------------------- the generator's weights

def generator_variables(graph):
    """The generator's variables by checkpoint name, moving statistics included (not the
    optimizer's slots, nor the weights' moving averages)."""
    with graph.as_default():
        return {v.op.name: v for v in tf1.global_variables()
                if v.op.name.startswith('generator/') and '/Adam' not in v.op.name
                and not v.op.name.endswith(AVERAGE_SUFFIX)}


def generator_variable_shapes(config):
    """{checkpoint name: shape} of the generator's variables, from a throwaway graph."""
    graph = tf.Graph()
    with graph.as_default():
        generator(config, tf1.placeholder(tf.float32, (None, config.generator_input_size)), False)
    return {name: tuple(v.shape) for name, v in generator_variables(graph).items()}


def check_shapes(found, expected, what='the set of generator weights'):
    """A clear error when variables' shapes `found` ({name: shape}, from weights or a
    checkpoint) are not those `expected`, as of another dataset, z_dim or image size.
    TensorFlow would restore a resource variable of another shape and fail at its first use."""
    problems = [f"{name}: expected {tuple(shape)}, found {found.get(name) and tuple(found[name])}"
                for name, shape in expected.items()
                if name not in found or tuple(found[name]) != tuple(shape)]
    if problems:
        raise ValueError(f"{what} does not fit this model (another dataset, z_dim or image "
                         f"shape?): " + "; ".join(problems[:3]))


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

