"""The generator's weights by checkpoint name: which variables they are, their shapes, and a
clear error when a set of them does not fit a model."""
import tensorflow as tf

from condgan.model import generator

tf1 = tf.compat.v1

# The modern variant generates from a moving average of the generator's weights, which
# tf.train.ExponentialMovingAverage stores under '<variable name>' + this.
AVERAGE_SUFFIX = '/ExponentialMovingAverage'


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
