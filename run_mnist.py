"""The book's MNIST recipe: python run_mnist.py --help"""
from condgan.recipes import main

if __name__ == '__main__':
    main('mnist')
