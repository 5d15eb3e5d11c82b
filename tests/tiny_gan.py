"""A CGan trained for one step on a few real MNIST images: a model to export and evaluate."""
import numpy as np

from condgan.gan import CGan
from condgan.datasets import Dataset, load_mnist


def tiny_mnist_gan(out_dir, generator_name='mnist'):
    images, labels = load_mnist()
    four_per_digit = np.concatenate([np.flatnonzero(labels == digit)[:4] for digit in range(10)])
    dataset = Dataset(images[four_per_digit], labels[four_per_digit], channels=1, seed=0)
    gan = CGan(dataset, batch_size=8, generator_name=generator_name, out_dir=str(out_dir), seed=1)
    gan.fit(max_steps=1, save_every_n=1, plot=False)
    return gan
