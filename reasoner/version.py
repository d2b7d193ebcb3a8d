"""The installed reason-restore version, for provenance."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def rnr_version() -> str:
    """Version of the installed ``reason-restore`` distribution ("0+unknown" when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reason-restore")
    except PackageNotFoundError:
        return "0+unknown"
