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
One table at the end, `VARIANTS`, gives each variant its networks and losses. The layers,
with exactly the variable names `tf.layers` gave them (so checkpoints move between the
original and this), and their speed work are in `layers.py`.

Nothing here reads files, loops or keeps a session: `training.py` trains these networks,
`generation.py` runs the generator, `weights.py` names and checks their variables.
"""
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from condgan import layers
from condgan.conditioning import label_planes
from condgan.checks import MAX_Z_DIM, BadValue, one_of, real_number, whole_number

tf1 = tf.compat.v1


@dataclass(frozen=True)
class ModelConfig:
    """What fixes the networks' shapes and mathematics; saved with every run and pickle."""
    image_shape: tuple = (28, 28, 1)   # (height, width, channels); sides multiples of 4
    classes: tuple = tuple(range(10))  # the class values, in one-hot order; () for a DCGAN
    z_dim: int = 96                    # noise size; the generator's input is z + one-hot
    alpha: float = 0.2                 # leaky ReLU slope
    smooth: float = 0.1                # one-sided label smoothing: real target 1 - smooth (book)
    variant: str = 'book'              # the networks and losses: a key of VARIANTS (at the end)

    def __post_init__(self):
        object.__setattr__(self, 'image_shape', checked_image_shape(self.image_shape))
        object.__setattr__(self, 'classes', checked_classes(self.classes))
        object.__setattr__(self, 'z_dim', whole_number('z_dim', self.z_dim, 1, MAX_Z_DIM))
        object.__setattr__(self, 'alpha', real_number('alpha', self.alpha, minimum=0))
        object.__setattr__(self, 'smooth', real_number('smooth', self.smooth, minimum=0, below=1))
        one_of('variant', self.variant, list(VARIANTS))

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def generator_input_size(self):
        return self.z_dim + self.num_classes

    @property
    def averages_generator(self):
        """Whether images come from a moving average of the generator's weights (modern)."""
        return VARIANTS[self.variant].averages_generator

    def to_json(self):
        return asdict(self)


IMAGE_SHAPE = '[height, width, channels]: sides multiples of 4, 1 or 3 channels'
CLASSES = 'a sequence of distinct whole numbers (label values)'


def checked_image_shape(shape):
    """`shape` as a tuple (height, width, channels), if the networks can take it."""
    def refused(message):
        return BadValue(message, 'image_shape', shape, IMAGE_SHAPE)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, '__len__') or len(shape) != 3:
        raise refused(f"image_shape must be (height, width, channels); got {shape!r}")
    try:
        height, width, channels = (whole_number('image_shape', side) for side in shape)
    except BadValue as error:
        raise refused(str(error)) from None
    if height % 4 or width % 4:
        raise refused(f"image height and width must be multiples of 4 (the generator doubles a "
                      f"(H/4, W/4) start twice); got {height}x{width}")
    if channels not in (1, 3):
        raise refused(f"images must have 1 or 3 channels; got {channels}")
    return height, width, channels


def checked_classes(classes):
    """`classes` as a tuple of ints, if they are distinct whole numbers (a NumPy array's too)."""
    values = classes.tolist() if isinstance(classes, np.ndarray) else classes
    if isinstance(values, str) or not isinstance(values, Sequence) or any(
            isinstance(value, bool) or not isinstance(value, numbers.Integral) for value in values) \
            or len(set(values)) != len(values):
        raise BadValue(f"classes must be {CLASSES}; got {classes!r}", 'classes', classes, CLASSES)
    return tuple(int(value) for value in values)


# ----------------------------------------------------------------- the discriminator

def discriminator(config, images, one_hot, random_seed, compute_dtype=tf.float32,
                  update_singular_vectors=False):
    """Logits [batch, 1] that `images` [batch, H, W, C] in [-1, 1] are real images of the
    classes `one_hot` [batch, K] (None for a plain DCGAN), by the config's variant.

    The book's runs only in training mode (batch statistics, dropout drawn from `random_seed`,
    shape [2]), as in the original. The modern one has neither; `update_singular_vectors`
    says whether this use moves its spectral normalisation on (once a training step).
    """
    return VARIANTS[config.variant].discriminator(config, images, one_hot, random_seed, compute_dtype,
                                                  update_singular_vectors)


def book_discriminator(config, images, one_hot, random_seed, compute_dtype, update_singular_vectors):
    """The book's discriminator of the images and their label planes (it has no spectral
    normalisation: `update_singular_vectors` changes nothing)."""
    height, width, _ = config.image_shape
    planes = None if one_hot is None else label_planes(one_hot, height, width)
    return label_planes_discriminator(config, images, planes, random_seed, compute_dtype)


def label_planes_discriminator(config, images, planes, random_seed, compute_dtype=tf.float32):
    """The book's discriminator: the class as extra image channels (`planes` [batch, H, W, K],
    or None), three convolutions with batch norm and dropout, one dense logit."""
    with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE):
        x = images if planes is None else tf.concat([images, planes], axis=3)
        x = tf.cast(x, compute_dtype)                                   # [batch, H, W, C+K]
        x = layers.conv_block(x, 32, 2, config.alpha, True, 'conv2d', 'batch_normalization', random_seed)
        # [batch, H/2, W/2, 32]
        x = layers.conv_block(x, 64, 2, config.alpha, True, 'conv2d_1', 'batch_normalization_1', random_seed)
        # [batch, H/4, W/4, 64]
        x = layers.conv_block(x, 128, 1, config.alpha, True, 'conv2d_2', 'batch_normalization_2', random_seed)
        # [batch, H/4, W/4, 128]
        x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))             # [batch, H/4*W/4*128]
        return tf.cast(layers.dense(x, 1, 'dense'), tf.float32)         # [batch, 1]


def projection_discriminator(config, images, one_hot, random_seed, compute_dtype, update_singular_vectors):
    """The modern discriminator: two spectrally normalised convolutions, then the logit of
    a projection discriminator (Miyato & Koyama, 2018), w.f + e_y.f for the image's features
    f and the class's learned embedding e_y. The class meets the image's features at the
    end, where it can ask "is this a good 8?", rather than as 10 extra input channels.
    Nothing in it is random: `random_seed` is not used."""
    normalized = {'normalized': True, 'update_singular_vector': update_singular_vectors}
    with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE):
        x = tf.cast(images, compute_dtype)                              # [batch, H, W, C]
        x = tf.nn.leaky_relu(layers.conv(x, 64, 2, 'conv2d', **normalized), config.alpha)
        # [batch, H/2, W/2, 64]
        x = tf.nn.leaky_relu(layers.conv(x, 128, 2, 'conv2d_1', **normalized), config.alpha)
        # [batch, H/4, W/4, 128]
        features = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))      # [batch, F = H/4*W/4*128]
        logits = layers.dense(features, 1, 'dense', **normalized)       # [batch, 1]
        if one_hot is not None:
            class_embedding = layers.dense(tf.cast(one_hot, compute_dtype), features.shape[1], 'embedding',
                                           **normalized)                # [batch, F]
            logits += tf.reduce_sum(class_embedding * features, axis=1, keepdims=True)
        return tf.cast(logits, tf.float32)                              # [batch, 1]


# ----------------------------------------------------------------- the generator

def generator(config, z, training, random_seed=None, compute_dtype=tf.float32):
    """Images [batch, H, W, C] in [-1, 1] drawn from z joined to the one-hot labels
    [batch, z_dim + K], by the config's variant.

    In training mode batch norm uses the batch's statistics (and in the book's variant
    dropout, masks drawn from `random_seed`, shape [2], follows every hidden layer); in
    inference mode batch norm uses the moving statistics and nothing is dropped.
    """
    with tf1.variable_scope('generator', reuse=tf1.AUTO_REUSE):
        x = tf.cast(z, compute_dtype)                                   # [batch, z_dim + K]
        logits = VARIANTS[config.variant].generator_layers(config, x, training, random_seed)
        return tf.tanh(tf.cast(logits, tf.float32))


def book_generator_layers(config, x, training, random_seed):
    """The book's generator up to its logits: a dense layer to (H/4, W/4, 512), then
    transposed convolutions of 256, 128 and C channels, with batch norm and dropout."""
    height, width, channels = config.image_shape
    x = layers.dense(x, height // 4 * width // 4 * 512, 'dense')        # [batch, H/4*W/4*512]
    x = tf.reshape(x, (-1, height // 4, width // 4, 512))               # [batch, H/4, W/4, 512]
    x = layers.normalize_activate_drop(x, config.alpha, training, 'batch_normalization', random_seed)
    x = layers.conv_transpose(x, 256, 2, 'conv2d_transpose')            # [batch, H/2, W/2, 256]
    x = layers.normalize_activate_drop(x, config.alpha, training, 'batch_normalization_1', random_seed)
    x = layers.conv_transpose(x, 128, 2, 'conv2d_transpose_1')          # [batch, H, W, 128]
    x = layers.normalize_activate_drop(x, config.alpha, training, 'batch_normalization_2', random_seed)
    return layers.conv_transpose(x, channels, 1, 'conv2d_transpose_2')  # [batch, H, W, C]


def modern_generator_layers(config, x, training, random_seed):
    """The modern generator up to its logits: the book's shape at half the channels (a
    quarter of the work) and no dropout, whose noise the discriminator kept seeing in the
    generator's strokes (so `random_seed` is not used)."""
    height, width, channels = config.image_shape
    x = layers.dense(x, height // 4 * width // 4 * 256, 'dense')        # [batch, H/4*W/4*256]
    x = tf.reshape(x, (-1, height // 4, width // 4, 256))               # [batch, H/4, W/4, 256]
    x = layers.normalize_activate(x, config.alpha, training, 'batch_normalization')
    x = layers.conv_transpose(x, 128, 2, 'conv2d_transpose')            # [batch, H/2, W/2, 128]
    x = layers.normalize_activate(x, config.alpha, training, 'batch_normalization_1')
    x = layers.conv_transpose(x, 64, 2, 'conv2d_transpose_1')           # [batch, H, W, 64]
    x = layers.normalize_activate(x, config.alpha, training, 'batch_normalization_2')
    return layers.conv_transpose(x, channels, 1, 'conv2d_transpose_2')  # [batch, H, W, C]


# ----------------------------------------------------------------- losses

def discriminator_loss(config, real_logits, fake_logits):
    return VARIANTS[config.variant].discriminator_loss(config, real_logits, fake_logits)


def generator_loss(config, fake_logits):
    return VARIANTS[config.variant].generator_loss(config, fake_logits)


def book_discriminator_loss(config, real_logits, fake_logits):
    """Real images aimed at 1 - smooth (one-sided label smoothing), fakes at 0."""
    return (sigmoid_cross_entropy(real_logits, 1.0 - config.smooth)
            + sigmoid_cross_entropy(fake_logits, 0.0))


def book_generator_loss(config, fake_logits):
    """The generator wants its fakes called real."""
    return sigmoid_cross_entropy(fake_logits, 1.0)


def sigmoid_cross_entropy(logits, target):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        logits=logits, labels=tf.fill(tf.shape(logits), target)))


def hinge_discriminator_loss(config, real_logits, fake_logits):
    """The hinge loss, which stops pushing an image once it is judged with margin 1."""
    return (tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
            + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits)))


def hinge_generator_loss(config, fake_logits):
    """The generator wants its fakes judged as real as can be."""
    return -tf.reduce_mean(fake_logits)


# ----------------------------------------------------------------- the variants

@dataclass(frozen=True)
class Variant:
    """What a variant chooses: its two networks, their losses, and how it generates."""
    discriminator: Callable        # (config, images, one_hot, random_seed, compute_dtype,
                                   #  update_singular_vectors) -> logits [batch, 1]
    generator_layers: Callable     # (config, z [batch, z_dim + K], training, random_seed)
                                   #  -> logits [batch, H, W, C]
    discriminator_loss: Callable   # (config, real_logits, fake_logits) -> loss
    generator_loss: Callable       # (config, fake_logits) -> loss
    averages_generator: bool       # images come from a moving average of the generator's weights


# The one place that picks a variant's parts: ModelConfig.variant is a key of it.
VARIANTS = {
    'book': Variant(book_discriminator, book_generator_layers, book_discriminator_loss,
                    book_generator_loss, averages_generator=False),
    'modern': Variant(projection_discriminator, modern_generator_layers, hinge_discriminator_loss,
                      hinge_generator_loss, averages_generator=True),
}
