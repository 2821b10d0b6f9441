"""Input checks shared by the connectome modules.

Every check names the argument, says what was expected and what it got, so
that errors read the same across :mod:`workbench.connectome`.
"""

from __future__ import annotations

import numpy as np


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, refusing non-integers (bools, floats) and values below ``minimum``.

    Examples
    --------
    >>> check_count("n_surrogates", 19)
    19
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: tuple) -> str:
    """``value`` if it is one of ``choices``.

    Examples
    --------
    >>> check_choice("method", "shift", ("shift", "phase"))
    'shift'
    """
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_fraction(name: str, value, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float strictly inside ``(low, high)``.

    Examples
    --------
    >>> check_fraction("alpha", 0.05)
    0.05
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not low < value < high:
        raise ValueError(f"{name}: expected a number in ({low}, {high}), got {value!r}")
    return float(value)
