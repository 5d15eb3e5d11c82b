"""Turn a finished run folder into a generator that ships with cgan (condgan/generators/).

    python run_mnist.py --variant modern --max-steps 3000 --seed 0 --out-dir /tmp/pretrain
    python benchmarks/make_pretrained.py /tmp/pretrain/mnist mnist

Writes NAME.npz (float16 weights) and NAME.json: the run's recipe, seed, steps and data
checksums (from its run.json), and `cgan.py evaluate`'s figures of the shipped (float16)
weights, judged at --seed 0 so that they come again.
"""
import argparse
import datetime
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from condgan import pretrained  # noqa: E402
from condgan.runs import read_json  # noqa: E402

EVALUATION_SEED = 0
PER_CLASS = 1000  # generated images per class judged: figures steady to a few tenths of a point


def cpu_name():
    """The CPU's model name (Linux), else what the platform says."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run', help='a finished run folder, such as runs/mnist')
    parser.add_argument('name', help='the shipped name: mnist, fashion or emnist')
    parser.add_argument('--data-dir', help="the dataset's folder, for evaluate's classifier")
    options = parser.parse_args()

    from condgan import evaluate
    from condgan.gan import CGan, load_model
    run = read_json(Path(options.run) / 'run.json')
    if 'finished' not in run:
        sys.exit(f'{options.run}/run.json: the run has not finished')
    [session] = run['sessions'][-1:]
    arguments = session['arguments']
    recipe = {key: arguments[key] for key in ('variant', 'batch_size', 'z_dim', 'learning_rate', 'beta1')}
    command = (f"python run_{run['recipe']}.py --variant {arguments['variant']} "
               f"--max-steps {run['steps']} --seed {run['seed']}")
    record = {
        'recipe': run['recipe'], 'command': command, 'settings': recipe,
        'seed': run['seed'], 'steps': run['steps'], 'finished': run['finished'],
        'training_seconds': sum(s.get('seconds', 0) for s in run['sessions']),
        'machine': cpu_name(), 'versions': session['versions'],
        'data': {'images': run['data']['images'],
                 'sha256': {Path(path).name: digest for path, digest in run['data']['sha256'].items()}},
    }
    pretrained.write(load_model(options.run), options.name, record)

    # The figures of what ships: the float16 weights, read back as every user reads them.
    shipped = CGan.pretrained(options.name)
    figures = evaluate.evaluate_model(shipped, options.data_dir, PER_CLASS, seed=EVALUATION_SEED)
    print(evaluate.format_table(figures))
    figures.update(classifier_version=evaluate.CLASSIFIER_VERSION,
                   evaluated=datetime.date.today().isoformat())
    figures['command'] = f'python cgan.py evaluate --pretrained {options.name} --per-class {PER_CLASS} ' \
                         f'--seed {EVALUATION_SEED}'
    pretrained.write(shipped, options.name, {**record, 'evaluation': figures})
    for suffix in ('.npz', '.json'):
        path = pretrained.FOLDER / f'{options.name}{suffix}'
        print(f'{path}: {path.stat().st_size / 1e6:.2f} MB')


if __name__ == '__main__':
    main()
