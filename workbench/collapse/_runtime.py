"""Where torch work runs: the default device and the CPU thread count."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from workbench.device import resolve_device  # noqa: F401  (re-exported for the collapse modules)


@contextmanager
def few_threads(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """One CPU thread inside the block (when ``enabled`` and on CPU).

    The UFM and the CPU-sized experiments multiply small matrices, where thread
    hand-offs (worse on a busy machine) cost several times the arithmetic.
    """
    if device.type != "cpu" or not enabled:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
