"""How the book gives the class to an image network: its one-hot vector as "label planes".

No TensorFlow here: `Dataset.label_planes` serves them as NumPy arrays, and the book's
discriminator builds the same planes inside its graph, from this one definition.
"""
import numpy as np


def label_planes(one_hot, height, width):
    """One-hot labels [batch, K] repeated at every pixel: [batch, height, width, K], as
    extra image channels. `one_hot` is a NumPy array or a TensorFlow tensor (broadcasting
    against a NumPy array of zeros works in both), and so is the result."""
    return one_hot[:, np.newaxis, np.newaxis, :] + np.zeros((1, height, width, 1), np.float32)
