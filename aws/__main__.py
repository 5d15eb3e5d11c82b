"""`python -m aws` from the repository: the AWS commands of `python -m condgan.aws`."""
import sys

from condgan.aws.__main__ import main

if __name__ == '__main__':
    sys.exit(main())
