"""How good is a generator: a small classifier, trained on the real images, judges its images.

    python cgan.py evaluate runs/mnist [--data-dir D] [--per-class N] [--dataset NAME] [--json]

A small convolutional classifier (three networks, five for EMNIST; their average names the
class) is trained once per dataset (MNIST, Fashion-MNIST or EMNIST Balanced) on the real
training split, and cached. It then looks at N generated images per class:

- conditional accuracy: how often it sees the class that was asked for (chance: 1 / classes);
- Fréchet distance between Gaussians fitted to its first network's penultimate-layer features
  of the generated images and of the real test images, beside the floor: the same distance
  between two halves of the real test images;
- diversity ratio: per class, the mean distance between the features of two generated images
  over the same for two real ones; far below 1 means mode collapse.

`evaluate_model(gan)` does it for a trained CGan. During training, build a `Judge` once and call
`judge.evaluate_generator(generate)` as often as you like.
"""
import hashlib
import json
import os
import stat
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.ndimage
import tensorflow as tf
from scipy.spatial.distance import pdist

from condgan import datasets
from condgan.files import write_atomically
from condgan.layers import batch_norm, dense, layer_weights
from condgan.model_argument import add_model_arguments, model_from
from condgan.recipes import DATASETS, RECIPES, OneLineErrorParser, seed_number
from condgan.pictures import from_pixels, to_pixels

tf1 = tf.compat.v1

# A recipe's name, which is its model's generator_name -> the recipe's dataset.
RECIPE_DATASETS = {name: recipe.dataset for name, recipe in RECIPES.items()}

# The classifier. Bump CLASSIFIER_VERSION when its network or training changes, so that no
# cached classifier of the old kind is used (the settings below are in the cache key too).
CLASSIFIER_VERSION = 5
# Networks per dataset, trained side by side, each from its own initial weights, batches and
# dropout; their average probabilities name an image's class. One network's accuracy moved by
# up to 1.5 points with nothing but the machine's rounding (EMNIST: 87.8% on an AMD CPU, 86.3%
# on an Intel one): the average moves less and sees more. Measured in the README.
NETWORKS = {'mnist': 3, 'fashion': 3, 'emnist': 5, 'cifar10': 3}
CHANNELS = (16, 32, 64)   # per stage: a 3x3 convolution with these channels, then 2x2 pooling
FEATURES = 128          # penultimate-layer width: small, so the Fréchet distance is fast and stable
# Steps of cosine-decayed Adam, per dataset: what it takes to reach 99% on MNIST's test images
# and 91% on Fashion-MNIST's (at 1,400 steps: 98.75% and 89.0%). EMNIST's best, 87.8%, came at
# 8,000 (12,000: 87.2%). Wider layers did worse at equal steps. The README gives each dataset's
# time and accuracy.
# CIFAR-10's is EMNIST's, unmeasured: the archive cannot be downloaded on the machine that
# measured the others.
TRAIN_STEPS = {'mnist': 3000, 'fashion': 4000, 'emnist': 8000, 'cifar10': 8000}
# An image folder's classifier (three networks, shifted but not turned: photographs are upright)
# trains as MNIST's does, but a small folder for FOLDER_EPOCHS passes over its images (at least
# MIN_FOLDER_STEPS steps): 3,000 steps on a hundred images took two minutes, to learn nothing more.
FOLDER_EPOCHS = 50
MIN_FOLDER_STEPS = 100
BATCH_SIZE = 128
LEARNING_RATE = 0.005   # Adam's, at the first step
DROPOUT = 0.2           # of the features, in training
# Of the moving statistics, per step. The GAN's 0.99 would leave a fifth of the initial
# statistics after the 150 steps of the tests' quick classification accuracy score.
BATCH_NORM_MOMENTUM = 0.9
MAX_SHIFT = 2           # training images move by up to this many pixels each way,
MAX_ROTATION = 10       # turn by up to this many degrees
MAX_SCALE = 0.1         # and grow or shrink by up to this fraction,
# but for datasets of upright, centred photographs: turned and scaled, Fashion-MNIST's
# classifier fell from 89.0% to 87.9% on the real test images (shifted only: 89.0%).
UPRIGHT_DATASETS = ('fashion', 'cifar10')
SEED = 0
JUDGE_BATCH = 1000      # images per session.run when judging
LOWEST_CLASSES = 3      # classes named as the least diverse

# The classification accuracy score (Ravuri & Vinyals 2019): the classifier trained on
# generated images, tested on the real test split.
CAS_PER_CLASS = 1000            # training images per class, generated or real
MIX_REAL_PER_CLASS = 100        # "does it help at small N?": this many real images per class,
MIX_GENERATED_PER_CLASS = 1000  # with and without this many generated ones


class Classifier:
    """`networks` small convolutional networks in their own graph and session: for
    images in [-1, 1] (the generator's range), the class they see, by their average
    probabilities, and the features of the first network's penultimate layer (the Fréchet
    distance and the diversity need one network's features).

    Each network is built twice on the same variables: for training (batch statistics,
    dropout, moving statistics updated) and for judging (moving statistics, no dropout), so
    that an image's features and class never depend on the other images of its batch."""

    def __init__(self, image_shape, num_classes, upright, networks):
        self.upright = upright  # training images are moved, not turned or scaled
        self.networks = networks
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(SEED)
            self.images = tf1.placeholder(tf.float32, (None, *image_shape), name='images')
            # To train: a batch of images, and their class positions, for each network.
            self.batches = tf1.placeholder(tf.float32, (networks, None, *image_shape), name='batches')
            self.labels = tf1.placeholder(tf.int64, (networks, None), name='labels')
            self.learning_rate = tf1.placeholder(tf.float32, (), name='learning_rate')
            training_logits = [network(self.batches[number], num_classes, True, number)[1]
                               for number in range(networks)]
            with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
                judged = [network(self.images, num_classes, False, number)
                          for number in range(networks)]
            self.features = judged[0][0]                                # [batch, FEATURES]
            probabilities = tf.add_n([tf.nn.softmax(logits) for _, logits in judged])
            self.predictions = tf.argmax(probabilities, axis=1)         # [batch]
            # The weights and the moving statistics, before the optimiser adds its own variables.
            self.variables = {v.op.name: v for v in tf1.global_variables()}
            # A sum of independent losses: each network learns as it would alone.
            loss = tf.add_n([tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=self.labels[number], logits=logits))
                for number, logits in enumerate(training_logits)])
            with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                self.train_step = tf1.train.AdamOptimizer(self.learning_rate).minimize(loss)
            self.initializer = tf1.global_variables_initializer()
            self.graph.finalize()
        self.session = tf1.Session(graph=self.graph)

    def train(self, images, positions, steps):
        """Train from scratch on uint8 images and their class positions, for `steps` steps."""
        self.session.run(self.initializer)
        rng = np.random.default_rng(SEED)
        for step in range(steps):
            batches = rng.integers(0, len(images), (self.networks, BATCH_SIZE))
            # Cosine decay to 0: the last steps settle the weights instead of jumping around.
            learning_rate = LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * step / steps))
            self.session.run(self.train_step, {
                self.batches: [from_pixels(augmented(images[batch], rng, self.upright))
                               for batch in batches],
                self.labels: positions[batches], self.learning_rate: learning_rate})

    def accuracy(self, images, positions):
        """The fraction of images in [-1, 1] seen as the class at their position."""
        return float(np.mean(self.judge(images)[1] == positions))

    def weights(self):
        return dict(zip(self.variables, self.session.run(list(self.variables.values()))))

    def load_weights(self, weights):
        """Set the weights ({name: array}); a ValueError when they do not fit."""
        expected = {name: tuple(v.shape) for name, v in self.variables.items()}
        found = {name: tuple(np.shape(value)) for name, value in weights.items()}
        if found != expected:
            raise ValueError(f"weights of shapes {found} do not fit the classifier's {expected}")
        # Feeding the initial values loads the weights without adding assign ops to the graph.
        with self.graph.as_default():  # initial_value is readable only in its graph
            feed = {v.initial_value: weights[name] for name, v in self.variables.items()}
        self.session.run(self.initializer, feed)

    def judge(self, images):
        """Features (n, FEATURES) and predicted class positions (n,) of images in [-1, 1]."""
        parts = [self.session.run((self.features, self.predictions),
                                  {self.images: images[start:start + JUDGE_BATCH]})
                 for start in range(0, len(images), JUDGE_BATCH)]
        return np.concatenate([f for f, _ in parts]), np.concatenate([p for _, p in parts])

    def close(self):
        self.session.close()


class Judge:
    """A dataset's classifier and its view of the real test images, ready to judge generators.

    Build it once (it loads the data and trains or loads the cached classifier), then call
    `evaluate` or `evaluate_generator` as often as needed, e.g. during training.
    Attributes: `dataset`, `classes` (class values; a class's position is its index),
    `class_names`, `image_shape`, `classifier_accuracy` (on the real test split),
    `frechet_floor`, `classifier_path` (its cache file), `train_steps` (its classifiers').
    """

    def __init__(self, dataset, data_dir=None, model=None):
        """`model`, a CGan, is checked to fit the dataset before the classifier trains (for
        EMNIST that takes minutes)."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
        train_images, train_labels = DATASETS[dataset].load('train', data_dir=data_dir)
        test_images, test_labels = DATASETS[dataset].load('test', data_dir=data_dir)
        self._prepare(dataset, DATASETS[dataset].class_names(data_dir), train_images, train_labels,
                      test_images, test_labels, dataset in UPRIGHT_DATASETS, NETWORKS[dataset],
                      TRAIN_STEPS[dataset], cache_folder(dataset, data_dir), model)

    @classmethod
    def for_folder(cls, source, image_shape, model=None):
        """The Judge of an image folder's model (`CGan.data_source`): its classifier trains on
        the folder's training part and is tested on its held-out tenth (folders.py), which the
        GAN never saw. A folder that changed since the model was trained is refused: its
        held-out images might not be held out."""
        from condgan import folders
        size, _, channels = image_shape
        loaded = folders.load(source['folder'], size, channels, source.get('skip_unreadable', False))
        if folders.manifest_digest(loaded.listing.manifest) != source.get('manifest_sha256'):
            raise folders.FolderError(f"{source['folder']} changed since the model was trained on it: "
                                      f"its held-out images may have been trained on; evaluate a model "
                                      f"trained on the folder as it is now")
        test_images, test_labels = loaded.held_out_part()
        held_out = np.bincount(test_labels, minlength=len(loaded.class_names))
        if held_out.min() < 2:
            name = loaded.class_names[int(np.argmin(held_out))]
            raise folders.FolderError(f"{Path(source['folder']) / name}: {held_out.min()} held-out "
                                      f"images; evaluate needs at least 2 of each class (a class of "
                                      f"15 images or more)")
        judge = cls.__new__(cls)
        judge._prepare(f"folder {Path(source['folder']).name}", loaded.class_names, *loaded.train_part(),
                       test_images, test_labels, True, NETWORKS['mnist'],
                       folder_train_steps(len(loaded.images) - len(test_images)),
                       datasets._cache_root() / 'folders', model)
        return judge

    def _prepare(self, dataset, class_names, train_images, train_labels, test_images, test_labels,
                 upright, networks, train_steps, cache_dir, model=None):
        self.dataset = dataset
        self.train_steps = train_steps
        self.classes = np.unique(train_labels).tolist()
        self.class_names = class_names
        self.image_shape = train_images.shape[1:]
        if model is not None:
            self.check_model(model)
        self.classifier = Classifier(self.image_shape, len(self.classes), upright, networks)
        key = fingerprint(train_images, train_labels, self.classifier.upright,
                          self.classifier.networks, self.train_steps)
        name = dataset.replace(' ', '-').replace('/', '-')
        self.classifier_path = Path(cache_dir) / f'cgan-classifier-{name}-{key}.npz'
        self.train_images, self.train_positions = train_images, np.searchsorted(self.classes, train_labels)
        load_or_train(self.classifier, self.classifier_path, self.train_images, self.train_positions,
                      self.train_steps)

        self.test_images = from_pixels(test_images)
        self.test_positions = test_positions = np.searchsorted(self.classes, test_labels)
        test_features, predicted = self.classifier.judge(self.test_images)
        self.classifier_accuracy = float(np.mean(predicted == test_positions))
        self.test_gaussian = gaussian(test_features)
        halves = np.array_split(np.random.default_rng(SEED).permutation(len(test_images)), 2)
        self.frechet_floor = frechet_distance(*(gaussian(test_features[half]) for half in halves))
        self.test_spread = [mean_pairwise_distance(test_features[test_positions == position])
                            for position in range(len(self.classes))]

    @classmethod
    def for_model(cls, gan, data_dir=None, dataset=None):
        """The Judge of the dataset a CGan was trained on (see `dataset_of`), checked to fit it."""
        if getattr(gan, 'data_source', None) and dataset is None:  # an image folder's model
            return cls.for_folder(gan.data_source, gan.image_shape, model=gan)
        return cls(dataset_of(gan, dataset), data_dir, model=gan)  # checked before it trains

    def check_model(self, gan):
        """A ValueError unless the CGan draws this dataset's image shape and classes."""
        if tuple(gan.image_shape) != tuple(self.image_shape):
            raise ValueError(f"the model draws images of shape {tuple(gan.image_shape)} but "
                             f"{self.dataset}'s are {tuple(self.image_shape)}")
        if list(gan.classes) != self.classes:
            raise ValueError(f"the model's classes {list(gan.classes)} are not {self.dataset}'s "
                             f"{self.classes}")
        # Names that are more than the class values (an image folder's) must be the dataset's.
        names = list(gan.class_names)
        if names != [str(value) for value in gan.classes] and names != list(self.class_names):
            raise ValueError(f"the model's classes are named {names} but {self.dataset}'s are "
                             f"{list(self.class_names)}: it was trained on other classes")

    def evaluate_generator(self, generate, per_class=100):
        """The figures of `evaluate` for `per_class` images of each class from
        `generate(class_position, count)`, which returns images (count, H, W, C) in [-1, 1]."""
        if per_class < 2:
            raise ValueError(f"per_class must be at least 2 (diversity compares pairs); got {per_class}")
        return self.evaluate([generate(position, per_class) for position in range(len(self.classes))])

    def evaluate(self, images_by_class):
        """Figures for generated images: `images_by_class[p]` holds images (n, H, W, C) in
        [-1, 1] that were asked to be of the class at position p, at least two per class.

        Returns a dict (JSON-ready): dataset, classifier_accuracy, chance_accuracy,
        conditional_accuracy (the mean over classes of the fraction classified as asked),
        frechet_distance, frechet_floor, diversity_ratio (mean over classes),
        lowest_diversity_classes (names), images_per_class, and per_class: a list of
        {class, name, conditional_accuracy, diversity_ratio}.
        """
        self._check_images(images_by_class)
        images = np.concatenate(images_by_class).astype(np.float32)
        requested = np.repeat(np.arange(len(self.classes)), [len(i) for i in images_by_class])
        features, predicted = self.classifier.judge(images)
        accuracies = [float(np.mean(predicted[requested == p] == p)) for p in range(len(self.classes))]
        diversities = [mean_pairwise_distance(features[requested == p]) / self.test_spread[p]
                       for p in range(len(self.classes))]
        least_diverse = np.argsort(diversities, kind='stable')[:LOWEST_CLASSES]
        return {
            'dataset': self.dataset,
            'images_per_class': len(images) // len(self.classes),
            'classifier_accuracy': self.classifier_accuracy,
            'chance_accuracy': 1 / len(self.classes),
            'conditional_accuracy': float(np.mean(accuracies)),
            'frechet_distance': frechet_distance(gaussian(features), self.test_gaussian),
            'frechet_floor': self.frechet_floor,
            'diversity_ratio': float(np.mean(diversities)),
            'lowest_diversity_classes': [self.class_names[p] for p in least_diverse],
            'per_class': [{'class': value, 'name': name, 'conditional_accuracy': accuracy,
                           'diversity_ratio': diversity}
                          for value, name, accuracy, diversity
                          in zip(self.classes, self.class_names, accuracies, diversities)],
        }

    def classification_accuracy_score(self, generate, per_class=CAS_PER_CLASS,
                                      mix_real=MIX_REAL_PER_CLASS,
                                      mix_generated=MIX_GENERATED_PER_CLASS, train_steps=None):
        """The classification accuracy score of Ravuri & Vinyals (2019): a fresh classifier of
        the judge's kind trained only on `per_class` generated images of each class, from
        `generate(class_position, count)` (images in [-1, 1]), and tested on the real test
        split; beside it the same classifier trained on `per_class` real training images of
        each class (fewer if the real training split has fewer), and the mix: `mix_real` real
        images per class, without and with `mix_generated` generated ones.

        The generated images are rounded to uint8, as a generated dataset stores them. Returns
        a dict (JSON-ready): dataset, per_class (N), generated_accuracy, real_accuracy, ratio
        (generated over real), chance_accuracy, mix_real_per_class, mix_generated_per_class,
        mix_real_accuracy, mix_real_plus_generated_accuracy, train_steps.
        """
        available = int(np.bincount(self.train_positions, minlength=len(self.classes)).min())
        per_class = min(per_class, available)
        if min(per_class, mix_real, mix_generated) < 1 or mix_real > available:
            raise ValueError(f"expected at least 1 image per class, and mix_real at most "
                             f"{available} (the real training images of the smallest class); got "
                             f"per_class={per_class}, mix_real={mix_real}, mix_generated={mix_generated}")
        rng = np.random.default_rng(SEED)
        # The same real draw serves both: its first per_class, its first mix_real.
        real = [rng.choice(np.flatnonzero(self.train_positions == p), max(per_class, mix_real),
                           replace=False)
                for p in range(len(self.classes))]
        generated = [to_pixels(generate(p, max(per_class, mix_generated)))
                     for p in range(len(self.classes))]

        def accuracy(real_count, generated_count):
            """Of the first real_count real and generated_count generated images per class."""
            return self.trained_accuracy(
                [np.concatenate([self.train_images[r[:real_count]], g[:generated_count]])
                 for r, g in zip(real, generated)], train_steps)

        generated_accuracy, real_accuracy = accuracy(0, per_class), accuracy(per_class, 0)
        return {
            'dataset': self.dataset,
            'per_class': per_class,
            'generated_accuracy': generated_accuracy,
            'real_accuracy': real_accuracy,
            'ratio': generated_accuracy / real_accuracy,
            'chance_accuracy': 1 / len(self.classes),
            'mix_real_per_class': mix_real,
            'mix_generated_per_class': mix_generated,
            'mix_real_accuracy': accuracy(mix_real, 0),
            'mix_real_plus_generated_accuracy': accuracy(mix_real, mix_generated),
            'train_steps': self.train_steps if train_steps is None else train_steps,
        }

    def trained_accuracy(self, images_by_class, train_steps=None):
        """The real test accuracy of a fresh classifier of the judge's kind trained on the
        uint8 images `images_by_class[p]` (n, H, W, C) of the class at position p, for
        `train_steps` steps (default: the judge's own classifier's)."""
        self._check_images(images_by_class)
        classifier = Classifier(self.image_shape, len(self.classes), self.classifier.upright,
                                self.classifier.networks)
        try:
            classifier.train(np.concatenate(images_by_class),
                             np.repeat(np.arange(len(self.classes)), [len(i) for i in images_by_class]),
                             self.train_steps if train_steps is None else train_steps)
            return classifier.accuracy(self.test_images, self.test_positions)
        finally:
            classifier.close()

    def _check_images(self, images_by_class):
        if len(images_by_class) != len(self.classes):
            raise ValueError(f"expected images for each of {self.dataset}'s {len(self.classes)} "
                             f"classes; got {len(images_by_class)} groups")
        for position, images in enumerate(images_by_class):
            shape = np.shape(images)
            if shape[1:] != tuple(self.image_shape) or shape[0] < 2:
                raise ValueError(f"class {self.class_names[position]}: expected at least 2 images "
                                 f"of shape {tuple(self.image_shape)}; got an array of shape {shape}")

    def close(self):
        self.classifier.close()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()


def evaluate_model(gan, data_dir=None, per_class=100, dataset=None, cas_per_class=None, seed=None):
    """The figures of `Judge.evaluate` for `per_class` images per class from `gan.generate_new`,
    and with `cas_per_class` N, its classification accuracy score at N per class
    (`Judge.classification_accuracy_score`, under 'classification_accuracy_score').

    `dataset` ('mnist', 'fashion' or 'emnist') names the dataset the model was trained on;
    without it the model's generator_name tells (see `dataset_of`). `seed` fixes the images, so
    that judging a model again gives the same figures; without it, each call draws new ones
    (the figures of 100 images per class then vary by a point or two).
    """
    def generate(position, count):
        # Each class its own stream of z, from the seed and the class's position.
        return gan.generate_new(gan.classes[position], rows=1, cols=count, plot=False,
                                seed=None if seed is None else [seed, position])

    with Judge.for_model(gan, data_dir, dataset) as judge:
        figures = judge.evaluate_generator(generate, per_class)
        if cas_per_class is not None:
            figures['classification_accuracy_score'] = judge.classification_accuracy_score(
                generate, cas_per_class)
        return figures


def dataset_of(gan, dataset=None):
    """The dataset a CGan was trained on: `dataset` if given, else its recipe's dataset."""
    if dataset is None:
        if gan.generator_name not in RECIPE_DATASETS:
            raise ValueError(f"cannot tell which dataset the model {gan.generator_name!r} was "
                             f"trained on (its name is none of the recipes' "
                             f"{sorted(RECIPE_DATASETS)}): name it, one of {sorted(DATASETS)} "
                             f"(dataset= or --dataset)")
        return RECIPE_DATASETS[gan.generator_name]
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    return dataset


def folder_train_steps(train_images):
    return int(np.clip(FOLDER_EPOCHS * train_images // BATCH_SIZE, MIN_FOLDER_STEPS, TRAIN_STEPS['mnist']))


# ----------------------------------------------------------------- the classifier's parts

def network(images, num_classes, training, number):
    """Features [batch, FEATURES] and logits [batch, num_classes] of images [batch, H, W, C]
    by network `number`: per stage a 3x3 convolution, batch norm, ReLU and 2x2 max pooling,
    then the features."""
    with tf1.variable_scope(f'network{number}'):
        x = images
        for stage, channels in enumerate(CHANNELS):
            x = tf.nn.relu(batch_norm(conv3x3(x, channels, f'conv{stage}'), training,
                                      f'batch_norm{stage}', BATCH_NORM_MOMENTUM))
            x = tf.nn.max_pool2d(x, 2, 2, 'SAME')                    # [batch, H/2, W/2, channels]
        x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))
        # tanh, not ReLU: no feature is dead (always 0), so their covariance has full rank.
        features = tf.tanh(dense(x, FEATURES, 'dense'))               # [batch, FEATURES]
        if training:
            features = tf.nn.dropout(features, rate=DROPOUT, seed=SEED + number)
        return features, dense(features, num_classes, 'dense_1')


def conv3x3(x, filters, name):
    """3x3 convolution, stride 1, 'same' padding: a third of the book's 5x5 work per pixel."""
    kernel, bias = layer_weights(name, (3, 3, x.shape[-1], filters), filters, x.dtype)
    return tf.nn.conv2d(x, kernel, 1, 'SAME') + bias


def augmented(images, rng, upright=False):
    """uint8 images (n, H, W, C), each turned by up to MAX_ROTATION degrees, scaled by up to
    MAX_SCALE either way (unless `upright`) and moved by up to MAX_SHIFT pixels each way
    about its centre, as float32 pixels 0-255 (bilinear; the edge filled with 0, the
    background): the classifier learns shapes, not one way of placing them."""
    count, height, width, channels = images.shape
    max_rotation, max_scale = (0, 0) if upright else (MAX_ROTATION, MAX_SCALE)
    angles = np.radians(rng.uniform(-max_rotation, max_rotation, count))[:, None, None]
    scales = rng.uniform(1 - max_scale, 1 + max_scale, count)[:, None, None]
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (2, count))[:, :, None, None]
    # Each output pixel reads the input where the inverse transformation takes it: back by
    # the shift, then turned back and scaled back about the centre.
    centre = np.array([height - 1, width - 1])[:, None, None, None] / 2
    rows, columns = np.mgrid[:height, :width][:, None] - centre - shifts         # (n, H, W) each
    cos, sin = np.cos(angles) / scales, np.sin(angles) / scales
    source_rows = centre[0] + cos * rows - sin * columns
    source_columns = centre[1] + sin * rows + cos * columns
    index = np.broadcast_to(np.arange(count)[:, None, None], source_rows.shape)
    return np.stack([scipy.ndimage.map_coordinates(images[..., channel].astype(np.float32),
                                                   (index, source_rows, source_columns), order=1)
                     for channel in range(channels)], axis=-1)


# ----------------------------------------------------------------- figures

def gaussian(features):
    """Mean and covariance of features (n, d), in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(gaussian_a, gaussian_b):
    """|mean_a - mean_b|^2 + Tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)) of two (mean, cov)."""
    (mean_a, cov_a), (mean_b, cov_b) = gaussian_a, gaussian_b
    with warnings.catch_warnings():
        # Singular covariances (fewer images than features, identical images) are expected.
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    # The product of two covariances has real, non-negative eigenvalues; rounding leaves
    # tiny imaginary parts in its square root.
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root).real
    return float(max(distance, 0.0))


def mean_pairwise_distance(features):
    return float(np.mean(pdist(features)))


# ----------------------------------------------------------------- the classifier's cache

def fingerprint(images, labels, upright, networks, steps):
    """A hash of the training data and of the classifier's version and settings."""
    settings = (CLASSIFIER_VERSION, networks, CHANNELS, FEATURES, steps, BATCH_SIZE, LEARNING_RATE,
                DROPOUT, BATCH_NORM_MOMENTUM, MAX_SHIFT, MAX_ROTATION, MAX_SCALE, SEED, upright)
    digest = hashlib.sha256(repr((settings, images.shape)).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


def cache_folder(dataset, data_dir=None):
    """Where the classifier is cached: next to the data in `data_dir` if we may write there,
    else in the per-user cache of the dataset (where the loaders download it).
    $CGAN_DATA_DIR is an offline copy that the loaders never write to, and neither do we."""
    if data_dir is not None and is_writable(Path(data_dir)):
        return Path(data_dir)
    return datasets._cache_root() / dataset  # the loaders' cache, one definition


def is_writable(folder):
    """Writable, and not marked read-only: root may write anywhere, but should not write into a
    folder whose mode says read-only (a shared data copy)."""
    return (folder.is_dir() and os.access(folder, os.W_OK)
            and bool(folder.stat().st_mode & stat.S_IWUSR))


def load_or_train(classifier, path, images, positions, steps):
    """Load the classifier's weights from `path`, else train it for `steps` steps and save
    them there.

    A cache file that cannot be read (truncated, overwritten, of another network) is not an
    error: it is only a cache, so it is trained again and replaced, with a warning.
    """
    if path.exists():
        try:
            with np.load(path) as stored:
                classifier.load_weights({name: stored[name] for name in stored.files})
            return
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            warnings.warn(f"the cached classifier {path} is unreadable ({error}); "
                          f"training it again", stacklevel=3)
    classifier.train(images, positions, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **classifier.weights()))


# ----------------------------------------------------------------- command line

def format_table(figures):
    """The figures of `Judge.evaluate` as a table for people."""
    per_class = figures['per_class']
    diversity_by_name = {c['name']: c['diversity_ratio'] for c in per_class}
    name_width = max(5, *(len(c['name']) for c in per_class))
    lines = [
        f"{figures['dataset']}: {figures['images_per_class']} generated images per class",
        f"  classifier accuracy on real test images  {figures['classifier_accuracy']:7.1%}",
        f"  conditional accuracy                     {figures['conditional_accuracy']:7.1%}"
        f"   chance {figures['chance_accuracy']:.1%}",
        f"  Fréchet distance                         {figures['frechet_distance']:7.2f}"
        f"   floor (real vs real) {figures['frechet_floor']:.2f}",
        f"  diversity ratio                          {figures['diversity_ratio']:7.2f}"
        f"   lowest: " + ', '.join(f"{name} {diversity_by_name[name]:.2f}"
                                   for name in figures['lowest_diversity_classes']),
        '',
        f"  {'class':<{name_width}}  accuracy  diversity",
    ]
    lines += [f"  {c['name']:<{name_width}}  {c['conditional_accuracy']:8.1%}  {c['diversity_ratio']:9.2f}"
              for c in per_class]
    if 'classification_accuracy_score' in figures:
        score = figures['classification_accuracy_score']
        lines += [
            '',
            f"  classification accuracy score: a classifier trained on {score['per_class']} "
            f"images per class, tested on the real test images",
            f"    trained on generated images   {score['generated_accuracy']:7.1%}"
            f"   on real ones {score['real_accuracy']:.1%}   ratio {score['ratio']:.2f}"
            f"   chance {score['chance_accuracy']:.1%}",
            f"    {score['mix_real_per_class']} real per class           "
            f"{score['mix_real_accuracy']:7.1%}   with {score['mix_generated_per_class']} "
            f"generated per class {score['mix_real_plus_generated_accuracy']:.1%}",
        ]
    return '\n'.join(lines)


def main(argv=None):
    parser = OneLineErrorParser(
        prog='cgan.py evaluate',
        description="How good is a generator: conditional accuracy, Fréchet distance and "
                    "diversity of its images, judged by a classifier trained on the real data.")
    add_model_arguments(parser, 'a pickled CGan (runs/mnist/mnist.pkl) or a run folder '
                                '(runs/mnist/: its pickle, else its newest checkpoint)')
    parser.add_argument('--data-dir', help="the dataset's folder (default: $CGAN_DATA_DIR/<dataset>, "
                                           "else the per-user cache)")
    parser.add_argument('--per-class', type=int, default=100, help='generated images per class')
    parser.add_argument('--dataset', choices=sorted(DATASETS),
                        help="the model's dataset, when its generator_name is not a recipe's")
    parser.add_argument('--cas', type=int, metavar='N', nargs='?', const=CAS_PER_CLASS,
                        help=f"also the classification accuracy score: classifiers trained on N "
                             f"generated, or N real, images per class (default N: {CAS_PER_CLASS}), "
                             f"and on {MIX_REAL_PER_CLASS} real per class with and without "
                             f"{MIX_GENERATED_PER_CLASS} generated; a few classifier trainings")
    parser.add_argument('--seed', type=seed_number,
                        help='fixes the generated images, so the same figures come again')
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    options = parser.parse_args(argv)
    figures = evaluate_model(model_from(options), options.data_dir, options.per_class,
                             options.dataset, options.cas, options.seed)
    print(json.dumps(figures, indent=2) if options.json else format_table(figures))
