"""The book's `datasets` module, at the repository's root: `from datasets import Dataset`.

The code lives in `condgan.datasets`. Hugging Face's package has this name too, so the
project installs only `condgan`, and this file serves the book's imports from here.
"""
from condgan.datasets import (  # noqa: F401 (the book's names)
    FASHION_LABELS, MNIST_LABELS, DataError, Dataset, DownloadError, emnist_label_names,
    load_emnist, load_fashion_mnist, load_hdw, load_mnist)
