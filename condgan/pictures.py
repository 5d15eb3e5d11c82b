"""Pictures of generated images: grids, classes.png and the two GIFs a run leaves.

One pixel mapping serves them all: the generator's [-1, 1] to 0-255 (`to_pixels`). It needs
no TensorFlow, so the commands can draw without loading it.
"""
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from condgan.files import write_atomically

CLASS_COLUMNS = 10         # images per class in classes.png
LABEL_WIDTH = 80           # pixels left of classes.png's rows for the class names
INTERPOLATION_STEPS = 50   # frames of interpolation.gif
INTERPOLATION_SCALE = 4    # its 28x28 images are enlarged to 112x112
PROGRESS_SCALE = 2         # progress.gif's sample grids are enlarged twice
FRAME_MS = 100             # interpolation.gif: 5 s from one class to the other
PROGRESS_FRAME_MS = 500


def to_pixels(images):
    """Generator images in [-1, 1] as uint8 0-255, of the same shape."""
    return np.clip(np.rint((np.asarray(images) + 1) * 127.5), 0, 255).astype(np.uint8)


def from_pixels(pixels, max_value=255):
    """Pixels 0-max_value as the generator's range [-1, 1] (float32), of the same shape."""
    return (np.asarray(pixels, np.float32) / max_value * 2 - 1).astype(np.float32)


def pictures_of(images):
    """Images in [-1, 1] (n, H, W, C) as what Pillow draws: (n, H, W) gray or (n, H, W, 3)."""
    pixels = to_pixels(images)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def images_grid(images, n_cols):
    """Images (n, H, W, C) in [-1, 1] as one uint8 picture, `n_cols` wide: (rows*H, cols*W)
    for one channel, (rows*H, cols*W, 3) for three. A last row that is not full stays black."""
    pixels = pictures_of(images)
    n_images, height, width = pixels.shape[:3]
    n_rows = -(-n_images // n_cols)
    padded = np.zeros((n_rows * n_cols,) + pixels.shape[1:], np.uint8)
    padded[:n_images] = pixels
    grid = padded.reshape((n_rows, n_cols) + pixels.shape[1:]).swapaxes(1, 2)
    return grid.reshape((n_rows * height, n_cols * width) + pixels.shape[3:])


def plot_images(images, n_cols):
    """Show a grid of images in [-1, 1] with matplotlib (inline in Jupyter)."""
    import matplotlib.pyplot as plt
    grid = images_grid(images, n_cols)
    plt.figure(figsize=(n_cols, -(-len(images) // n_cols)))
    plt.imshow(grid, cmap='gray' if grid.ndim == 2 else None, vmin=0, vmax=255)
    plt.axis('off')
    plt.show()


def plot_losses(step_losses, epoch_losses, steps_per_epoch, path):
    """losses.png: each step's losses (faint), their moving average, each epoch's mean."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 4))
    axes = figure.add_subplot()
    steps = step_losses[:, 0]
    window = max(1, len(steps) // 50)
    epoch_ends = np.minimum(np.arange(1, len(epoch_losses) + 1) * steps_per_epoch, steps[-1])
    for column, (name, color) in enumerate([('discriminator', 'tab:blue'), ('generator', 'tab:orange')]):
        losses = step_losses[:, column + 1]
        axes.plot(steps, losses, color=color, alpha=0.2, linewidth=0.8)
        smoothed = np.convolve(losses, np.ones(window) / window, mode='valid')
        axes.plot(steps[window - 1:], smoothed, color=color, label=name)
        axes.plot(epoch_ends, epoch_losses[:, column], 'o', color=color)
    axes.set_title(f'faint: each step; line: moving mean of {window} steps; dots: epoch means',
                   fontsize=9)
    axes.set_xlabel('step')
    axes.set_ylabel('loss')
    axes.legend()
    write_atomically(path, lambda f: figure.savefig(f, format='png'))
    show_in_notebook(path)


def save_png(picture, path):
    """A PNG written whole or not at all: a crash or a full disk never leaves half a file."""
    write_atomically(path, lambda f: Image.fromarray(picture).save(f, format='PNG'))


def show_in_notebook(path):
    """Show a PNG inline when running in Jupyter; elsewhere the file is enough."""
    try:
        shell = get_ipython()  # noqa: F821 (defined only inside IPython)
    except NameError:
        return
    if type(shell).__name__ == 'ZMQInteractiveShell':
        from IPython.display import Image as NotebookImage, display
        display(NotebookImage(filename=path))


def save_classes_png(images, row_names, path):
    """`images` (in [-1, 1]) in rows of CLASS_COLUMNS, each row's name at its left."""
    grid = Image.fromarray(images_grid(images, CLASS_COLUMNS))
    row_height = images.shape[1]
    picture = Image.new(grid.mode, (LABEL_WIDTH + grid.width, grid.height))
    picture.paste(grid, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=min(14, row_height // 2))
    for row, name in enumerate(row_names):
        draw.text((4, (row + 0.5) * row_height), str(name), fill='white', font=font, anchor='lm')
    save_png(np.asarray(picture), path)


def save_interpolation_gif(images, start_name, end_name, path):
    """The frames of `CGan.interpolate`, each above a slider from one class name to the other."""
    font = ImageFont.load_default(size=10)
    frames = []
    for index, image in enumerate(pictures_of(images)):
        picture = enlarged(image, INTERPOLATION_SCALE)
        frame, draw = with_strip(picture, 24)
        draw.text((2, picture.height + 2), str(start_name), fill='white', font=font)
        draw.text((frame.width - 2, picture.height + 2), str(end_name), fill='white', font=font,
                  anchor='ra')
        slider_end = round(index / (len(images) - 1) * (frame.width - 1))
        draw.rectangle((0, frame.height - 5, slider_end, frame.height - 1), fill='white')
        frames.append(frame)
    save_gif(frames, path, FRAME_MS)


def save_progress_gif(run_dir, path):
    """The run's sample grids in step order, each captioned with its step."""
    steps = sorted(int(match[1]) for file in run_dir.iterdir()
                   if (match := re.fullmatch(r'samples_(\d+)\.png', file.name)))
    frames = []
    for step in steps:
        with Image.open(run_dir / f'samples_{step}.png') as grid:
            picture = grid.resize((grid.width * PROGRESS_SCALE, grid.height * PROGRESS_SCALE),
                                  Image.Resampling.NEAREST)
        frame, draw = with_strip(picture, 20)
        draw.text((frame.width / 2, picture.height + 10), f'step {step}', fill='white',
                  font=ImageFont.load_default(size=12), anchor='mm')
        frames.append(frame)
    save_gif(frames, path, PROGRESS_FRAME_MS)


def enlarged(pixels, scale):
    picture = Image.fromarray(pixels)
    return picture.resize((picture.width * scale, picture.height * scale),
                          Image.Resampling.NEAREST)


def with_strip(picture, height):
    """A new black canvas with `picture` at the top and `height` free pixels under it."""
    canvas = Image.new(picture.mode, (picture.width, picture.height + height))
    canvas.paste(picture, (0, 0))
    return canvas, ImageDraw.Draw(canvas)


def save_gif(frames, path, frame_ms):
    """An endlessly looping GIF. Pillow merges identical neighbours, so frames must differ."""
    write_atomically(path, lambda f: frames[0].save(f, format='GIF', save_all=True,
                                                     append_images=frames[1:], duration=frame_ms,
                                                     loop=0))
