"""Running a trained generator: its inputs, and a session that holds its weights.

Generation runs the generator in inference mode (batch norm on its moving statistics, no
dropout), so an image depends only on its z and class, never on the other images of the
batch. A model from the original code's checkpoints (which hold no moving statistics)
generates as the original did, `legacy=True`: batch statistics and dropout.
"""
import numpy as np
import tensorflow as tf

from condgan.model import generator
from condgan.weights import check_shapes, generator_variables

tf1 = tf.compat.v1


def generator_inputs(config, class_positions, rng):
    """Uniform z in [-1, 1] joined to the one-hot vectors of the classes at `class_positions`."""
    z = rng.uniform(-1, 1, size=(len(class_positions), config.z_dim)).astype(np.float32)
    if not config.num_classes:  # a plain DCGAN: z alone
        return z
    one_hot = np.eye(config.num_classes, dtype=np.float32)[np.asarray(class_positions, int)]
    return np.concatenate([z, one_hot], axis=1)


def grid_layout(num_classes, rows, cols):
    """Class positions for a rows x cols grid: one class per row, cycling."""
    return np.repeat(np.arange(rows) % max(num_classes, 1), cols)


class GeneratorSession:
    """The generator alone, in its own graph and session, loaded with `weights`."""

    def __init__(self, config, weights, legacy=False):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.z = tf1.placeholder(tf.float32, (None, config.generator_input_size))
            self.random_seed = tf1.placeholder(tf.int64, (2,))  # legacy dropout's masks
            self.images = generator(config, self.z, training=legacy, random_seed=self.random_seed)
            initializer, initial_values = weights_loader(self.graph, weights)
            self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=session_config())
        self.session.run(initializer, initial_values)

    def run(self, z, rng=None):
        """Images [n, H, W, C] in [-1, 1] for generator inputs z (see generator_inputs)."""
        random_seed = (rng or np.random.default_rng()).integers(0, 2**62, 2)
        return self.session.run(self.images, {self.z: z, self.random_seed: random_seed})

    def close(self):
        self.session.close()


def weights_loader(graph, weights):
    """The op and feed that load `weights` into the generator of `graph`, after checking
    that they fit it. Feeding the initial values adds no assign ops to the graph."""
    variables = generator_variables(graph)
    check_shapes({name: np.shape(value) for name, value in weights.items()},
                 {name: tuple(v.shape) for name, v in variables.items()})
    initial_values = {v.initial_value: weights[name] for name, v in variables.items()}
    return tf1.variables_initializer(list(variables.values())), initial_values


def session_config():
    return tf1.ConfigProto(allow_soft_placement=True)
