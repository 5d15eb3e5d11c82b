"""How good is a generator: a small classifier, trained on the real images, judges its images.

    python evaluate.py runs/mnist/mnist.pkl [--data-dir D] [--per-class N] [--dataset NAME] [--json]

A small convolutional classifier is trained once per dataset (MNIST, Fashion-MNIST or EMNIST
Balanced) on the real training split, and cached. It then looks at N generated images per class:

- conditional accuracy: how often it sees the class that was asked for (chance: 1 / classes);
- Fréchet distance between Gaussians fitted to its penultimate-layer features of the generated
  images and of the real test images, beside the floor: the same distance between two halves of
  the real test images;
- diversity ratio: per class, the mean distance between the features of two generated images
  over the same for two real ones; far below 1 means mode collapse.

`evaluate_model(gan)` does it for a trained CGan. During training, build a `Judge` once and call
`judge.evaluate_generator(generate)` as often as you like.
"""
import argparse
import hashlib
import json
import os
import pickle
import stat
import sys
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import scipy.linalg
import tensorflow as tf
from scipy.spatial.distance import pdist

from condgan import datasets
from condgan.gan import CGan, conv, dense
from condgan.recipes import RECIPES

tf1 = tf.compat.v1

# The book's recipes know each dataset's loader and class names (EMNIST: Balanced).
DATASETS = {recipe.dataset: recipe for recipe in RECIPES.values()}  # mnist, fashion, emnist
# A recipe's name, which is its model's generator_name -> the recipe's dataset.
RECIPE_DATASETS = {name: recipe.dataset for name, recipe in RECIPES.items()}

# The classifier. Bump CLASSIFIER_VERSION when its network or training changes, so that no
# cached classifier of the old kind is used (the settings below are in the cache key too).
CLASSIFIER_VERSION = 1
FEATURES = 64           # penultimate-layer width: small, so the Fréchet distance is fast and stable
TRAIN_STEPS = 1000      # about 6 s on two CPU cores; accuracy ~97% MNIST, ~88% Fashion, ~80% EMNIST
BATCH_SIZE = 64
LEARNING_RATE = 0.001   # Adam
SEED = 0
JUDGE_BATCH = 1000      # images per session.run when judging
LOWEST_CLASSES = 3      # classes named as the least diverse


class Classifier:
    """A small convolutional network in its own graph and session: for images in [-1, 1] (the
    generator's range), the class it sees and the features of its penultimate layer."""

    def __init__(self, image_shape, num_classes):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(SEED)
            self.images = tf1.placeholder(tf.float32, (None, *image_shape), name='images')
            self.labels = tf1.placeholder(tf.int64, (None,), name='labels')  # class positions
            x = tf.nn.relu(conv(self.images, 16, 2, 'conv2d'))          # [batch, H/2, W/2, 16]
            x = tf.nn.relu(conv(x, 32, 2, 'conv2d_1'))                  # [batch, H/4, W/4, 32]
            x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))))          # [batch, H/4*W/4*32]
            # tanh, not ReLU: no feature is dead (always 0), so their covariance has full rank.
            self.features = tf.tanh(dense(x, FEATURES, 'dense'))        # [batch, FEATURES]
            logits = dense(self.features, num_classes, 'dense_1')       # [batch, K]
            self.predictions = tf.argmax(logits, axis=1)                # [batch]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=self.labels, logits=logits))
            self.train_step = tf1.train.AdamOptimizer(LEARNING_RATE).minimize(loss)
            self.variables = {v.op.name: v for v in tf1.trainable_variables()}
            self.initializer = tf1.global_variables_initializer()
            self.graph.finalize()
        self.session = tf1.Session(graph=self.graph)

    def train(self, images, positions):
        """Train from scratch on uint8 images and their class positions."""
        self.session.run(self.initializer)
        rng = np.random.default_rng(SEED)
        for _ in range(TRAIN_STEPS):
            batch = rng.integers(0, len(images), BATCH_SIZE)
            self.session.run(self.train_step, {self.images: to_generator_range(images[batch]),
                                               self.labels: positions[batch]})

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
    `frechet_floor`, `classifier_path` (its cache file).
    """

    def __init__(self, dataset, data_dir=None):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
        train_images, train_labels = DATASETS[dataset].load('train', data_dir=data_dir)
        test_images, test_labels = DATASETS[dataset].load('test', data_dir=data_dir)
        self.dataset = dataset
        self.classes = np.unique(train_labels).tolist()
        self.class_names = DATASETS[dataset].class_names(data_dir)
        self.image_shape = train_images.shape[1:]
        self.classifier = Classifier(self.image_shape, len(self.classes))
        self.classifier_path = cache_folder(dataset, data_dir) / (
            f'cgan-classifier-{dataset}-{fingerprint(train_images, train_labels)}.npz')
        load_or_train(self.classifier, self.classifier_path, train_images,
                      np.searchsorted(self.classes, train_labels))

        test_positions = np.searchsorted(self.classes, test_labels)
        test_features, predicted = self.classifier.judge(to_generator_range(test_images))
        self.classifier_accuracy = float(np.mean(predicted == test_positions))
        self.test_gaussian = gaussian(test_features)
        halves = np.array_split(np.random.default_rng(SEED).permutation(len(test_images)), 2)
        self.frechet_floor = frechet_distance(*(gaussian(test_features[half]) for half in halves))
        self.test_spread = [mean_pairwise_distance(test_features[test_positions == position])
                            for position in range(len(self.classes))]

    @classmethod
    def for_model(cls, gan, data_dir=None, dataset=None):
        """The Judge of the dataset a CGan was trained on (see `dataset_of`), checked to fit it."""
        judge = cls(dataset_of(gan, dataset), data_dir)
        try:
            judge.check_model(gan)
        except ValueError:
            judge.close()
            raise
        return judge

    def check_model(self, gan):
        """A ValueError unless the CGan draws this dataset's image shape and classes."""
        if tuple(gan.image_shape) != tuple(self.image_shape):
            raise ValueError(f"the model draws images of shape {tuple(gan.image_shape)} but "
                             f"{self.dataset}'s are {tuple(self.image_shape)}")
        if list(gan.classes) != self.classes:
            raise ValueError(f"the model's classes {list(gan.classes)} are not {self.dataset}'s "
                             f"{self.classes}")

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


def evaluate_model(gan, data_dir=None, per_class=100, dataset=None):
    """The figures of `Judge.evaluate` for `per_class` images per class from `gan.generate_new`.

    `dataset` ('mnist', 'fashion' or 'emnist') names the dataset the model was trained on;
    without it the model's generator_name tells (see `dataset_of`).
    """
    with Judge.for_model(gan, data_dir, dataset) as judge:
        return judge.evaluate_generator(
            lambda position, count: gan.generate_new(gan.classes[position], rows=1, cols=count,
                                                     plot=False),
            per_class)


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


# ----------------------------------------------------------------- figures

def to_generator_range(images):
    """uint8 images as the generator draws them: float32 in [-1, 1]."""
    return images.astype(np.float32) / 255 * 2 - 1


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

def fingerprint(images, labels):
    """A hash of the training data and of the classifier's version and settings."""
    digest = hashlib.sha256(repr((CLASSIFIER_VERSION, FEATURES, TRAIN_STEPS, BATCH_SIZE,
                                  LEARNING_RATE, SEED, images.shape)).encode())
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


def load_or_train(classifier, path, images, positions):
    """Load the classifier's weights from `path`, else train it and save them there.

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
    classifier.train(images, positions)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name, then renamed: a crash never leaves half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix='.tmp', delete=False) as f:
        np.savez(f, **classifier.weights())
    os.replace(f.name, path)


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
    return '\n'.join(lines)


def load_model(path):
    with open(path, 'rb') as f:
        gan = pickle.load(f)
    if not isinstance(gan, CGan):
        raise ValueError(f"{path} holds a {type(gan).__name__}, not a pickled CGan")
    return gan


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="How good is a generator: conditional accuracy, Fréchet distance and "
                    "diversity of its images, judged by a classifier trained on the real data.")
    parser.add_argument('model', help='a pickled CGan (pickle.dump(gan, f) after training)')
    parser.add_argument('--data-dir', help="the dataset's folder (default: $CGAN_DATA_DIR/<dataset>, "
                                           "else the per-user cache)")
    parser.add_argument('--per-class', type=int, default=100, help='generated images per class')
    parser.add_argument('--dataset', choices=sorted(DATASETS),
                        help="the model's dataset, when its generator_name is not a recipe's")
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    options = parser.parse_args(argv)
    try:
        figures = evaluate_model(load_model(options.model), options.data_dir, options.per_class,
                                 options.dataset)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        sys.exit(f"evaluate.py: error: {error}")
    print(json.dumps(figures, indent=2) if options.json else format_table(figures))


if __name__ == '__main__':
    main()
