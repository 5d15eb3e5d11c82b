"""The book's MNIST recipe: python run_mnist.py --help"""
from condgan.commands import train_recipe

if __name__ == '__main__':
    train_recipe('mnist')
