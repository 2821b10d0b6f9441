"""Refuse a request before allocating it when it cannot fit in memory.

A typo (``n_tokens=10**13``, ``d_sae=10**6`` twice) should get an error that
names the argument and the size, not an allocator crash, minutes of
swapping, or the out-of-memory killer taking the whole server with it.

Examples
--------
>>> check_fits(n_elements=1000, itemsize=4, argument="d_sae", what="decoder weights")
4000
>>> check_fits(n_elements=10**13, itemsize=4, argument="n_tokens", what="the loss history")
Traceback (most recent call last):
...
workbench.memory.TooLargeError: n_tokens: the loss history would need 40.0 TB, more than the ... available
"""

from __future__ import annotations

import os


class TooLargeError(ValueError, MemoryError):
    """A request whose allocation would not fit; a ValueError naming the argument that caused it."""


def available_bytes() -> int:
    """Memory this process can still take without swapping (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no way to tell here: allow it and let the allocator decide
        return 1 << 62


def _human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def check_fits(*, n_elements: int, itemsize: int, argument: str, what: str, fraction: float = 0.8) -> int:
    """Return the bytes ``n_elements`` of ``itemsize`` take, or raise :class:`TooLargeError` naming ``argument``.

    Refused above ``fraction`` of the memory available now, so that the
    request leaves room for everything else it needs.
    """
    n_bytes = int(n_elements) * int(itemsize)
    limit = available_bytes()
    if n_bytes > fraction * limit:
        raise TooLargeError(f"{argument}: {what} would need {_human(n_bytes)}, more than the {_human(limit)} "
                            "of memory available")
    return n_bytes
