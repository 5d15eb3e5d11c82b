"""Checks of the Python API's arguments: a bad value is a ValueError that names the argument,
the value and what was expected, never a TypeError from deep inside NumPy or TensorFlow.

No TensorFlow here: the settings of a model and of its training check themselves with these.
"""
import numbers

import numpy as np


def whole_number(name, value, minimum=1, maximum=None):
    """`value` as an int, if it is a whole number (not a bool) from `minimum` to `maximum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def random_seed(name, value):
    """`value`, if it seeds NumPy's generator: a whole number of at least 0, or a sequence of
    them (entropy for a SeedSequence, such as [seed, class position])."""
    parts = value if isinstance(value, (list, tuple)) and value else [value]
    for part in parts:
        whole_number(name, part, 0)
    return value


def real_number(name, value, minimum=None, maximum=None, above=None, below=None):
    """`value` as a float, if it is a finite number in the bounds given: `minimum` <= value
    <= `maximum`, `above` < value < `below`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    value = float(value)
    bounds = [(minimum, lambda bound: value >= bound, 'at least'),
              (maximum, lambda bound: value <= bound, 'at most'),
              (above, lambda bound: value > bound, 'above'),
              (below, lambda bound: value < bound, 'below')]
    for bound, holds, words in bounds:
        if bound is not None and not holds(bound):
            raise ValueError(f"{name} must be {words} {bound}; got {value}")
    return value


def one_of(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
