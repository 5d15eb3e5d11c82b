"""cgan: the conditional GAN of "TensorFlow Deep Learning Projects" (Packt, 2018), on TensorFlow 2.

Everything the project installs lives in this one package, so that it shares an environment
with any other (Hugging Face's `datasets` and `evaluate` among them). The repository's root
files `cgan.py`, `datasets.py` and `run_*.py` are the book's entry points into it.
Importing this package imports nothing heavy: `condgan.aws` runs without TensorFlow.
"""
