"""A sweep job's settings as SageMaker's hyperparameters: a map of strings, both ways.

`python -m aws sweep launch` writes them (`to_hyperparameters`); the entry point that the job
runs, condgan/sagemaker_entry.py, reads them back into run_<recipe>.py's command line
(`to_arguments`), where that script's own parser checks them again. Nothing here imports
TensorFlow.
"""

import json

RECIPE = "recipe"
# Generated images per class for the evaluate figures of each kept checkpoint; 0: none.
EVALUATE_PER_CLASS = "evaluate-per-class"
DEFAULT_EVALUATE_PER_CLASS = 100
# The keys that SageMaker's training toolkit adds itself (sagemaker_program, ...).
TOOLKIT_PREFIX = "sagemaker_"


def to_hyperparameters(recipe, flags, evaluate_per_class=DEFAULT_EVALUATE_PER_CLASS):
    """{name: text} for the job: the recipe, then each training flag given (name -> value as
    the training parser read it, such as {"beta1": 0.0, "seed": 0}), under its option's
    name without its dashes (`max-steps`). Every flag a sweep takes has a value (--resume,
    the one switch, is the entry point's own choice)."""
    hyperparameters = {RECIPE: recipe, EVALUATE_PER_CLASS: str(evaluate_per_class)}
    for name, value in flags.items():
        hyperparameters[name.replace("_", "-")] = str(value)
    return hyperparameters


def to_arguments(hyperparameters):
    """(recipe, evaluate_per_class, the run_<recipe>.py arguments) from the job's
    hyperparameters: hyperparameters.json's strings, or SM_HPS's values (which the toolkit
    may have read as JSON numbers)."""
    settings = {name: as_text(value) for name, value in hyperparameters.items()
                if not name.startswith(TOOLKIT_PREFIX)}
    if RECIPE not in settings:
        raise ValueError(f"the job's hyperparameters name no {RECIPE!r}: got {sorted(settings)}")
    recipe = settings.pop(RECIPE)
    per_class = settings.pop(EVALUATE_PER_CLASS, str(DEFAULT_EVALUATE_PER_CLASS))
    try:
        evaluate_per_class = int(per_class)
    except ValueError:
        raise ValueError(f"hyperparameter {EVALUATE_PER_CLASS}: expected a whole number, got "
                         f"{per_class!r}") from None
    arguments = [word for name, value in settings.items() for word in (f"--{name}", value)]
    return recipe, evaluate_per_class, arguments


def as_text(value):
    return value if isinstance(value, str) else json.dumps(value)
