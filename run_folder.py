"""Train on your own images: python run_folder.py DIR --help (the same as python cgan.py train)"""
from condgan.commands import train_folder

if __name__ == '__main__':
    train_folder(prog='run_folder.py')
