"""Checks of the Python API's arguments: a bad value is a ValueError that names the argument,
the value and what was expected, never a TypeError from deep inside NumPy or TensorFlow.

No TensorFlow here: the settings of a model and of its training check themselves with these,
also when they are read back from a run's config.json (run_settings.recorded), whose message
names the file and key instead of the argument.
"""
import numbers

import numpy as np

# The generator's first layer holds (z_dim + classes) x 25,088 weights, three times with Adam's
# moments: 1.2 GB at this bound. Far above it TensorFlow fails with no word of z_dim.
MAX_Z_DIM = 4096


class BadValue(ValueError):
    """A value that an argument cannot take. Its message names the argument, what is wrong
    and the value; `expected` says all that the argument may be, for a message that names
    the value's place instead (a key of a run's config.json)."""

    def __init__(self, message, name, value, expected):
        super().__init__(message)
        self.name, self.value, self.expected = name, value, expected


def whole_number(name, value, minimum=1, maximum=None):
    """`value` as an int, if it is a whole number (not a bool) from `minimum` to `maximum`."""
    bound = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    expected = f"a whole number {'of ' if maximum is None else ''}{bound}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BadValue(f"{name} must be a whole number; got {value!r}", name, value, expected)
    if value < minimum or (maximum is not None and value > maximum):
        raise BadValue(f"{name} must be {bound}; got {value}", name, value, expected)
    return int(value)


def random_seed(name, value):
    """`value`, if it seeds NumPy's generator: a whole number of at least 0, or a sequence of
    them (entropy for a SeedSequence, such as [seed, class position])."""
    parts = value if isinstance(value, (list, tuple)) and value else [value]
    for part in parts:
        whole_number(name, part, 0)
    return value


def real_number(name, value, minimum=None, above=None, below=None):
    """`value` as a float, if it is a finite number in the bounds given: at least `minimum`
    (or above `above`), and below `below`."""
    bounds = [(minimum, lambda bound: value >= bound, 'at least'),
              (above, lambda bound: value > bound, 'above'),
              (below, lambda bound: value < bound, 'below')]
    if minimum is not None and below is not None:
        expected = f"a number in [{minimum}, {below})"
    else:
        expected = ' '.join(['a number'] + [f"{'of ' if words == 'at least' else ''}{words} {bound}"
                                            for bound, _, words in bounds if bound is not None])
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise BadValue(f"{name} must be a finite number; got {value!r}", name, value, expected)
    for bound, holds, words in bounds:
        if bound is not None and not holds(bound):
            raise BadValue(f"{name} must be {words} {bound}; got {float(value)}", name, value, expected)
    return float(value)


def one_of(name, value, choices):
    expected = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str) or value not in choices:
        raise BadValue(f"{name} must be {expected}; got {value!r}", name, value, expected)
    return value


def true_or_false(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise BadValue(f"{name} must be True or False; got {value!r}", name, value, 'True or False')
    return bool(value)


def none_or(check, name, value, *bounds):
    """None, or `value` as `check` (such as whole_number) takes it with `bounds`."""
    if value is None:
        return None
    try:
        return check(name, value, *bounds)
    except BadValue as error:
        raise BadValue(str(error), name, value, f'None or {error.expected}') from None
