"""The book's EMNIST Balanced recipe: python run_emnist.py --help"""
from condgan.recipes import main

if __name__ == '__main__':
    main('emnist')
