"""The book's `cgan` module, at the repository's root: `from cgan import CGan`.

The model lives in the `condgan` package; this file keeps the book's import and command
working from the repository. `python cgan.py --help` lists the commands (generate, export,
evaluate, synthesize).
"""
if __name__ == '__main__':
    from condgan.commands import main  # the commands answer --help without TensorFlow
    main()
else:
    from condgan.gan import CGan  # noqa: F401 (the book's name)
