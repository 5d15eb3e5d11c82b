"""MODEL or --pretrained NAME: how every command that uses a trained generator names it.

A path is checked, and a shipped name looked up, before TensorFlow loads.
"""
from condgan import pretrained
from condgan.runs import model_source


def add_model_arguments(parser, model_help):
    """MODEL, or --pretrained NAME: how every command that uses a trained generator names it."""
    parser.add_argument('model', nargs='?', help=f'{model_help}; or use --pretrained')
    parser.add_argument('--pretrained', metavar='NAME',
                        help=f"a generator that ships with cgan, instead of MODEL: "
                             f"{', '.join(pretrained.names()) or 'none'} (no training or data needed)")


def model_from(options):
    """The CGan that `options.model` or `options.pretrained` names, refused with a ValueError
    naming the problem before TensorFlow loads."""
    if (options.model is None) == (options.pretrained is None):
        raise ValueError('name the model to use: MODEL (a pickle or a run folder) or '
                         '--pretrained NAME, one of them')
    if options.pretrained is not None:
        pretrained.describe(options.pretrained)
        from condgan.gan import CGan
        return CGan.pretrained(options.pretrained)
    model_source(options.model)
    from condgan.gan import load_model
    return load_model(options.model)


def model_name(options):
    """How a record names the model: its path, or `pretrained:NAME`."""
    return options.model if options.pretrained is None else f'pretrained:{options.pretrained}'
