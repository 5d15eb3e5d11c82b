"""Fixtures that several test files share."""
import pytest

from condgan.datasets import Dataset, load_mnist


@pytest.fixture(scope='module')
def mnist():
    images, labels = load_mnist()
    return images[:200], labels[:200]


@pytest.fixture
def dataset(mnist):
    return Dataset(*mnist, channels=1, seed=0)
