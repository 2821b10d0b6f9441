"""Where torch work runs: one place that turns a ``device`` argument into a ``torch.device``.

Examples
--------
>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device(None).type in ("cpu", "cuda")
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when present, else CPU.

    Raises ``ValueError`` naming ``device`` for an unknown device string, or
    for CUDA asked on a machine without it.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for CUDA but no CUDA device is available")
    return dev


@contextmanager
def one_cpu_thread(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Run the block with one torch CPU thread (when ``enabled`` and ``device`` is the CPU).

    Small matrix work (UFM steps, LAPACK's sequential eigen/SVD stages) loses
    more to thread hand-offs than it gains, and far more on a busy machine.

    Examples
    --------
    >>> with one_cpu_thread(torch.device("cpu")):
    ...     torch.get_num_threads()
    1
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
