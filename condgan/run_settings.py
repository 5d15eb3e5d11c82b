"""A run's settings, settled in one place: `settle` turns what the user gave and the run
folder into the `ModelConfig` and `TrainingSettings` that the run trains with.

Both the command line (`commands.train_recipe`) and `CGan.fit` call it, with the folder
locked, on a `runs.TrainingData`: what the data fixes of the model (image shape, classes,
class names) comes from there. A run's config.json is read back here too (`recorded`): each
value is checked by the dataclass it was written from, so every bound is written once.

Each setting is the value the user gave; else, when a run is resumed, the run's own (in its
config.json); else the default (a recipe's, or the dataclasses'; Adam's from the variant).
A given value that contradicts the run being resumed is refused, naming it; so is a folder
that holds training that a new run would overwrite. A folder without a checkpoint holds no
training to lose: a run there starts afresh, also when asked to resume.
"""
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from condgan.checks import BadValue
from condgan.model import ModelConfig
from condgan.precision import default_precision
from condgan.recipes import DEFAULT_VARIANT, VARIANT_DEFAULTS
from condgan.runs import CONFIG_FILE, RunFolderError, fresh_seed, read_json, run_files
from condgan.training import TrainingSettings

MODEL_SETTINGS = ('z_dim', 'alpha', 'smooth', 'variant')  # the rest of ModelConfig is the data's
TRAINING_SETTINGS = tuple(field.name for field in fields(TrainingSettings))
# Settings a resumed run may change: how long it goes on and how it computes, not what.
RESUMABLE_CHANGES = ('epochs', 'learning_rate', 'precision', 'xla', 'max_to_keep')
# How this machine computes best: never taken from a run that may have trained elsewhere.
MACHINE_SETTINGS = ('precision',)


@dataclass(frozen=True)
class Run:
    """What `settle` decided."""
    config: ModelConfig
    settings: TrainingSettings
    class_names: tuple
    resume: bool              # whether training continues from a checkpoint in the folder


def settle(folder, data, given, resume=False, defaults=None):
    """The `Run` that training in `folder` on `data` (a `runs.TrainingData`) does, from
    `given` ({setting name: value}, None for one the user did not give; names of
    MODEL_SETTINGS and TRAINING_SETTINGS) and `defaults` ({setting name: value}: e.g. a
    recipe's epochs). Call it with `folder` locked.
    """
    folder = Path(folder)
    given = {name: value for name, value in given.items() if value is not None}
    checkpointed = any(folder.glob('*.index'))
    if not resume and (checkpointed or any(folder.glob('*.pkl'))):
        taken = run_files(folder)
        raise RunFolderError(f"{folder} already holds a training run ({', '.join(taken[:3])}): continue "
                             f"it with --resume (fit(resume=True)), or choose another folder")
    if resume and not checkpointed:
        pickles = sorted(path.name for path in folder.glob('*.pkl'))
        if pickles:  # a trained model that a new run would overwrite
            raise RunFolderError(f"{folder} holds {', '.join(pickles)} but no checkpoint to resume: "
                                 f"choose another folder to train a new model")
        print(f"{folder} holds no checkpoint to resume: starting the run afresh", file=sys.stderr)
    record = run_record(folder) if resume else {}
    config, settings, class_names = resolved(data.image_shape, data.classes, data.class_names, given,
                                             {**record.get('model', {}), **record.get('training', {}),
                                              'class_names': record.get('class_names')}, defaults)
    if settings.seed is None:
        settings = TrainingSettings(**{**asdict(settings), 'seed': fresh_seed()})
    if checkpointed and record:
        check_same_run(folder, record, config, settings, class_names)
    return Run(config, settings, class_names, resume=checkpointed and resume)


def resolved(image_shape, classes, class_names, given, recorded=None, defaults=None):
    """(ModelConfig, TrainingSettings, class names) of data of `image_shape` and `classes`
    named `class_names` (None: as recorded, else the values), the settings from `given`, else
    `recorded`, else `defaults`, else the dataclasses' defaults; the seed stays None if none
    of them has one."""
    recorded = {name: value for name, value in (recorded or {}).items()
                if value is not None and name not in MACHINE_SETTINGS}
    chosen = {**(defaults or {}), **recorded, **given}
    config = ModelConfig(image_shape, classes, **{
        name: chosen[name] for name in MODEL_SETTINGS if name in chosen})
    optimiser = VARIANT_DEFAULTS[config.variant]
    precision = chosen.get('precision', 'auto')
    settings = TrainingSettings(**{**optimiser, **{name: chosen[name] for name in TRAINING_SETTINGS if name in chosen},
                                   'precision': default_precision() if precision == 'auto' else precision})
    names = class_names if class_names is not None else chosen.get('class_names')
    return config, settings, class_names_of(config.classes, names)


def class_names_of(classes, names=None):
    """The name of each class: `names` (one per class), else the class values."""
    if names is None:
        return tuple(str(value) for value in classes)
    if isinstance(names, str) or not hasattr(names, '__len__') or len(names) != len(classes):
        raise ValueError(f"class_names must hold one name for each of the {len(classes)} classes; "
                         f"got {names!r}")
    return tuple(str(name) for name in names)


def run_record(folder):
    """The run's config.json ({} if it has none: a run of the first version), checked to
    hold its model and training sections."""
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        return {}
    record = recorded(folder)
    for section in ('model', 'training'):
        if section not in record:
            raise RunFolderError(f"{path} has no {section!r} entry")
    return record


def recorded(folder):
    """The run's config.json ({} if none), every setting it records checked by the dataclass
    it was written from: a hand-edited value is a RunFolderError naming the file, the key, the
    value and what was expected. The machine's settings are not checked: never taken from a
    run, they may name a precision that only another version knows."""
    path = Path(folder) / CONFIG_FILE
    record = read_json(path) if path.exists() else {}
    for section, settings_class in (('model', ModelConfig), ('training', TrainingSettings)):
        settings = record.get(section, {})
        if not isinstance(settings, dict):
            raise RunFolderError(f"{path}: its {section!r} is not an object")
        names = [field.name for field in fields(settings_class) if field.name not in MACHINE_SETTINGS]
        try:
            settings_class(**{name: settings[name] for name in names if name in settings})
        except BadValue as error:
            raise RunFolderError(f"{path}: {section}.{error.name} is {json.dumps(error.value)}; "
                                 f"expected {error.expected}") from None
    names, classes = record.get('class_names'), record.get('model', {}).get('classes')
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                                  and (classes is None or len(names) == len(classes))):
        raise RunFolderError(f"{path}: class_names is {json.dumps(names)}; expected a list of "
                             f"{'' if classes is None else len(classes)} names, one per class")
    return record


def check_same_run(folder, record, config, settings, class_names):
    """The run in `folder` is this one: the same model, data and settings, but those a
    resumed run may change (RESUMABLE_CHANGES)."""
    ours = {**config.to_json(), **asdict(settings), 'class_names': list(class_names)}
    # A setting that an earlier version did not record had the value it now defaults to.
    theirs = {**ModelConfig().to_json(), 'variant': DEFAULT_VARIANT, **record['model'], **record['training'],
              **({'class_names': record['class_names']} if 'class_names' in record else {})}
    differences = [f"{name} {theirs[name]!r} -> {value!r}" for name, value in ours.items()
                   if name not in RESUMABLE_CHANGES and name in theirs
                   and normalized(theirs[name]) != normalized(value)]
    if differences:
        raise RunFolderError(f"{folder} was trained with other settings; resuming must keep them: "
                             f"{'; '.join(differences)}")


def normalized(value):
    """JSON's view of a value: tuples are lists, so a record compares with a live config."""
    return [normalized(v) for v in value] if isinstance(value, (list, tuple)) else value


class Data:
    """What a CGan pickled before `runs.TrainingData` holds as its `data`: only so that such a
    pickle loads (CGan.__setstate__ drops it)."""
