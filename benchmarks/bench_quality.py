"""Image quality against training steps and time, per variant and seed, on a recipe's data.

Trains each variant (model.py: 'book', 'modern') on the same data (--recipe: mnist, zalando
or emnist; default mnist) for --steps steps under each seed, and judges its generator with
condgan.evaluate every --eval-every steps (100 images per class). Prints, per variant and seed, the figures at each judged step, then the
training time to reach 80%, 90% and 95% conditional accuracy (at the first judged step that
reaches it; judging is not counted as training time). The step rate is the machine's: run
it on a quiet machine. Run it from the repository's root, as a module, so that it imports
the checkout's condgan:

    python -m benchmarks.bench_quality book modern --out-dir runs/quality --steps 3000 --eval-every 250 --seeds 0 1
    python -m benchmarks.bench_quality book modern --recipe zalando --out-dir runs/quality --steps 3000 --eval-every 500
"""
import argparse
import json
import time

from condgan import evaluate
from condgan.datasets import Dataset
from condgan.gan import CGan
from condgan.precision import COMPUTE_DTYPES
from condgan.recipes import RECIPES, VARIANT_DEFAULTS

THRESHOLDS = (0.80, 0.90, 0.95)
PER_CLASS = 100


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('variants', nargs='+', choices=list(VARIANT_DEFAULTS))
    parser.add_argument('--recipe', choices=list(RECIPES), default='mnist', help='whose data and classes')
    parser.add_argument('--data-dir', help="the recipe's data folder (default: the loaders' usual search)")
    parser.add_argument('--out-dir', required=True, help='a model folder per variant and seed goes here')
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--eval-every', type=int, default=250)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--precision', choices=['auto', *COMPUTE_DTYPES], default='float32',
                        help="the training step's (default float32, as the README's figures; "
                             "'auto': this machine's default)")
    args = parser.parse_args()

    recipe = RECIPES[args.recipe]
    images, labels = recipe.load('train', data_dir=args.data_dir)
    results = {}
    with evaluate.Judge(recipe.dataset, args.data_dir) as judge:
        print(f'classifier accuracy on the real test images: {judge.classifier_accuracy:.4f}; '
              f'Fréchet floor {judge.frechet_floor:.3f}')
        for variant in args.variants:
            for seed in args.seeds:
                results[f'{variant} seed {seed}'] = train_and_judge(
                    variant, seed, Dataset(images, labels, channels=1, seed=seed), judge, args)
    print_table(results, judge.frechet_floor)
    print(json.dumps(results))


def train_and_judge(variant, seed, dataset, judge, args):
    """[{step, seconds (of training so far), figures...}] every --eval-every steps."""
    rows = []
    started = time.perf_counter()
    judging = 0.0  # seconds spent judging, not training

    def evaluation(generate, per_class):
        nonlocal judging
        began = time.perf_counter()
        figures = judge.evaluate_generator(generate, PER_CLASS)
        rows.append({'step': (len(rows) + 1) * args.eval_every,
                     'seconds': round(began - started - judging, 1),
                     'conditional_accuracy': figures['conditional_accuracy'],
                     'worst_class_accuracy': min(row['conditional_accuracy'] for row in figures['per_class']),
                     'frechet_over_floor': figures['frechet_distance'] / figures['frechet_floor'],
                     'diversity_ratio': figures['diversity_ratio']})
        judging += time.perf_counter() - began
        return figures

    # A checkpoint at every judged step, all kept: another classifier can judge them later.
    gan = CGan(dataset, epochs=10_000, generator_name=args.recipe, seed=seed, variant=variant,
               out_dir=f'{args.out_dir}/{variant}-seed{seed}', precision=args.precision,
               class_names=RECIPES[args.recipe].class_names(args.data_dir), max_to_keep=args.steps // args.eval_every + 1)
    gan.fit(**VARIANT_DEFAULTS[variant], max_steps=args.steps, save_every_n=args.eval_every, plot=False,
            evaluation=evaluation, eval_every=args.eval_every)
    gan.close()
    return rows


def print_table(results, floor):
    print(f"\n{'variant, seed':<18} {'step':>6} {'train s':>8} {'accuracy':>9} {'worst class':>12} "
          f"{'Fréchet/floor':>14} {'diversity':>10}")
    for name, rows in results.items():
        for row in rows:
            print(f"{name:<18} {row['step']:>6} {row['seconds']:>8.0f} {row['conditional_accuracy']:>9.3f} "
                  f"{row['worst_class_accuracy']:>12.2f} {row['frechet_over_floor']:>14.1f} "
                  f"{row['diversity_ratio']:>10.3f}")
    print("\ntraining time to reach a conditional accuracy (first judged step at or above it):")
    for name, rows in results.items():
        reached = []
        for threshold in THRESHOLDS:
            first = next((row for row in rows if row['conditional_accuracy'] >= threshold), None)
            reached.append(f"{threshold:.0%}: " + ('not reached' if first is None else
                                                   f"{first['seconds']:.0f} s (step {first['step']})"))
        print(f"{name:<18} " + '; '.join(reached))


if __name__ == '__main__':
    main()
