"""The book's `python -m aws`, run from the repository; the code is in condgan/aws/."""
