"""Which implementation is active: the compiled ``qkrum._core`` or pure Python.

``QKRUM_IMPLEMENTATION=python`` forces the pure-Python paths even when the extension is
built. ``QKRUM_REQUIRE_NATIVE=1`` turns a missing or broken extension into an import
error instead of a silent fallback (CI sets it, so a failed build cannot pass unnoticed).
"""

from __future__ import annotations

import os

__all__ = ["IMPLEMENTATION", "build_info", "core"]

_forced = os.environ.get("QKRUM_IMPLEMENTATION", "").strip().lower()
if _forced not in ("", "native", "python"):
    raise ImportError(
        f"QKRUM_IMPLEMENTATION must be 'native' or 'python' (or unset), got {_forced!r}"
    )

_built = None
_import_error: Exception | None = None
try:
    # Imported even when Python is forced, so that QKRUM_REQUIRE_NATIVE still checks the build.
    from qkrum import _core as _built  # type: ignore[no-redef]
except ImportError as exc:  # extension not built (no compiler) or broken
    _import_error = exc

if _built is None and (_forced == "native" or os.environ.get("QKRUM_REQUIRE_NATIVE") == "1"):
    raise ImportError(
        "qkrum's native extension qkrum._core is required (QKRUM_IMPLEMENTATION=native or "
        f"QKRUM_REQUIRE_NATIVE=1) but could not be imported: {_import_error}"
    )

core = None if _forced == "python" else _built
IMPLEMENTATION = "native" if core is not None else "python"


def build_info() -> dict:
    """How the extension was built, or ``{"implementation": "python"}`` without it."""
    if core is None:
        return {"implementation": "python"}
    return {"implementation": "native", **core.build_info()}
