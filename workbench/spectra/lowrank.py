"""``LowRankLinear``: a linear map stored as a rank-``k`` factor pair, what :func:`~workbench.spectra.compress` puts in.

Its own module so that :mod:`~workbench.spectra.targets` and
:mod:`~workbench.spectra.weights` can recognise a compressed map (and analyse
or compress it again) without importing the compression code.
"""

from __future__ import annotations

import torch


class LowRankLinear(torch.nn.Module):
    """``y = up(down(x)) + bias``: a rank-``k`` linear map stored as two factors.

    ``weight`` gives the product back so analysis views (``W_Q``...) still work.

    Examples
    --------
    >>> import torch
    >>> layer = LowRankLinear(torch.ones(3, 1), torch.ones(1, 2), torch.zeros(3))
    >>> layer(torch.ones(2)).tolist(), layer.rank
    ([2.0, 2.0, 2.0], 1)
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.down = torch.nn.Linear(B.shape[1], B.shape[0], bias=False, dtype=A.dtype, device=A.device)
        self.up = torch.nn.Linear(A.shape[1], A.shape[0], bias=bias is not None, dtype=A.dtype, device=A.device)
        with torch.no_grad():
            self.down.weight.copy_(B)
            self.up.weight.copy_(A)
            if bias is not None:
                self.up.bias.copy_(bias)
        self.in_features, self.out_features, self.rank = B.shape[1], A.shape[0], A.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))
