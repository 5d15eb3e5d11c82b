"""bench.py, the speed benchmark: it runs end to end on real MNIST and reports what the
README quotes, and its book-style step computes with the original's ops. Speed itself is
measured by running bench.py, never asserted here."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import bench
from condgan.datasets import Dataset
from condgan.gan import CGan
from condgan.training import build_training_graph

REPO = Path(__file__).resolve().parents[1]


def test_bench_reports_speeds_memory_ops_and_generation_as_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / 'bench.py'), '--batch', '8', '--steps', '1', '--repeats', '1',
         '--warmup', '1', '--variants', 'float32+book_layers', '--generate-counts', '1', '6', '--json'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rates = figures['train_img_per_sec']
    assert figures['batch'] == 8
    assert set(rates) == {'book_style', 'default', 'float32+book_layers'}
    # The table for people says what the JSON says.
    for name, rate in rates.items():
        assert re.search(rf'^  {re.escape(name)} +{rate:.1f}   spread', result.stdout, re.MULTILINE)
    assert f"book-style step: {figures['speedup']:.2f}x" in result.stdout
    assert figures['graph_ops']['before'] == figures['graph_ops']['after']
    # In MB (getrusage gives KB): a process that has loaded TensorFlow holds hundreds of them.
    assert 100 <= figures['peak_rss_mb'] < 64_000
    # Gathering a batch in memory is a small part of a training step, which includes it.
    assert figures['batch_preparation_us'] < 1e6 * 8 / rates['default']
    assert set(figures['generate_seconds']) == {'1', '6'}
    assert all(0 < warm <= first for first, warm in figures['generate_seconds'].values())
    assert list(tmp_path.iterdir()) == []  # nothing written


def op_types(build):
    gan = CGan(Dataset(np.zeros((4, 28, 28), np.uint8), [0, 1, 2, 3], channels=1), precision='float32', seed=0)
    return {op.type for op in build(gan).get_operations()}


def test_book_style_graphs_use_the_originals_layer_ops():
    build = lambda gan: build_training_graph(gan.config, gan.settings).graph
    with bench.book_layers():
        book = op_types(build)
        book_style = op_types(lambda gan: bench.BookStyleGraph(gan).graph)
    project = op_types(build)
    ours = {'LeakyRelu', 'BitwiseAnd', 'IdentityN'}  # IdentityN: a custom gradient
    assert 'Maximum' in book and not ours & book
    assert 'Maximum' in book_style and not ours & book_style
    assert ours <= project and 'Maximum' not in project


def test_the_quality_benchmark_runs_from_the_root_as_a_module():
    result = subprocess.run([sys.executable, '-m', 'benchmarks.bench_quality', '--help'], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'python -m benchmarks.bench_quality book modern' in result.stdout
