"""Image quality of training settings at equal steps: does an option cost quality?

Trains the same MNIST model (same seed, same batches) under each setting for --steps steps,
judging the generator with condgan.evaluate every --eval-every steps, and prints the figures
side by side. Generation modes are compared on the final weights too: inference mode
(batch norm on moving statistics, no dropout: the default) and the original's (batch
statistics and dropout).

A setting is PRECISION, then +book_layers for the original's layer ops (see bench.py), +xla
for XLA.

    python bench_quality.py --out-dir runs/quality --steps 1500 float32 mixed_bfloat16
"""
import argparse
import contextlib
import json

from condgan import evaluate
from bench import book_layers
from condgan.gan import CGan
from condgan.training import EVALUATION_FIGURES
from condgan.datasets import Dataset, load_mnist


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('settings', nargs='+', metavar='PRECISION[+book_layers][+xla]')
    parser.add_argument('--data-dir', help='the MNIST folder (default: the loaders\' usual search)')
    parser.add_argument('--out-dir', required=True, help='one model folder per setting goes here')
    parser.add_argument('--steps', type=int, default=1500)
    parser.add_argument('--eval-every', type=int, default=500)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    images, labels = load_mnist('train', args.data_dir)
    dataset = Dataset(images, labels, channels=1, seed=args.seed)
    results = {}
    for setting in args.settings:
        gan = CGan(dataset, epochs=10_000, generator_name='mnist', seed=args.seed,
                   out_dir=f'{args.out_dir}/{setting}', precision=setting.split('+')[0],
                   xla='+xla' in setting)
        with book_layers() if '+book_layers' in setting else contextlib.nullcontext(), \
                evaluate.Judge.for_model(gan, args.data_dir) as judge:
            gan.fit(max_steps=args.steps, save_every_n=args.eval_every, plot=False,
                    evaluation=judge.evaluate_generator, eval_every=args.eval_every)
        results[setting] = gan.evaluations
        gan.legacy_generation = True  # the original's generation, same weights
        gan.close()
        original = evaluate.evaluate_model(gan, args.data_dir, per_class=50)
        results[f'{setting}, generated as the original'] = [
            {'step': args.steps, **{name: original[name] for name in EVALUATION_FIGURES}}]

    print(f"{'setting':<44} {'step':>6} " + ' '.join(f'{name:>20}' for name in EVALUATION_FIGURES))
    for setting, rows in results.items():
        for row in rows:
            print(f"{setting:<44} {row['step']:>6} " + ' '.join(f'{row[name]:>20.3f}' for name in EVALUATION_FIGURES))
    print(json.dumps(results))


if __name__ == '__main__':
    main()
