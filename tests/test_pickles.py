"""Pickles: generate in a new process elsewhere, and the first version's pickle still loads."""
import gzip
import os
import pickle

import numpy as np
import pytest

from condgan.gan import CGan
from gan_helpers import REPO, make_gan, run_python, trained


def test_pickle_generates_in_a_new_process_elsewhere(dataset, tmp_path):
    """Bug 5: the original's pickle needed the training folder as the current directory and
    could not be pickled after generate_new."""
    gan = trained(dataset, tmp_path, steps=1)
    before = gan.generate_new(target_class=8, rows=2, cols=2, plot=False, seed=3)
    path = tmp_path / 'mnist.pkl'
    with open(path, 'wb') as f:
        pickle.dump(gan, f)
    assert len(path.read_bytes()) < 40e6  # weights, not the training images
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.rename(gan.model_dir, tmp_path / 'moved')  # no model folder to fall back on
    result = run_python(f"""
import pickle, numpy as np
gan = pickle.load(open({str(path)!r}, 'rb'))
images = gan.generate_new(target_class=8, rows=10, cols=10, plot=False)
print(images.shape, images.min() >= -1, images.max() <= 1)
np.save('same.npy', gan.generate_new(target_class=8, rows=2, cols=2, plot=False, seed=3))
pickle.dumps(gan)
""", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == '(100, 28, 28, 1) True True'
    assert np.allclose(np.load(elsewhere / 'same.npy'), before, atol=1e-5)


def test_an_incompatible_pickle_is_a_clear_error(dataset, tmp_path):
    state = make_gan(dataset, tmp_path).__getstate__()
    state['format'] = 0
    gan = CGan.__new__(CGan)
    with pytest.raises(ValueError, match='another version of cgan'):
        gan.__setstate__(state)


def test_an_unpickled_gan_explains_it_cannot_train(dataset, tmp_path):
    gan = pickle.loads(pickle.dumps(trained(dataset, tmp_path, steps=1)))
    with pytest.raises(ValueError, match='has no dataset'):
        gan.fit(plot=False)


def test_a_pickle_of_the_first_version_still_generates_the_same_images(tmp_path):
    """tests/data/cgan_format1.pkl.gz was written by the first version's code (its class was
    `cgan.CGan`, format 1): an 8x8 model of classes 3, 5, 7, with the images it generated."""
    data = os.path.join(REPO, 'tests', 'data')
    with gzip.open(os.path.join(data, 'cgan_format1.pkl.gz')) as f:
        (tmp_path / 'old.pkl').write_bytes(f.read())
    np.save(tmp_path / 'expected.npy', np.load(os.path.join(data, 'cgan_format1_class5_seed0.npy')))
    check = """
import numpy as np
images = gan.generate_new(target_class=5, rows=2, cols=3, plot=False, seed=0)
assert np.allclose(images, np.load('{folder}/expected.npy'), atol=1e-5), abs(images - np.load('{folder}/expected.npy')).max()
print(gan.classes, gan.image_shape)
"""
    # The book's way, from the repository (its cgan.py), and condgan's loader from anywhere.
    for cwd, load in ((REPO, "import pickle; gan = pickle.load(open('{folder}/old.pkl', 'rb'))"),
                      (tmp_path, "from condgan.gan import load; gan = load('{folder}/old.pkl')")):
        result = run_python((load + check).format(folder=tmp_path), cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == '[3, 5, 7] (8, 8, 1)'


def test_a_pickle_that_holds_its_data_description_still_loads():
    """tests/data/cgan_format1_data.pkl was written by the version whose CGan kept a
    `run_settings.Data` (an 8x8 model of classes 3, 5, 7, not trained): it loads, with its
    configuration and class names, and cannot train (it has no dataset)."""
    with open(os.path.join(REPO, 'tests', 'data', 'cgan_format1_data.pkl'), 'rb') as f:
        gan = pickle.load(f)
    assert (gan.classes, gan.image_shape, gan.z_dim, gan.learning_rate, gan.class_names) == \
        ([3, 5, 7], (8, 8, 1), 8, 0.001, ('three', 'five', 'seven'))
    with pytest.raises(ValueError, match='has no dataset'):
        gan.fit(plot=False)
