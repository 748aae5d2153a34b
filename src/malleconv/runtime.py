"""Process-wide settings that make CPU inference and training faster.

PyTorch's CPU tensors come straight from ``malloc``. glibc serves every block larger than
its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it on free, so each
full-resolution feature map (64 channels of 512 x 512 floats is 64 MB) is new memory that
the kernel must fault in and zero, page by page, every time. On virtual machines this
can cost as much as the convolutions (``research/allocator.py``,
docs/research/allocator.md).

:func:`tune_allocator` asks glibc to serve big blocks from its heap and to keep freed
memory for reuse, which removes those page faults. The process then keeps its peak
memory until it exits. The ``malleconv`` command calls it at start-up, and
``malleconv.load_model`` (so also ``malleconv.denoise``, which loads its models through
it) on its first call in a process (:func:`tune_allocator_once`), not at import: a program
that imports the package without denoising keeps glibc's behaviour. Opt out with
``MALLECONV_NO_MALLOC_TUNING=1``, or choose for yourself with glibc's own variables
(``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_``), which this then leaves alone.

The module also holds what every benchmark script shares: :func:`cpu_name`,
:func:`command_line` and :func:`write_report`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path

__all__ = ["command_line", "cpu_name", "tune_allocator", "tune_allocator_once", "write_report"]

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_OPT_OUT = "MALLECONV_NO_MALLOC_TUNING"


def tune_allocator() -> bool:
    """Keep freed memory in the process for reuse (glibc only); True if applied.

    Does nothing on other platforms or C libraries, when ``MALLECONV_NO_MALLOC_TUNING`` is
    set, or when the user already chose with ``MALLOC_MMAP_MAX_`` /
    ``MALLOC_TRIM_THRESHOLD_``.
    """
    if not sys.platform.startswith("linux") or os.environ.get(_OPT_OUT):
        return False
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError unless glibc
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Never mmap (big blocks come from the heap) and never give the heap top back.
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok


_tuned_once: bool | None = None


def tune_allocator_once() -> bool:
    """:func:`tune_allocator` on the first call in this process; its result on later calls.

    What ``load_model`` calls, so that library users get the command's speed without a
    call of their own.
    """
    global _tuned_once
    if _tuned_once is None:
        _tuned_once = tune_allocator()
    return _tuned_once


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line(script: str, argv: list[str] | None = None) -> str:
    """``python SCRIPT ARGS`` as a reader can rerun it, for the docs a benchmark writes.

    ``argv`` defaults to this process's arguments. The dataset root named by
    ``MALLECONV_DATA`` is written as ``$MALLECONV_DATA``, so that a doc does not carry the
    path of the machine that made it.
    """
    text = shlex.join(sys.argv[1:] if argv is None else argv)
    root = os.environ.get("MALLECONV_DATA", "").rstrip("/")
    # Only a root that needs no shell quoting: inside quotes the variable would not expand.
    if root and shlex.quote(root) == root:
        text = re.sub(rf"(?<![\w/.-]){re.escape(root)}(?=/|\s|$)", "$MALLECONV_DATA", text)
    return f"python {script} {text}".rstrip()


def write_report(
    out_dir: str | os.PathLike[str], stem: str, data: dict, markdown: str
) -> tuple[Path, Path]:
    """Write a benchmark's ``STEM.json`` (``data``) and ``STEM.md`` into ``out_dir``.

    Both are written atomically and replace earlier runs' reports; ``out_dir`` is created.
    Returns the two paths.
    """
    # Imported here: malleconv.io loads Pillow and numpy, which tune_allocator's callers
    # should not pay for at start-up.
    from .io import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(data, indent=2) + "\n", overwrite=True)
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    atomic_write_text(md_path, text, overwrite=True)
    return json_path, md_path
