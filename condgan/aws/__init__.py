"""Train a cgan recipe on an AWS GPU instance, safely: `python -m aws --help`.

The book had its readers launch a p3.2xlarge by hand, open Jupyter's port to the whole
internet and remember to stop the machine. This package scripts all of it with boto3:
SSH only from your own address, Jupyter through an SSH tunnel, results copied to S3 as
training goes, and an instance that terminates itself when training ends, fails, or runs
out of time. It never imports TensorFlow: it runs on a laptop without a GPU stack.
"""
