"""What the CGan tests share: the variables the original's tf.layers gave (SPEC section 2), a
small CGan on real MNIST, and Python in a new process."""
import os
import subprocess
import sys

import tensorflow as tf

from condgan.gan import CGan

tf1 = tf.compat.v1
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# SPEC section 2: the variables tf.layers gave the original, at z_dim 96, 10 classes, 28x28x1.
ORIGINAL_GENERATOR = {
    'generator/dense/kernel': (106, 7 * 7 * 512), 'generator/dense/bias': (7 * 7 * 512,),
    'generator/conv2d_transpose/kernel': (5, 5, 256, 512), 'generator/conv2d_transpose/bias': (256,),
    'generator/conv2d_transpose_1/kernel': (5, 5, 128, 256), 'generator/conv2d_transpose_1/bias': (128,),
    'generator/conv2d_transpose_2/kernel': (5, 5, 1, 128), 'generator/conv2d_transpose_2/bias': (1,),
}
ORIGINAL_DISCRIMINATOR = {
    'discriminator/conv2d/kernel': (5, 5, 11, 32), 'discriminator/conv2d/bias': (32,),
    'discriminator/conv2d_1/kernel': (5, 5, 32, 64), 'discriminator/conv2d_1/bias': (64,),
    'discriminator/conv2d_2/kernel': (5, 5, 64, 128), 'discriminator/conv2d_2/bias': (128,),
    'discriminator/dense/kernel': (7 * 7 * 128, 1), 'discriminator/dense/bias': (1,),
}
for network, sizes in (('generator', (512, 256, 128)), ('discriminator', (32, 64, 128))):
    table = ORIGINAL_GENERATOR if network == 'generator' else ORIGINAL_DISCRIMINATOR
    for suffix, size in zip(('', '_1', '_2'), sizes):
        for name in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            table[f'{network}/batch_normalization{suffix}/{name}'] = (size,)
MOVING = ('moving_mean', 'moving_variance')


def make_gan(dataset, tmp_path, **options):
    options = {'batch_size': 8, 'generator_name': 'mnist', 'seed': 1, **options}
    return CGan(dataset, out_dir=str(tmp_path), **options)


def trained(dataset, tmp_path, steps=2, **options):
    gan = make_gan(dataset, tmp_path, **options)
    gan.fit(max_steps=steps, save_every_n=steps, plot=False)
    return gan


def variable_shapes(graph):
    with graph.as_default():
        return {v.op.name: tuple(v.shape) for v in tf1.global_variables()
                if v.op.name.startswith(('generator/', 'discriminator/')) and '/Adam' not in v.op.name}


def run_python(code, cwd, timeout=120):
    """Python in a new process in `cwd`, with what the install made importable (the
    repository's root files only when `cwd` is the repository)."""
    env = {**without_pythonpath(), 'TF_CPP_MIN_LOG_LEVEL': '3'}
    return subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def without_pythonpath():
    return {name: value for name, value in os.environ.items() if name != 'PYTHONPATH'}
