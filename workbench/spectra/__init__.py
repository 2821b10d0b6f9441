"""Spectra of layer ranks: how many directions each weight matrix, head and activation uses.

A weight matrix ``W`` is a sum of rank-one maps ``sigma_i u_i v_i^T``; its
singular values ``sigma_1 >= sigma_2 >= ...`` say how much each direction
carries. Three readings of the same numbers:

* **Rank metrics** (:func:`rank_metrics`): stable rank ``sum sigma^2 /
  sigma_1^2``, effective rank, numerical rank, energy ranks, and the
  heavy-tail diagnostics WeightWatcher made familiar (power-law ``alpha`` of
  the eigenvalue tail, ``log_norm``, Marchenko-Pastur soft rank and spikes).
  A random Gaussian matrix is the baseline: its singular values fill a bulk
  whose edge random-matrix theory predicts, and learned structure shows up as
  spikes above it and as a heavier tail. The Marchenko-Pastur numbers are
  NaN, with ``mp_reason``, where that baseline cannot apply (a rank-deficient
  matrix, a per-head circuit); ``mp_fit="weightwatcher"`` uses WeightWatcher's
  own fit, and :func:`correlation_traps` its randomised-ESD check.
* **Per-head circuits** (:func:`layer_spectra`): every head's OV (``W_V W_O``)
  and QK (``W_Q W_K^T``) map has rank at most ``d_head``; its spectrum comes
  from a ``d_head``-sized core, never the formed ``d_model x d_model`` product.
* **Truncation and compression** (:func:`truncation_curve`,
  :func:`compress`, :func:`compression_sweep`): the loss of keeping ``k``
  directions, in closed form for every ``k``. Measured on the *activations*
  the map sees, whitening by the input Gram (SVD-LLM) or projecting outputs
  onto their principal directions (AFM) is optimal, and beats truncating the
  weights alone.

Worked example
--------------
A 200 x 400 Gaussian matrix with 3 planted directions: the spikes stand out
of the bulk, whose edge ``sqrt(200) + sqrt(400)`` the theory gives.

>>> import numpy as np
>>> from workbench.spectra import spectrum, rank_metrics, truncation_curve
>>> rng = np.random.default_rng(0)
>>> U, _ = np.linalg.qr(rng.standard_normal((200, 3)))
>>> V, _ = np.linalg.qr(rng.standard_normal((400, 3)))
>>> W = U @ np.diag([120.0, 100.0, 80.0]) @ V.T + rng.standard_normal((200, 400))
>>> s = spectrum(W)
>>> int((s > 1.02 * (np.sqrt(200) + np.sqrt(400))).sum())
3
>>> m = rank_metrics(s)
>>> int(m.num_spikes), int(m.numerical_rank)
(3, 200)

Keeping the top 3 directions leaves the noise: about the squared norm of
a 200 x 400 Gaussian, less its 3 largest of 200 directions:

>>> curve = truncation_curve(W)
>>> bool(abs(float(curve.sel(rank=3)) / (200 * 400 * (1 - 3 / 200)) - 1) < 0.05)
True

On a model, :func:`layer_spectra` gives all of this per matrix, per head and
per circuit as one ``xr.Dataset``; :mod:`workbench.figures.spectra` draws it.
"""

from workbench.spectra.activations import activation_spectra, participation_ratio
from workbench.spectra.compress import LowRankLinear, compress, compression_sweep
from workbench.spectra.layers import layer_spectra
from workbench.spectra.metrics import rank_metrics
from workbench.spectra.powerlaw import power_law_fit
from workbench.spectra.spectrum import spectrum
from workbench.spectra.traps import correlation_traps
from workbench.spectra.truncation import ActivationStats, low_rank_factors, truncation_curve

__all__ = [
    "ActivationStats",
    "LowRankLinear",
    "activation_spectra",
    "compress",
    "compression_sweep",
    "correlation_traps",
    "layer_spectra",
    "low_rank_factors",
    "participation_ratio",
    "power_law_fit",
    "rank_metrics",
    "spectrum",
    "truncation_curve",
]
