"""How much the libraries underneath say: one verbosity for the command line and its worker processes.

Levels: ``quiet`` (errors only), ``normal`` (affectcache warnings; the default), ``verbose`` (affectcache
progress at INFO plus third-party warnings), ``debug`` (everything, native logs included).

Three sources of noise are handled:

* Python warnings (``warnings.warn``) and the loggers of transformers, huggingface_hub, ... go through
  :mod:`logging` and are shown from ``verbose`` on.
* Progress bars of transformers/huggingface_hub are switched off by environment variables read when
  those libraries are imported, so :func:`export_verbosity` sets them before any import, for this
  process and every worker it starts.
* MediaPipe's C++ side (absl, LiteRT) writes straight to file descriptor 2, with no switch to turn it
  off. :func:`install_native_log_filter` routes descriptor 2 through a pipe whose reader drops those
  lines (logged at DEBUG) and passes everything else on; worker processes inherit the filtered
  descriptor. Python's own ``sys.stderr`` keeps writing to the terminal directly.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import re
import sys
import threading
from typing import Literal

logger = logging.getLogger(__name__)

Verbosity = Literal["quiet", "normal", "verbose", "debug"]
VERBOSITY_ENV = "AFFECTCACHE_VERBOSITY"
THIRD_PARTY_LOGGERS = ("py.warnings", "transformers", "huggingface_hub", "sentence_transformers", "httpx",
                       "urllib3", "filelock", "numba", "h5py", "absl", "fsspec", "zarr")
"""Loggers of libraries whose warnings are not the user's business unless asked for (``-v``)."""

_NATIVE_LINE = re.compile(rb"^([IWEF]\d{4} |INFO: |WARNING: Logging before|WARNING: All log messages before)")
_installed: dict[str, object] = {}


def current_verbosity() -> Verbosity:
    """The verbosity exported to this process (``normal`` when none was)."""
    value = os.environ.get(VERBOSITY_ENV, "normal")
    return value if value in ("quiet", "normal", "verbose", "debug") else "normal"  # type: ignore[return-value]


def export_verbosity(level: Verbosity) -> None:
    """Record ``level`` in the environment (worker processes inherit it) and quieten the libraries that
    read environment variables at import. Call before importing transformers."""
    os.environ[VERBOSITY_ENV] = level
    if level == "debug":
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning" if level == "verbose" else "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")


def apply_verbosity(level: Verbosity | None = None) -> None:
    """Set third-party logger levels and route Python warnings through :mod:`logging` in this process
    (``level`` defaults to the exported one; workers call it once on start)."""
    level = level or current_verbosity()
    logging.captureWarnings(True)
    third_party = {"quiet": logging.ERROR, "normal": logging.ERROR, "verbose": logging.WARNING,
                   "debug": logging.DEBUG}[level]
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(third_party)
    if "transformers" in sys.modules:  # imported already: its own handler must follow the level too
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(third_party)


def install_native_log_filter() -> None:
    """Filter native log lines out of file descriptor 2 for this process and its future children."""
    if "reader" in _installed:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no usable descriptor 2 (embedded interpreters): leave stderr alone
        return
    sys.stderr = io.TextIOWrapper(os.fdopen(real, "wb", buffering=0), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
    reader = threading.Thread(target=_forward, args=(read_end, real), name="affectcache-native-logs",
                              daemon=True)
    reader.start()
    _installed["reader"] = reader
    atexit.register(_drain, reader)


def _forward(read_end: int, real: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            return
        if not chunk:
            if pending:
                _emit(pending, real)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _emit(line + b"\n", real)
        # A partial line that cannot be a native log line yet (e.g. a progress bar redrawn with \r)
        # goes out now rather than waiting for its newline.
        if pending and len(pending) >= 40 and not _NATIVE_LINE.match(pending):
            _emit(pending, real)
            pending = b""


def _emit(data: bytes, real: int) -> None:
    if _NATIVE_LINE.match(data):
        logger.debug("native: %s", data.decode("utf-8", "replace").rstrip())
        return
    with contextlib.suppress(OSError):  # the terminal is gone: nothing left to show it on
        os.write(real, data)


def _drain(reader: threading.Thread) -> None:
    """At exit: close this process's end of the pipe and let the reader pass on what is left."""
    try:
        os.dup2(sys.stderr.fileno(), 2)
    except (OSError, ValueError):
        return
    reader.join(timeout=1.0)
