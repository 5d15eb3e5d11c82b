"""A run's settings, settled in one place (issue 25, point 1), and the Python API's checks
of what it is given (issue 24, item 12): a value the user gives is trained with or refused,
never ignored; a bad one is a ValueError that names the argument."""
import json
import re

import numpy as np
import pytest

from condgan.datasets import Dataset, load_mnist
from condgan.gan import CGan
from condgan.run_settings import settle
from condgan.runs import RunFolderError, TrainingData
from condgan.training import TrainingSettings


@pytest.fixture(scope='module')
def dataset():
    images, labels = load_mnist()
    return Dataset(images[:40], labels[:40], channels=1, seed=0)


def make_gan(dataset, tmp_path, **options):
    return CGan(dataset, out_dir=str(tmp_path), generator_name='mnist', batch_size=8, seed=0, **options)


def training_record(tmp_path):
    return json.loads((tmp_path / 'mnist' / 'config.json').read_text())['training']


def test_the_constructors_learning_rate_and_beta1_are_trained_with_and_recorded(dataset, tmp_path):
    gan = make_gan(dataset, tmp_path / 'given', learning_rate=0.001, beta1=0.5)
    gan.fit(max_steps=2, save_every_n=2, plot=False)
    recorded = training_record(tmp_path / 'given')
    assert (recorded['learning_rate'], recorded['beta1']) == (0.001, 0.5)
    assert (gan.learning_rate, gan.beta1) == (0.001, 0.5)
    # fit()'s own values (the book passes its rates there) win over the constructor's.
    gan = make_gan(dataset, tmp_path / 'fit', learning_rate=0.001)
    gan.fit(learning_rate=0.0005, max_steps=1, save_every_n=1, plot=False)
    assert training_record(tmp_path / 'fit')['learning_rate'] == 0.0005


def test_settle_resolves_given_then_the_runs_own_then_the_defaults(dataset, tmp_path):
    data = TrainingData(dataset.data, dataset.labels)
    fresh = settle(tmp_path / 'new', data, {'z_dim': 10, 'learning_rate': None}, defaults={'epochs': 7})
    assert (fresh.config.z_dim, fresh.settings.epochs, fresh.settings.learning_rate, fresh.resume) == \
        (10, 7, 0.0002, False)
    assert isinstance(fresh.settings.seed, int)
    make_gan(dataset, tmp_path, z_dim=10, beta1=0.2).fit(max_steps=1, save_every_n=1, plot=False)
    resumed = settle(tmp_path / 'mnist', data, {'epochs': 3}, resume=True)
    assert (resumed.config.z_dim, resumed.settings.beta1, resumed.settings.batch_size, resumed.settings.seed,
            resumed.settings.epochs, resumed.resume) == (10, 0.2, 8, 0, 3, True)
    with pytest.raises(RunFolderError, match='z_dim 10 -> 96'):
        settle(tmp_path / 'mnist', data, {'z_dim': 96}, resume=True)


def test_a_folder_without_a_checkpoint_starts_afresh(dataset, tmp_path, capsys):
    stuck_record = json.dumps({'model': {'z_dim': 12}, 'training': {'seed': 5}})  # as kill -9 leaves it
    stuck, other = tmp_path / 'mnist', tmp_path / 'other' / 'mnist'
    for folder in (stuck, other):
        folder.mkdir(parents=True)
        (folder / 'config.json').write_text(stuck_record)
    gan = make_gan(dataset, tmp_path)
    gan.fit(max_steps=1, save_every_n=1, plot=False)  # a new run, as if the folder were empty
    assert gan.z_dim == 96 and training_record(tmp_path)['seed'] == 0
    capsys.readouterr()
    resumed = CGan(dataset, out_dir=str(other.parent), generator_name='mnist', batch_size=8)
    resumed.fit(max_steps=1, save_every_n=1, plot=False, resume=True)
    assert f'{other} holds no checkpoint to resume: starting the run afresh' in capsys.readouterr().err
    assert (resumed.z_dim, resumed.seed) == (12, 5)  # the folder's own settings


@pytest.mark.parametrize('call, argument', [
    (lambda gan: gan.fit(learning_rate=-1), 'learning_rate must be at least 0'),
    (lambda gan: gan.fit(learning_rate=np.inf), 'learning_rate must be a finite number'),
    (lambda gan: gan.fit(beta1=2.0), 'beta1 must be below 1'),
    (lambda gan: gan.fit(beta1='0.5'), 'beta1 must be a finite number'),
    (lambda gan: gan.fit(max_steps=0), 'max_steps must be at least 1'),
    (lambda gan: gan.fit(max_steps=2.5), 'max_steps must be a whole number'),
    (lambda gan: gan.fit(save_every_n=0), 'save_every_n must be at least 1'),
    (lambda gan: gan.generate_new(rows=2.5), 'rows must be a whole number'),
    (lambda gan: gan.generate_new(cols='3'), 'cols must be a whole number'),
    (lambda gan: gan.generate_new(seed=-1), 'seed must be at least 0'),
    (lambda gan: gan.interpolate(3, 7, steps=2.5), 'steps must be a whole number'),
])
def test_bad_values_of_the_api_are_value_errors_naming_the_argument(dataset, tmp_path, call, argument):
    gan = make_gan(dataset, tmp_path)
    with pytest.raises(ValueError, match=argument):
        call(gan)
    assert not (tmp_path / 'mnist').exists()  # nothing was written


@pytest.mark.parametrize('options, argument', [
    ({'z_dim': 2.5}, 'z_dim must be a whole number; got 2.5'),
    ({'z_dim': '96'}, "z_dim must be a whole number; got '96'"),
    ({'batch_size': 0}, 'batch_size must be at least 1; got 0'),
    ({'epochs': 1.5}, 'epochs must be a whole number'),
    ({'seed': -1}, 'seed must be from 0 to'),
    ({'alpha': 'x'}, 'alpha must be a finite number'),
    ({'xla': 'yes'}, 'xla must be True or False'),
    ({'max_to_keep': 0}, 'max_to_keep must be at least 1'),
    ({'class_names': ['a', 'b']}, r'class_names must hold one name for each of the \d+ classes'),
    ({'class_names': 'abcdefghij'}, r'class_names must hold one name for each of the \d+ classes'),
])
def test_bad_constructor_values_are_value_errors_naming_the_argument(dataset, tmp_path, options, argument):
    with pytest.raises(ValueError, match=argument):
        CGan(dataset, out_dir=str(tmp_path), **options)


def test_a_model_without_data_checks_its_classes_and_image_shape():
    with pytest.raises(ValueError, match=r'image_shape must be \(height, width, channels\)'):
        CGan(None, classes=[0, 1], image_shape=(28, 28))
    with pytest.raises(ValueError, match='classes must be a sequence of distinct whole numbers'):
        CGan(None, classes=['a', 'b'], image_shape=(28, 28, 1))


def test_training_settings_check_themselves():
    with pytest.raises(ValueError, match='learning_rate must be at least 0; got -1'):
        TrainingSettings(learning_rate=-1)
    with pytest.raises(ValueError, match="precision must be one of 'float32'"):
        TrainingSettings(precision='half')
    assert TrainingSettings(epochs=np.int64(3)).epochs == 3


# Values that the Python API and a run's config.json judged differently: the API took z_dim
# 5000 or the classes [3, 3], which config.json refused; config.json took an alpha of -0.5,
# and the command then failed without naming the file; a variant [] was a TypeError.
DISPUTED = [('model', 'z_dim', 5000), ('model', 'classes', [3, 3]), ('model', 'classes', [0, True]),
            ('model', 'alpha', -0.5), ('model', 'variant', [])]


@pytest.mark.parametrize('section, key, value', DISPUTED, ids=[f'{key} {value}' for _, key, value in DISPUTED])
def test_the_api_and_a_runs_record_refuse_the_same_values(tmp_path, section, key, value):
    with pytest.raises(ValueError, match=f'^{key} must be '):
        CGan(None, **{'classes': [3, 5], 'image_shape': (8, 8, 1), key: value})
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({'model': {key: value} if section == 'model' else {},
                                  'training': {key: value} if section == 'training' else {}}))
    with pytest.raises(RunFolderError, match=f'^{re.escape(f"{config}: {section}.{key} is {json.dumps(value)}; expected ")}'):
        CGan.from_checkpoint(str(tmp_path))


def test_a_run_trained_at_a_learning_rate_of_0_loads(dataset, tmp_path):
    """The API trains at 0 (nothing moves: tests/test_training.py shows the rate is used), and
    config.json refused the run it recorded: no command could load it."""
    make_gan(dataset, tmp_path, learning_rate=0).fit(max_steps=1, save_every_n=1, plot=False)
    assert training_record(tmp_path)['learning_rate'] == 0
    assert CGan.from_checkpoint(str(tmp_path / 'mnist')).generate_new(rows=1, cols=2, plot=False).shape == (2, 28, 28, 1)
