"""How fast the demo page answers: 100 images (a 10 x 10 grid) from the shipped MNIST generator.

    python benchmarks/bench_demo.py

Prints the median of REPEATS answers: the drawing alone (generator, PNG and .npy), and the
whole answer to a client of the page on 127.0.0.1 (Gradio's queue, the HTTP, the files
fetched), with the machine's load average, since a busy machine slows both.
"""
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

REPEATS = 7
SIDE = 10  # 100 images


def median_seconds(call):
    times = []
    for seed in range(REPEATS):
        started = time.perf_counter()
        call(seed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    from gradio_client import Client
    from condgan.demo import Drawing, page
    from condgan.gan import CGan
    gan = CGan.pretrained('mnist')
    gan.generate_new(rows=1, cols=1, plot=False)  # the session, built once as the demo does
    with tempfile.TemporaryDirectory() as folder:
        drawing = Drawing(gan, folder)
        alone = median_seconds(lambda seed: drawing.grid('8', seed, SIDE))
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        blocks = page(gan, folder)
        blocks.launch(server_name='127.0.0.1', server_port=port, prevent_thread_lock=True,
                      allowed_paths=[folder], quiet=True)
        try:
            client = Client(f'http://127.0.0.1:{port}/', verbose=False)
            answered = median_seconds(lambda seed: client.predict('8', seed, SIDE, api_name='/grid'))
        finally:
            blocks.close()
    print(f'{SIDE * SIDE} images, median of {REPEATS}, load average {os.getloadavg()[0]:.1f} '
          f'on {os.cpu_count()} CPUs:')
    print(f'  drawing alone (generator, PNG, .npy)   {alone * 1000:6.0f} ms')
    print(f'  the page\'s answer over HTTP            {answered * 1000:6.0f} ms')


if __name__ == '__main__':
    main()
