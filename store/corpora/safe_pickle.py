"""Loading corpus-shipped pickles without letting them run code.

A pickle can name any importable callable (``os.system``, ``subprocess.Popen``, ...) and have the
unpickler call it. Corpora such as ChaLearn First Impressions ship their annotations as Python 2
pickles of plain dicts, so :func:`load_data_pickle` allows only what such data needs: the containers,
strings and numbers that pickle opcodes build directly (dict, list, tuple, str, bytes, int, float, bool,
None), plus ``set`` / ``frozenset``, plus numpy *scalars* of plain dtypes, which the official FIv2 files
hold (``interview`` scores are ``numpy.float64``).

A numpy scalar is pickled as ``numpy.core.multiarray.scalar(numpy.dtype("f8", 0, 1) + BUILD state,
raw bytes)`` (``numpy._core`` since numpy 2). Those three names resolve to checking stand-ins, never to
numpy's own callables: the dtype must be ``f8``, ``i8`` or ``b1`` with the default flags, its state the
plain one (no fields, no subarray, no object dtype), and the bytes exactly one value; the value comes back
as the equivalent Python ``float``/``int``/``bool``. Python 3 writes those bytes as
``_codecs.encode(text, "latin1")``, allowed with exactly that codec. Every other global (``numpy.load``,
``numpy.core.multiarray._reconstruct``, ``builtins.eval``, ...) is refused with :class:`UnsafePickleError`
before it is imported, so a hostile file fails without side effects.
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


SCALAR_DTYPES: frozenset[str] = frozenset({"f8", "i8", "b1"})
"""dtype codes a pickled numpy scalar may have: float64, int64, bool."""
_PLAIN_DTYPE_STATE_TAIL = (None, None, None, -1, -1, 0)  # no subarray, names, fields; default sizes, flags


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle references something other than builtin containers, strings and numbers."""


class _ScalarDtype:
    """Stand-in for a numpy dtype while unpickling: only a plain float64/int64/bool, state checked."""

    __slots__ = ("byte_order", "code")

    def __init__(self, code: str) -> None:
        self.code = code
        self.byte_order = "="

    def __setstate__(self, state: Any) -> None:
        orders = ("|",) if self.code == "b1" else ("<", ">")
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in orders
                and state[2:] == _PLAIN_DTYPE_STATE_TAIL):
            raise UnsafePickleError(f"the pickle gives the numpy dtype {self.code!r} the state {state!r}; "
                                    "only plain scalar dtypes are allowed, so it was not loaded")
        self.byte_order = state[1]


def _numpy_dtype(code: Any, align: Any = 0, copy: Any = 1) -> _ScalarDtype:
    """``numpy.dtype(code, align, copy)`` as a scalar's pickle calls it, arguments checked."""
    plain_flags = type(align) in (int, bool) and type(copy) in (int, bool) and align == 0 and copy == 1
    if not (isinstance(code, str) and code in SCALAR_DTYPES and plain_flags):
        raise UnsafePickleError(f"the pickle asks for numpy.dtype{(code, align, copy)!r}; only "
                                f"{sorted(SCALAR_DTYPES)} scalars are allowed, so it was not loaded")
    return _ScalarDtype(code)


def _numpy_scalar(dtype: Any, data: Any = None) -> float | int | bool:
    """``numpy.core.multiarray.scalar(dtype, data)`` for a checked dtype: one value, as a Python number."""
    import numpy as np

    if not isinstance(dtype, _ScalarDtype):
        raise UnsafePickleError(f"the pickle calls numpy's scalar() with {type(dtype).__name__!s}, not a "
                                "plain scalar dtype, so it was not loaded")
    raw = data.encode("latin-1") if isinstance(data, str) else data  # Python 2 str under latin1
    real = np.dtype(dtype.byte_order + dtype.code)
    if not isinstance(raw, bytes) or len(raw) != real.itemsize:
        raise UnsafePickleError(f"the pickle gives a numpy {dtype.code} scalar {raw!r:.40}, not "
                                f"{real.itemsize} bytes, so it was not loaded")
    value: float | int | bool = np.frombuffer(raw, dtype=real)[0].item()
    return value


def _latin1_bytes(text: Any, encoding: Any = None) -> bytes:
    """``_codecs.encode(text, "latin1")``: how Python 3 writes ``bytes`` (a scalar's raw value) at
    protocol 2; any other codec or argument is refused."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise UnsafePickleError(f"the pickle calls _codecs.encode{(text, encoding)!r:.60}; only the "
                                "latin1 encoding of text (pickled bytes) is allowed, so it was not loaded")
    return text.encode("latin-1")


# Checking stand-ins returned instead of the real callables: functions, so NEWOBJ cannot bypass them.
_NUMPY_SCALAR_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _DataUnpickler(pickle.Unpickler):
    """Unpickler whose only reachable globals are :data:`ALLOWED_GLOBALS` and the numpy scalar
    stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _NUMPY_SCALAR_GLOBALS:
            return _NUMPY_SCALAR_GLOBALS[(module, name)]
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}; only builtin containers, strings and numbers (and "
            "numpy scalars) are allowed (a data pickle never needs code), so it was not loaded")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"the pickle uses a persistent id ({pid!r}); data pickles never do")


def load_data_pickle(data: bytes, *, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only builtin containers, strings and numbers (numpy scalars included).

    Python 2 ``str`` objects are decoded with ``encoding`` (``latin1`` maps every byte, which is what
    Python 2 era corpus pickles need; see :func:`repair_utf8` for text that was UTF-8 bytes).

    Args:
        data: The pickle's bytes.
        encoding: Decoding of Python 2 ``str`` objects.

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: The pickle references any other global (nothing is imported or called), or
            a numpy scalar that is not a plain float64/int64/bool.
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
