"""`python cgan.py demo`: a page in the browser that draws with a trained generator.

    pip install -e ".[demo]"
    python cgan.py demo --pretrained mnist            # then open http://127.0.0.1:7860
    python cgan.py demo runs/mnist --port 8000

The page (Gradio, the ecosystem's way to show a model: in a browser, inline in Jupyter with
`page(gan).launch()`, or on Hugging Face Spaces) draws a grid of a class chosen by name, from
a seed (the same seed, the same images), and an interpolation from one class to another as a
GIF; the grid downloads as a PNG and the images as a float32 .npy array in [-1, 1].
It binds 127.0.0.1 unless --host says otherwise.
"""
import os
import tempfile
from pathlib import Path

import numpy as np

from condgan import pictures
from condgan.model_argument import add_model_arguments, model_from
from condgan.recipes import OneLineErrorParser, positive_int

INSTALL_HINT = 'the demo page needs Gradio, an optional extra: pip install -e ".[demo]"'
DEFAULT_PORT = 7860
MAX_GRID = 10   # a grid of at most 10 x 10 images
DEFAULT_GRID = 5


class Drawing:
    """What the page's buttons do, as files in `folder`: no Gradio here."""

    def __init__(self, gan, folder):
        self.gan = gan
        self.folder = Path(folder)

    def grid(self, class_name, seed, size):
        """A size x size grid of `class_name` from `seed`: (the PNG, [the PNG, the .npy])."""
        seed, size = int(seed), int(size)
        images = self.gan.generate_new(self.class_value(class_name), rows=size, cols=size,
                                       plot=False, seed=seed)
        stem = self.folder / f'{file_safe(class_name)}_seed{seed}_{size}x{size}'
        png, npy = stem.with_suffix('.png'), stem.with_suffix('.npy')
        pictures.save_png(pictures.images_grid(images, size), png)
        pictures.write_atomically(npy, lambda f: np.save(f, images))
        return str(png), [str(png), str(npy)]

    def interpolation(self, start_name, end_name, seed):
        """A GIF of one z while the class moves from `start_name` to `end_name`."""
        images = self.gan.interpolate(self.class_value(start_name), self.class_value(end_name),
                                      pictures.INTERPOLATION_STEPS, int(seed))
        path = self.folder / f'{file_safe(start_name)}_to_{file_safe(end_name)}_seed{int(seed)}.gif'
        pictures.save_interpolation_gif(images, start_name, end_name, path)
        return str(path)

    def class_value(self, class_name):
        return self.gan.classes[self.gan.class_names.index(class_name)]


def file_safe(name):
    """A class name in a file name: 'T-shirt/top' as 'T-shirt_top'."""
    return ''.join(c if c.isalnum() or c == '-' else '_' for c in name)


def page(gan, folder=None):
    """The demo page of a CGan, a gradio.Blocks: `.launch()` serves it (inline in Jupyter)."""
    import gradio as gr
    drawing = Drawing(gan, folder or tempfile.mkdtemp(prefix='cgan-demo-'))
    names = list(gan.class_names)
    with gr.Blocks(title='cgan demo') as blocks:
        gr.Markdown(f'## A conditional GAN: {gan.generator_name} ({len(names)} classes)')
        with gr.Row():
            class_name = gr.Dropdown(names, value=names[0], label='class',
                                     elem_id='class')
            seed = gr.Number(value=0, precision=0, minimum=0, label='seed (the same seed, the same images)',
                             elem_id='seed')
            size = gr.Slider(1, MAX_GRID, value=DEFAULT_GRID, step=1, label='grid size (images per side)',
                             elem_id='size')
        draw = gr.Button('Draw', variant='primary', elem_id='draw')
        with gr.Row():
            grid = gr.Image(label='grid', type='filepath', format='png', elem_id='grid')
            downloads = gr.File(label='downloads: the grid (PNG) and the images (.npy)',
                                file_count='multiple', elem_id='downloads')
        draw.click(drawing.grid, [class_name, seed, size], [grid, downloads], api_name='grid')

        gr.Markdown('### From one class to another')
        with gr.Row():
            start = gr.Dropdown(names, value=names[0], label='from', elem_id='start')
            end = gr.Dropdown(names, value=names[-1], label='to', elem_id='end')
        interpolate = gr.Button('Interpolate', elem_id='interpolate')
        animation = gr.Image(label='interpolation', type='filepath', format='gif', elem_id='interpolation')
        interpolate.click(drawing.interpolation, [start, end, seed], animation, api_name='interpolation')
    return blocks


def parser():
    parser = OneLineErrorParser(
        prog='cgan.py demo',
        description='Serve a page that draws with a trained generator, in the browser '
                    '(needs the demo extra: pip install -e ".[demo]").')
    add_model_arguments(parser, 'a pickled CGan (runs/mnist/mnist.pkl) or a run folder (runs/mnist/)')
    parser.add_argument('--port', type=positive_int, default=DEFAULT_PORT,
                        help=f'the port to serve on (default: {DEFAULT_PORT})')
    parser.add_argument('--host', default='127.0.0.1',
                        help="the address to bind (default: 127.0.0.1, this machine only; "
                             "0.0.0.0 opens the page to the network)")
    return parser


def main(argv=None):
    options = parser().parse_args(argv)
    from condgan.commands import CommandError
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no calls home from a local page
    try:
        import gradio  # noqa: F401  (seconds to import: only once the arguments are good)
    except ImportError:
        raise CommandError(INSTALL_HINT, 1) from None
    gan = model_from(options)
    with tempfile.TemporaryDirectory(prefix='cgan-demo-') as folder:
        gan.generate_new(rows=1, cols=1, plot=False)  # builds the generator's session: the first answer is quick
        page(gan, folder).launch(server_name=options.host, server_port=options.port,
                                 allowed_paths=[folder], inbrowser=False)
