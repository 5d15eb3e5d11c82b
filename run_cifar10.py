"""The CIFAR-10 recipe, in colour: python run_cifar10.py --help"""
from condgan.commands import train_recipe

if __name__ == '__main__':
    train_recipe('cifar10')
