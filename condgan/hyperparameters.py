"""A sweep job's settings as SageMaker's hyperparameters: a map of strings, both ways.

`python -m aws sweep launch` writes them (`to_hyperparameters`); the entry point that the job
runs, condgan/sagemaker_entry.py, reads them back into the training command line
(`to_arguments`), where run_<recipe>.py's or `cgan.py train`'s own parser checks them again.
Pure Python: both sides import it, neither needs the other.
"""

import json

RECIPE = "recipe"
# An image folder's job: the folder's name (its run folder's) and its archive's SHA-256.
FOLDER = "folder"
FOLDER_SHA256 = "folder-sha256"
SOURCE_KEYS = (RECIPE, FOLDER, FOLDER_SHA256)
# Generated images per class for the evaluate figures of each kept checkpoint; 0: none.
EVALUATE_PER_CLASS = "evaluate-per-class"
DEFAULT_EVALUATE_PER_CLASS = 100
# The keys that SageMaker's training toolkit adds itself (sagemaker_program, ...).
TOOLKIT_PREFIX = "sagemaker_"
SWITCH = ""  # the value of a flag without one, such as --skip-unreadable


def to_hyperparameters(source, flags, evaluate_per_class=DEFAULT_EVALUATE_PER_CLASS):
    """{name: text} for the job: what it trains on (`source`: {RECIPE: name}, or {FOLDER:
    name, FOLDER_SHA256: digest}), then each training flag given (name -> value as the
    training parser read it, such as {"beta1": 0.0, "seed": 0}), under its option's name
    without its dashes (`max-steps`); a switch (True) as SWITCH."""
    hyperparameters = {**source, EVALUATE_PER_CLASS: str(evaluate_per_class)}
    for name, value in flags.items():
        hyperparameters[name.replace("_", "-")] = SWITCH if value is True else str(value)
    return hyperparameters


def to_arguments(hyperparameters):
    """(source, evaluate_per_class, the training arguments) from the job's hyperparameters:
    hyperparameters.json's strings, or SM_HPS's values (which the toolkit may have read as
    JSON numbers)."""
    settings = {name: as_text(value) for name, value in hyperparameters.items()
                if not name.startswith(TOOLKIT_PREFIX)}
    source = {name: settings.pop(name) for name in SOURCE_KEYS if name in settings}
    if RECIPE not in source and set(source) != {FOLDER, FOLDER_SHA256}:
        raise ValueError(f"the job's hyperparameters name no {RECIPE!r}, nor a {FOLDER!r} and "
                         f"its {FOLDER_SHA256!r}: got {sorted(hyperparameters)}")
    per_class = settings.pop(EVALUATE_PER_CLASS, str(DEFAULT_EVALUATE_PER_CLASS))
    try:
        evaluate_per_class = int(per_class)
    except ValueError:
        raise ValueError(f"hyperparameter {EVALUATE_PER_CLASS}: expected a whole number, got "
                         f"{per_class!r}") from None
    arguments = [word for name, value in settings.items()
                 for word in ([f"--{name}"] if value == SWITCH else [f"--{name}", value])]
    return source, evaluate_per_class, arguments


def as_text(value):
    return value if isinstance(value, str) else json.dumps(value)
