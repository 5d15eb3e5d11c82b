"""export: the SavedModel generates what generate_new does, in plain TensorFlow without this
project; its class signature draws the class asked for; legacy generation; clear errors."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from condgan.gan import CGan
from condgan.datasets import Dataset
from condgan.export import export_saved_model
from tiny_gan import tiny_mnist_gan


@pytest.fixture(scope='module')
def gan(tmp_path_factory):
    return tiny_mnist_gan(tmp_path_factory.mktemp('runs'))


def one_hot(classes):
    return np.eye(10, dtype=np.float32)[classes]


def test_plain_tensorflow_generates_what_generate_new_does(gan, tmp_path):
    gan.export_saved_model(str(tmp_path / "generator"))  # the CGan method, as users call it
    z = np.random.default_rng(0).uniform(-1, 1, (6, gan.z_dim)).astype(np.float32)
    labels = one_hot([0, 1, 2, 7, 8, 9])
    np.save(tmp_path / 'z.npy', z)
    np.save(tmp_path / 'labels.npy', labels)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    script = f"""
import sys
class RefuseTheProject:  # the project may be installed here; the SavedModel must not need it
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'cgan', 'datasets', 'evaluate', 'export', 'recipes'}:
            raise ImportError(name + ' belongs to the project')
sys.meta_path.insert(0, RefuseTheProject())
import numpy as np
import tensorflow as tf
model = tf.saved_model.load({str(tmp_path / 'generator')!r})
images = model.signatures['serving_default'](z=tf.constant(np.load('../z.npy')),
                                             label=tf.constant(np.load('../labels.npy')))
np.save('images.npy', images['images'].numpy())
np.save('eights.npy', model.signatures['generate_class'](class_index=tf.constant(8),
                                                         count=tf.constant(5))['images'].numpy())
"""
    env = {name: value for name, value in os.environ.items() if name != 'PYTHONPATH'}
    result = subprocess.run([sys.executable, '-c', script], cwd=elsewhere, capture_output=True,
                            text=True, timeout=120, env={**env, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr[-3000:]
    expected = gan._generator().run(np.concatenate([z, labels], axis=1))
    assert np.allclose(np.load(elsewhere / 'images.npy'), expected, atol=1e-5)
    eights = np.load(elsewhere / 'eights.npy')
    assert eights.shape == (5, 28, 28, 1) and np.all(np.abs(eights) <= 1)
    assert not np.allclose(eights[0], eights[1])  # z is drawn for each image


def test_the_class_signature_draws_the_class_asked_for(gan, tmp_path):
    """With the z half of the first layer zeroed, an image depends on its class only: then
    generate_class(c) must give exactly what serving_default gives for class c."""
    class_only = copy.copy(gan)
    class_only.generator_weights = dict(gan.generator_weights)
    kernel = class_only.generator_weights['generator/dense/kernel'] = gan.generator_weights[
        'generator/dense/kernel'].copy()
    kernel[:gan.z_dim] = 0
    export_saved_model(class_only, str(tmp_path / 'class_only'))
    model = tf.saved_model.load(str(tmp_path / 'class_only'))
    any_z = tf.zeros((1, gan.z_dim))
    for target in (3, 8):
        drawn = model.signatures['generate_class'](class_index=tf.constant(target), count=tf.constant(2))
        from_label = model.signatures['serving_default'](z=any_z, label=tf.constant(one_hot([target])))
        assert np.allclose(drawn['images'].numpy(), from_label['images'].numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match='class_index must be below 10'):
        model.signatures['generate_class'](class_index=tf.constant(10), count=tf.constant(2))


def test_legacy_generation_uses_dropout_as_the_original(gan, tmp_path):
    legacy = copy.copy(gan)
    legacy.legacy_generation = True
    export_saved_model(legacy, str(tmp_path / 'legacy'))
    serve = tf.saved_model.load(str(tmp_path / 'legacy')).signatures['serving_default']
    z = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, gan.z_dim)), tf.float32)
    first, second = (serve(z=z, label=tf.constant(one_hot([1, 2, 3, 4])))['images'].numpy()
                     for _ in range(2))
    assert first.shape == (4, 28, 28, 1) and np.all(np.abs(first) <= 1)
    assert not np.allclose(first, second)  # dropout: the same z gives another image


def test_an_existing_folder_is_not_overwritten(gan, tmp_path):
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='already exists and is not empty'):
        export_saved_model(gan, str(tmp_path / 'taken'))


def test_a_model_known_only_by_its_checkpoint_is_exported(gan, tmp_path):
    same_run = CGan(Dataset(np.zeros((10, 28, 28), np.uint8), np.arange(10), channels=1),
                    generator_name=gan.generator_name, out_dir=os.path.dirname(gan.model_dir))
    export_saved_model(same_run, str(tmp_path / 'generator'))
    assert all(np.array_equal(same_run.generator_weights[name], value)
               for name, value in gan.generator_weights.items())
