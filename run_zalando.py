"""The book's Fashion-MNIST (Zalando) recipe: python run_zalando.py --help"""
from condgan.recipes import main

if __name__ == '__main__':
    main('zalando')
