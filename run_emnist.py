"""The book's EMNIST Balanced recipe: python run_emnist.py --help"""
from condgan.commands import train_recipe

if __name__ == '__main__':
    train_recipe('emnist')
