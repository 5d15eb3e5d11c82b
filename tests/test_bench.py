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
    """At an image folder's shape (32x32 RGB), not MNIST's."""
    result = subprocess.run(
        [sys.executable, str(REPO / 'bench.py'), '--batch', '8', '--steps', '1', '--repeats', '1',
         '--warmup', '1', '--variants', 'float32+book_layers', '--generate-counts', '1', '6',
         '--image-shape', '32x32x3', '--json'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rates = figures['train_img_per_sec']
    assert figures['batch'] == 8
    assert figures['image_shape'] == [32, 32, 3]
    assert set(rates) == {'book_style', 'default', 'float32+book_layers'}
    # Each kind's memory, from a process of its own: the graph and its steps take some.
    assert set(figures['memory_mb']) == set(rates)
    for memory in figures['memory_mb'].values():
        assert 100 <= memory['before_graph'] < memory['peak'] < 64_000
    # The table for people says what the JSON says.
    for name, rate in rates.items():
        memory = figures['memory_mb'][name]
        assert re.search(rf"^  {re.escape(name)} +{rate:.1f}   spread \d+% +{memory['peak']:,} MB "
                         rf"\({memory['before_graph']:,}\)$", result.stdout, re.MULTILINE)
    assert f"book-style step: {figures['speedup']:.2f}x" in result.stdout
    assert figures['graph_ops']['before'] == figures['graph_ops']['after']
    # In MB (getrusage gives KB): a process that has loaded TensorFlow holds hundreds of them.
    assert 100 <= figures['peak_rss_mb'] < 64_000
    # Gathering a batch in memory is a small part of a training step, which includes it.
    assert figures['batch_preparation_us'] < 1e6 * 8 / rates['default']
    assert set(figures['generate_seconds']) == {'1', '6'}
    assert all(0 < warm <= first for first, warm in figures['generate_seconds'].values())
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bench_refuses_a_shape_it_cannot_build_in_one_line():
    result = subprocess.run([sys.executable, str(REPO / 'bench.py'), '--image-shape', '32x32x4'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("bench.py: error: argument --image-shape: '32x32x4': "
                                              "expected positive sizes and 1 or 3 channels (see --help)")


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
