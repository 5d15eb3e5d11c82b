"""The book's MNIST recipe: python run_mnist.py --help"""
from recipes import main

if __name__ == '__main__':
    main('mnist')
