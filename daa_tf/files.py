"""Writing files so that a reader never sees a partial one."""
import os
import tempfile
from typing import IO, Any, Callable, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Writes through ``write(file)`` into a temporary file beside ``path``, flushes it to disk,
    then renames it over ``path``: ``path`` is either untouched or complete, and on any error
    (Ctrl-C included) no temporary file is left behind. The file gets an ordinary mode (umask)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if binary else "w",
                       **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
