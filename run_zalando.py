"""The book's Fashion-MNIST (Zalando) recipe: python run_zalando.py --help"""
from condgan.commands import train_recipe

if __name__ == '__main__':
    train_recipe('zalando')
