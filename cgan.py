"""The book's `cgan` module, at the repository's root: `from cgan import CGan`.

The model lives in the `condgan` package; this file keeps the book's import and command
working from the repository. `python cgan.py generate --help` lists the commands.
"""
if __name__ == '__main__':
    from condgan.recipes import generate_main  # the commands answer --help without TensorFlow
    generate_main()
else:
    from condgan.gan import CGan  # noqa: F401 (the book's name)
