"""The compiled batch reader (native/, Rust), when the install built it; None without a Rust toolchain."""

from __future__ import annotations

try:  # the batch decoder in Rust (native/); without a Rust toolchain at install, the Python path alone
    from . import _native
except ImportError:  # pragma: no cover - CI builds it (tests/test_native.py)
    _native = None  # type: ignore[assignment]

__all__ = ["_native"]
