"""evaluate: the figures on images whose quality we know (real, noise, one image repeated,
shuffled labels), the classifier's cache, the checks, and the command line. Data: the real
MNIST in CGAN_DATA_DIR; the classifier is trained once per machine, into the tests' own
per-user cache, which is kept between runs as a user's is."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from condgan import commands, evaluate
from condgan.gan import CGan, load
from condgan.datasets import Dataset, load_mnist
from condgan.evaluate import Judge, frechet_distance
from condgan.pictures import from_pixels
from tiny_gan import tiny_mnist_gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_CLASS = 100
CAS_STEPS = 150  # the score's classifiers: a clear real baseline in seconds


@pytest.fixture(scope='module')
def cache_home():
    """The tests' own per-user cache ($XDG_CACHE_HOME/cgan-tests, else ~/.cache/cgan-tests),
    apart from the user's own but kept as it is: the classifier is trained at the first run
    on a machine, and again only when evaluate's key of it (its data and settings) changes.
    The corrupt-file test below trains a small one at every run."""
    folder = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'cgan-tests'
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('XDG_CACHE_HOME', str(folder))
        yield folder


@pytest.fixture(scope='module')
def judge(cache_home):
    with Judge('mnist') as judge:
        yield judge


@pytest.fixture(scope='module')
def mnist():
    return {split: load_mnist(split) for split in ('train', 'test')}


def real_by_class(images, labels, rng, per_class=PER_CLASS):
    """per_class real images of each digit, in the generator's range [-1, 1]."""
    return [from_pixels(images[rng.choice(np.flatnonzero(labels == digit), per_class,
                                                 replace=False)])
            for digit in range(10)]


# ------------------------------------------------------------------ the figures

def test_the_classifier_is_accurate_and_cached_in_the_per_user_cache(judge, cache_home):
    # Issue 14's goal. Version 5 (three networks) reached 99.10%; version 4 (one) 99.05% on an
    # AMD CPU but 98.80% on an Intel one; version 3 98.75%, version 2 98.1%.
    assert judge.classifier_accuracy >= 0.99
    # CGAN_DATA_DIR is read-only to us: the classifier goes to the per-user cache.
    assert judge.classifier_path.parent == cache_home / 'cgan' / 'mnist'
    written = judge.classifier_path.stat().st_mtime_ns
    with Judge('mnist') as again:
        assert again.classifier_accuracy == judge.classifier_accuracy
    assert judge.classifier_path.stat().st_mtime_ns == written  # loaded, not trained again


@pytest.mark.parametrize('split', ['test', 'train'])
def test_real_images_score_like_real_ones(judge, mnist, split):
    figures = judge.evaluate(real_by_class(*mnist[split], np.random.default_rng(0)))
    assert figures['conditional_accuracy'] == pytest.approx(judge.classifier_accuracy, abs=0.03)
    assert figures['frechet_distance'] < 1.5 * figures['frechet_floor']
    assert figures['diversity_ratio'] == pytest.approx(1, abs=0.1)
    assert figures['images_per_class'] == PER_CLASS
    assert json.loads(json.dumps(figures)) == figures


def test_noise_scores_chance_and_lies_far_away(judge):
    noise = np.random.default_rng(0).uniform(-1, 1, (10, PER_CLASS, 28, 28, 1))
    figures = judge.evaluate(list(noise))
    assert figures['conditional_accuracy'] == pytest.approx(figures['chance_accuracy'], abs=0.05)
    assert figures['chance_accuracy'] == 0.1
    assert figures['frechet_distance'] > 10 * figures['frechet_floor']


def test_one_image_repeated_has_no_diversity(judge, mnist):
    real = real_by_class(*mnist['test'], np.random.default_rng(1))
    figures = judge.evaluate([np.repeat(images[:1], PER_CLASS, axis=0) for images in real])
    assert figures['diversity_ratio'] < 0.01
    assert len(figures['lowest_diversity_classes']) == evaluate.LOWEST_CLASSES
    assert all(c['diversity_ratio'] < 0.01 for c in figures['per_class'])
    assert figures['frechet_distance'] > 10 * figures['frechet_floor']


def test_correct_images_with_shuffled_labels_score_chance(judge, mnist):
    real = np.concatenate(real_by_class(*mnist['test'], np.random.default_rng(2)))
    shuffled = np.split(real[np.random.default_rng(3).permutation(len(real))], 10)
    figures = judge.evaluate(shuffled)
    assert figures['conditional_accuracy'] == pytest.approx(0.1, abs=0.05)
    assert figures['frechet_distance'] < 1.5 * figures['frechet_floor']  # blind to labels


def test_frechet_distance_of_known_gaussians():
    d = 4
    assert frechet_distance((np.zeros(d), np.eye(d)), (np.zeros(d), np.eye(d))) == pytest.approx(0, abs=1e-9)
    assert frechet_distance((np.zeros(d), np.eye(d)), (np.full(d, 2.0), np.eye(d))) == pytest.approx(4 * d)
    # N(0, a^2 I) and N(0, b^2 I): d (a - b)^2, also when one covariance is singular.
    assert frechet_distance((np.zeros(d), 9 * np.eye(d)), (np.zeros(d), np.eye(d))) == pytest.approx(4 * d)
    assert frechet_distance((np.zeros(d), np.zeros((d, d))), (np.zeros(d), np.eye(d))) == pytest.approx(d)


def test_wrong_images_are_clear_errors(judge):
    good = np.zeros((2, 28, 28, 1))
    with pytest.raises(ValueError, match="each of mnist's 10 classes; got 9"):
        judge.evaluate([good] * 9)
    with pytest.raises(ValueError, match=r'class 3: expected at least 2 images of shape \(28, 28, 1\)'):
        judge.evaluate([good] * 3 + [np.zeros((2, 28, 28, 3))] + [good] * 6)
    with pytest.raises(ValueError, match='per_class must be at least 2'):
        judge.evaluate_generator(lambda position, count: good[:count], per_class=1)


def test_training_images_are_turned_scaled_and_moved_about_their_centre(monkeypatch):
    rows, columns = np.mgrid[:28, :28] - 13.5
    disc = np.where(np.hypot(rows, columns) < 6, 255, 0).astype(np.uint8)  # centred: turns keep it
    discs = np.repeat(disc[None, :, :, None], 200, axis=0)
    moved = evaluate.augmented(discs, np.random.default_rng(7))
    assert moved.shape == discs.shape and moved.min() >= 0 and moved.max() <= 255
    ink = moved.sum(axis=(1, 2, 3))
    centres = np.stack([(moved[..., 0] * axis).sum(axis=(1, 2)) for axis in (rows, columns)]) / ink
    assert np.all(np.abs(centres) <= evaluate.MAX_SHIFT + 0.05)  # + the disc's pixel edges
    assert centres.std(axis=1).min() > evaluate.MAX_SHIFT / 4  # moved, each its own way
    # Scaled by s, the disc's ink grows by s^2.
    ratios = ink / disc.sum()
    assert (1 - evaluate.MAX_SCALE) ** 2 - 0.05 < ratios.min() < 0.9 < 1.1 < ratios.max() < (1 + evaluate.MAX_SCALE) ** 2 + 0.05
    upright = evaluate.augmented(discs, np.random.default_rng(7), upright=True)
    assert np.allclose(upright.sum(axis=(1, 2, 3)), disc.sum(), rtol=0.02)  # moved, not scaled
    for setting in ('MAX_SHIFT', 'MAX_ROTATION', 'MAX_SCALE'):
        monkeypatch.setattr(evaluate, setting, 0)
    images = load_mnist('train')[0][:10]
    np.testing.assert_array_equal(evaluate.augmented(images, np.random.default_rng(7)), images)


# ------------------------------------------------------------------ the classification accuracy score

@pytest.fixture(scope='module')
def real_as_generated(judge, mnist):
    """The score of real training images given as generated ones."""
    images, labels = mnist['train']
    rng = np.random.default_rng(4)

    def generate(position, count):
        return from_pixels(images[rng.choice(np.flatnonzero(labels == position), count,
                                                    replace=False)])
    return judge.classification_accuracy_score(generate, per_class=100, mix_real=20,
                                               mix_generated=100, train_steps=CAS_STEPS)


def test_real_images_given_as_generated_score_about_the_real_baseline(real_as_generated):
    score = real_as_generated
    assert score['real_accuracy'] > 0.8 and score['per_class'] == 100
    assert score['generated_accuracy'] == pytest.approx(score['real_accuracy'], abs=0.03)
    assert score['ratio'] == pytest.approx(1, abs=0.04)
    # 100 more good images per class help a classifier that has 20.
    assert score['mix_real_plus_generated_accuracy'] > score['mix_real_accuracy'] + 0.005
    assert json.loads(json.dumps(score)) == score


def test_noise_scores_chance(judge):
    noise = np.random.default_rng(5).integers(0, 256, (10, 100, 28, 28, 1), dtype=np.uint8)
    assert judge.trained_accuracy(list(noise), CAS_STEPS) == pytest.approx(0.1, abs=0.07)


def test_a_generator_that_ignores_its_label_scores_chance(judge, mnist):
    images, _ = mnist['train']
    rng = np.random.default_rng(6)
    any_digit = [images[rng.choice(len(images), 100, replace=False)] for _ in range(10)]
    assert judge.trained_accuracy(any_digit, CAS_STEPS) == pytest.approx(0.1, abs=0.07)


def test_the_score_checks_its_counts(judge, mnist):
    smallest_class = np.bincount(mnist['train'][1]).min()
    with pytest.raises(ValueError, match=f'mix_real at most {smallest_class} '):
        judge.classification_accuracy_score(lambda position, count: None, mix_real=smallest_class + 1)
    with pytest.raises(ValueError, match='expected at least 1 image per class'):
        judge.classification_accuracy_score(lambda position, count: None, per_class=0)


def test_the_table_shows_the_score(judge, real_as_generated, mnist):
    figures = judge.evaluate(real_by_class(*mnist['test'], np.random.default_rng(0)))
    figures['classification_accuracy_score'] = real_as_generated
    table = evaluate.format_table(figures).splitlines()
    assert len(table) == 7 + 10 + 4
    assert 'trained on generated images' in table[-2] and '20 real per class' in table[-1]


# ------------------------------------------------------------------ which dataset, which model

def untrained_gan(mnist, generator_name='mnist', channels=1, classes=10):
    images, labels = mnist['train']
    keep = labels < classes
    return CGan(Dataset(images[keep][:100], labels[keep][:100], channels=channels),
                generator_name=generator_name)


def test_the_dataset_comes_from_the_recipe_name_or_the_argument(mnist):
    assert evaluate.dataset_of(untrained_gan(mnist, 'zalando')) == 'fashion'
    assert evaluate.dataset_of(untrained_gan(mnist, 'emnist')) == 'emnist'
    assert evaluate.dataset_of(untrained_gan(mnist, 'mine'), dataset='mnist') == 'mnist'
    with pytest.raises(ValueError, match="cannot tell which dataset the model 'mine'.*--dataset"):
        evaluate.dataset_of(untrained_gan(mnist, 'mine'))
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        evaluate.dataset_of(untrained_gan(mnist), dataset='cifar')
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        Judge('cifar')


def test_a_model_that_does_not_fit_the_data_is_a_clear_error(judge, mnist):
    with pytest.raises(ValueError, match=r"draws images of shape \(28, 28, 3\) but mnist's are \(28, 28, 1\)"):
        judge.check_model(untrained_gan(mnist, channels=3))
    with pytest.raises(ValueError, match=r"classes \[0, 1, 2\] are not mnist's"):
        judge.check_model(untrained_gan(mnist, classes=3))
    judge.check_model(untrained_gan(mnist))


# ------------------------------------------------------------------ the cache

def test_the_cache_goes_next_to_the_data_only_where_we_may_write(tmp_path, cache_home):
    assert evaluate.cache_folder('mnist', tmp_path) == tmp_path
    read_only = tmp_path / 'read_only'
    read_only.mkdir(mode=0o555)  # root may still write there, but must not
    assert evaluate.cache_folder('mnist', read_only) == cache_home / 'cgan' / 'mnist'
    assert evaluate.cache_folder('emnist') == cache_home / 'cgan' / 'emnist'


def test_the_cache_key_follows_the_training_data(mnist):
    images, labels = mnist['train']
    steps = evaluate.TRAIN_STEPS['mnist']
    key = evaluate.fingerprint(images, labels, False, 3, steps)
    changed_pixel, changed_label = images.copy(), labels.copy()
    changed_pixel[0, 0, 0, 0] ^= 1
    changed_label[0] = (changed_label[0] + 1) % 10
    assert len({key, evaluate.fingerprint(changed_pixel, labels, False, 3, steps),
                evaluate.fingerprint(images, changed_label, False, 3, steps),
                evaluate.fingerprint(images, labels, True, 3, steps),
                evaluate.fingerprint(images, labels, False, 5, steps),
                evaluate.fingerprint(images, labels, False, 3, steps + 1)}) == 6


def test_a_corrupt_cache_file_is_trained_again_with_a_warning(judge, monkeypatch):
    monkeypatch.setitem(evaluate.TRAIN_STEPS, 'mnist', 20)  # other steps: another cache file
    with Judge('mnist') as quick:
        path = quick.classifier_path
    assert path != judge.classifier_path
    path.write_bytes(b'not an npz file')
    with pytest.warns(UserWarning, match='cached classifier .* is unreadable.*training it again'):
        Judge('mnist').close()
    with np.load(path) as stored:
        assert f'network{evaluate.NETWORKS["mnist"] - 1}/dense/kernel' in stored.files  # the last network's


# ------------------------------------------------------------------ a model, on the command line

def test_the_command_line_evaluates_a_pickled_model(judge, cache_home, tmp_path):
    path = tmp_path / 'mnist.pkl'
    path.write_bytes(pickle.dumps(tiny_mnist_gan(tmp_path)))
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    result = subprocess.run([sys.executable, os.path.join(REPO, 'cgan.py'), 'evaluate', str(path),
                             '--per-class', '5', '--seed', '3', '--json'],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures['images_per_class'] == 5 and len(figures['per_class']) == 10
    assert figures['classifier_accuracy'] == judge.classifier_accuracy
    # The seed fixes the images: the same figures in this process, others for another seed.
    assert figures == evaluate.evaluate_model(load(path), per_class=5, seed=3)
    other = evaluate.evaluate_model(load(path), per_class=5, seed=4)
    assert figures['frechet_distance'] != other['frechet_distance']
    assert 0 <= figures['conditional_accuracy'] <= 1 and figures['frechet_distance'] > 0
    table = evaluate.format_table(figures)
    assert 'conditional accuracy' in table and 'floor (real vs real)' in table
    assert len(table.splitlines()) == 7 + 10  # the figures, then a row per class


def test_the_command_line_names_what_is_wrong(mnist, tmp_path, capsys):
    path = tmp_path / 'mine.pkl'
    for content, message in ((untrained_gan(mnist, generator_name='mine'), "cannot tell which dataset the model 'mine'"),
                             ({'a': 1}, f'{path} holds a dict, not a pickled CGan')):
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(SystemExit) as exit_:
            commands.main(['evaluate', str(path)])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and error.startswith('cgan.py evaluate: error: ')
        assert message in error and error.count('\n') == 1, error
