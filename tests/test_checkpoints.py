"""Checkpoints move between the original and ours, both ways."""
import os

import numpy as np
import pytest
import tensorflow as tf

from condgan.checkpoints import CheckpointError
from condgan.gan import CGan
from gan_helpers import MOVING, ORIGINAL_GENERATOR, trained

tf1 = tf.compat.v1


def write_original_checkpoint(folder, name='generator'):
    """A generator checkpoint as the original wrote it: trainable variables only."""
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(n, shape, initializer=tf1.random_normal_initializer(0, 0.05))
                     for n, shape in ORIGINAL_GENERATOR.items() if not n.endswith(MOVING)]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver(var_list=variables).save(session, os.path.join(folder, name), global_step=1000)
            return {v.op.name: value for v, value in zip(variables, session.run(variables))}


def test_from_checkpoint_reads_an_original_checkpoint(tmp_path):
    written = write_original_checkpoint(str(tmp_path))
    gan = CGan.from_checkpoint(str(tmp_path))
    assert gan.legacy_generation
    assert all(np.array_equal(gan.generator_weights[n], value) for n, value in written.items())
    images = gan.generate_new(target_class=8, rows=3, cols=3, plot=False)
    assert images.shape == (9, 28, 28, 1) and np.all(np.abs(images) <= 1)
    with pytest.raises(ValueError, match='generator/dense/kernel: expected \\(101, 25088\\)'):
        CGan.from_checkpoint(str(tmp_path), classes=range(5))
    with pytest.raises(CheckpointError, match='no checkpoint'):
        CGan.from_checkpoint(str(tmp_path / 'nowhere'))


def test_the_originals_restore_reads_our_model_folder(dataset, tmp_path):
    """The original's generate_new: a Saver over the generator's trainable variables,
    restored from tf.train.latest_checkpoint of the folder."""
    gan = trained(dataset, tmp_path, steps=1)
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(n, shape) for n, shape in ORIGINAL_GENERATOR.items()
                     if not n.endswith(MOVING)]
        with tf1.Session() as session:
            tf1.train.Saver(var_list=variables).restore(session, tf.train.latest_checkpoint(gan.model_dir))
            restored = dict(zip([v.op.name for v in variables], session.run(variables)))
    assert all(np.array_equal(value, gan.generator_weights[n]) for n, value in restored.items())
    ours = CGan.from_checkpoint(gan.model_dir, generator_name='mnist')
    assert not ours.legacy_generation
