"""Files written whole or not at all: a crash or a full disk never leaves half a file.

No TensorFlow and nothing of the GAN here: the run records, the pictures and the pickles
all write through this.
"""
import os
import tempfile


def write_atomically(path, write):
    """Call `write(file)` on a temporary file beside `path`, then rename it onto `path`."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.part')
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's file is private; the result need not be
        with os.fdopen(handle, 'wb') as f:
            write(f)
        os.replace(temporary, path)
    except BaseException as error:
        os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = path  # a full disk names the file it could not write
        raise


def current_umask():
    """The process's umask, read without changing it where Linux tells it (/proc/self/status).
    Elsewhere it can only be read by setting it, so it is set back at once."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
