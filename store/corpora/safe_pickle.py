"""Loading corpus-shipped pickles without letting them run code.

A pickle can name any importable callable (``os.system``, ``subprocess.Popen``, ...) and have the
unpickler call it. Corpora such as ChaLearn First Impressions ship their annotations as Python 2
pickles of plain dicts, so :func:`load_data_pickle` allows only what such data needs: the containers,
strings and numbers that pickle opcodes build directly (dict, list, tuple, str, bytes, int, float, bool,
None), plus ``set`` / ``frozenset``. Any other global is refused with :class:`UnsafePickleError` before
it is imported, so a hostile file fails without side effects.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "load_data_pickle", "repair_utf8"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    (module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset")
})
"""``(module, name)`` pairs a data pickle may reference, as written in the pickle (Python 2 pickles name
``__builtin__``, Python 3 ones ``builtins``)."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle references something other than builtin containers, strings and numbers."""


class _DataUnpickler(pickle.Unpickler):
    """Unpickler whose only reachable globals are :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}; only builtin containers, strings and numbers are "
            "allowed (a data pickle never needs code), so it was not loaded")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"the pickle uses a persistent id ({pid!r}); data pickles never do")


def load_data_pickle(data: bytes, *, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only builtin containers, strings and numbers.

    Python 2 ``str`` objects are decoded with ``encoding`` (``latin1`` maps every byte, which is what
    Python 2 era corpus pickles need; see :func:`repair_utf8` for text that was UTF-8 bytes).

    Args:
        data: The pickle's bytes.
        encoding: Decoding of Python 2 ``str`` objects.

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: The pickle references any other global (nothing is imported or called).
        pickle.UnpicklingError: The data is not a valid pickle (also EOFError, ValueError from pickle).
    """
    return _DataUnpickler(io.BytesIO(data), encoding=encoding).load()


def repair_utf8(text: str) -> str:
    """Undo Latin-1 decoding of UTF-8 bytes (``'cafÃ©'`` → ``'café'``); other text is returned as is.

    Python 2 pickles store ``str`` as bytes, and corpus text was usually UTF-8: decoded as Latin-1 it
    turns into mojibake. Text that is not valid UTF-8 once re-encoded was genuine Latin-1 and is kept.
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
