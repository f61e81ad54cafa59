"""Output files that appear whole or not at all, and are checked before the work starts.

:func:`atomic_path` hands out a temporary name beside the destination (same
suffix, so matplotlib picks the format from it) and renames it into place only
when the block ends without error; an interrupted or failed write leaves the
old file, if any, and no partial one.  :func:`check_writable` refuses, before a
long run, a path whose folder is missing or read-only; :func:`check_figure`
also a figure name whose format matplotlib cannot write.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> target = os.path.join(folder, "out.csv")
>>> with atomic_path(target) as tmp:
...     _ = open(tmp, "w").write("a,b\\n")
>>> os.listdir(folder), open(target).read()
(['out.csv'], 'a,b\\n')
>>> with atomic_path(target) as tmp:
...     _ = open(tmp, "w").write("half")
...     raise RuntimeError("interrupted")
Traceback (most recent call last):
RuntimeError: interrupted
>>> os.listdir(folder), open(target).read()
(['out.csv'], 'a,b\\n')
>>> check_writable(os.path.join(folder, "nosuch", "x.png"), "--plot")  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: --plot: folder ... of x.png does not exist
>>> check_figure(os.path.join(folder, "x.txt"), "--plot")
Traceback (most recent call last):
ValueError: --plot: cannot draw a figure as x.txt (give a name ending .png, .pdf, .svg, ...)
"""

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# The formats matplotlib's savefig writes (FigureCanvasBase.get_supported_filetypes(); a test keeps them equal),
# listed here so the check before a run needs no matplotlib import.
FIGURE_FORMATS = ("avif", "eps", "gif", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz",
                  "tif", "tiff", "webp")


def check_figure(path, option):
    """:func:`check_writable`, and refuse a name whose suffix is no format matplotlib writes."""
    name = Path(path).name
    if Path(path).suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise ValueError(f"{option}: cannot draw a figure as {name} (give a name ending .png, .pdf, .svg, ...)")
    check_writable(path, option)


def check_writable(path, option, make_folder=False):
    """Raise ValueError naming ``option`` unless a file can be written at ``path`` (``make_folder``: create its folder)."""
    path = Path(path)
    folder = path.parent.resolve()
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder, not a file name")
    if make_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"{option}: cannot create folder {folder}: {err.strerror}") from None
    if not folder.is_dir():
        raise ValueError(f"{option}: folder {folder} of {path.name} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{option}: cannot write {path} (permission denied)")
    probe = folder / f".{path.name}.{os.getpid()}.probe"
    try:  # the one sure test: create a file there (root passes permission checks, /proc refuses anyway)
        probe.open("x").close()
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{option}: cannot write {path} ({err.strerror})") from None
