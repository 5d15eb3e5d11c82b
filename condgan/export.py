"""A CGan's generator as a TensorFlow SavedModel, for code that knows nothing of this project.

    export_saved_model(gan, 'mnist_generator')          # or gan.export_saved_model(path)

    # anywhere with TensorFlow 2, eager:
    generator = tf.saved_model.load('mnist_generator')
    images = generator.signatures['serving_default'](z=z, label=one_hot)['images']
    eights = generator.signatures['generate_class'](class_index=tf.constant(8),
                                                    count=tf.constant(25))['images']

Signatures (images float32 (n, H, W, C) in [-1, 1], under the output key 'images'):
- `serving_default`: `z` float32 (n, z_dim), uniform in [-1, 1], and `label` float32
  (n, classes), the one-hot vectors of the classes (`gan.classes` order);
- `generate_class`: `class_index` int32 scalar, the class's position in `gan.classes`, and
  `count` int32 scalar; z is drawn inside.
An unconditional model takes labels of width 0 and ignores `class_index`.

The generator is built by `model.generator` itself, in a graph, and written with the TF1
SavedModel builder, which TF 2's `tf.saved_model.load` reads. Tracing `model.generator` in a
`tf.function` of a `tf.Module` works too, but a tf.function runs every stateful op it holds:
in legacy generation (batch statistics) the batch-norm moving-average updates would run at
every call. A graph runs only the ops its outputs need.
"""
import os

import tensorflow as tf

from condgan.generation import weights_loader
from condgan.model import generator

tf1 = tf.compat.v1


def export_saved_model(gan, path):
    """Write the generator of a trained CGan as a SavedModel in the new folder `path`.

    It generates as `gan.generate_new` does: batch norm on the moving statistics, no dropout,
    unless `gan.legacy_generation` (batch statistics and dropout, as the original did).
    """
    if os.path.exists(path) and os.listdir(path):
        raise FileExistsError(f"{path} already exists and is not empty: choose a new folder")
    if gan.generator_weights is None:
        gan.load_checkpoint(gan.model_dir)  # a CGan that has not generated yet holds no weights
    classes = gan.num_classes
    graph = tf.Graph()
    with graph.as_default():
        z = tf1.placeholder(tf.float32, (None, gan.z_dim), name='z')
        label = tf1.placeholder(tf.float32, (None, classes), name='label')
        images = generator(gan.config, tf.concat([z, label], axis=1), gan.legacy_generation,
                           tf1.random_uniform((2,), 0, 2**62, tf.int64))

        class_index = tf1.placeholder(tf.int32, (), name='class_index')
        count = tf1.placeholder(tf.int32, (), name='count')
        checks = [tf1.debugging.assert_non_negative(count, message='count must not be negative')]
        if classes:
            checks += [tf1.debugging.assert_non_negative(class_index, message='class_index < 0'),
                       tf1.debugging.assert_less(class_index, classes,
                                                 message=f'class_index must be below {classes}')]
        with tf.control_dependencies(checks):
            drawn_z = tf1.random_uniform(tf.stack([count, gan.z_dim]), -1.0, 1.0)  # [count, z_dim]
        one_hot = tf.one_hot(tf.fill([count], class_index), classes)              # [count, K]
        class_images = generator(gan.config, tf.concat([drawn_z, one_hot], axis=1),
                                 gan.legacy_generation, tf1.random_uniform((2,), 0, 2**62, tf.int64))

        initializer, initial_values = weights_loader(graph, gan.generator_weights)
        with tf1.Session(graph=graph) as session:
            session.run(initializer, initial_values)
            builder = tf1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(session, [tf1.saved_model.SERVING], signature_def_map={
                'serving_default': tf1.saved_model.predict_signature_def(
                    {'z': z, 'label': label}, {'images': images}),
                'generate_class': tf1.saved_model.predict_signature_def(
                    {'class_index': class_index, 'count': count}, {'images': class_images}),
            })
            builder.save()
