"""Feature absorption on a planted hierarchy: how often a parent feature is folded into its children's latents.

When a child feature only ever fires with its parent (``starts with S`` and
``snake``), a sparse autoencoder can save one active latent per token by
learning ``parent + child`` as the child's latent and firing the parent's own
latent only where no child is present (Chanin et al. 2024, "A is for
Absorption"). The parent's latent then misses exactly the tokens where the
child is there. On activations with a planted hierarchy
(:func:`workbench.data.synthetic_sae.planted_hierarchy`) this is measured
against the truth by :func:`absorption_rate`.

Examples
--------
>>> import torch
>>> from workbench.data.synthetic_sae import planted_hierarchy
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> ds = planted_hierarchy(n_tokens=500, d_in=32, n_parents=2, children_per_parent=2, n_independent=0)
>>> sae = AttentionSAE(SAEConfig(d_in=32, d_sae=6, architecture="standard"))
>>> with torch.no_grad():   # one latent per planted feature: nothing is absorbed
...     _ = sae.W_dec.copy_(torch.from_numpy(ds["directions"].values)), sae.W_enc.copy_(sae.W_dec.T)
>>> float(absorption_rate(sae, ds).attrs["absorption_rate"])
0.0
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import check_positive_float

#: Cosine above which a latent's decoder row "carries" a planted direction.
CARRIES = 0.3


@torch.no_grad()
def absorption_rate(sae, ds: xr.Dataset, *, threshold: float = CARRIES) -> xr.Dataset:
    """Fraction of a parent's occurrences absorbed into a child latent, per parent and overall.

    Definitions (``d_p`` the planted direction of parent ``p``, ``W_dec[j]``
    latent ``j``'s decoder row, cosines between them):

    * the **parent latent** of ``p`` is its best-matching latent, ``argmax_j cos(W_dec[j], d_p)``;
    * a **child latent carrying the parent** is any latent ``j`` with
      ``cos(W_dec[j], d_p) >= threshold`` and ``cos(W_dec[j], d_c) >= threshold``
      for some child ``c`` of ``p``;
    * an occurrence of ``p`` (a token with a positive planted coefficient of
      ``p``) is **absorbed** when the parent latent does not fire there while
      a child latent carrying the parent does.

    The absorption rate is absorbed occurrences over all occurrences of the
    parent (with or without a child), pooled over parents for the overall rate.

    Parameters
    ----------
    sae : AttentionSAE
        Trained on ``ds["acts"]`` (``d_in`` its width).
    ds : xr.Dataset
        From :func:`~workbench.data.synthetic_sae.planted_hierarchy`: ``acts``,
        ``directions``, ``coefficients``, ``parent``, ``role``.
    threshold : float
        The cosine that counts as carrying a direction.

    Returns
    -------
    xr.Dataset
        Per ``parent`` (the parents' feature indices): ``occurrences``,
        ``absorbed``, ``parent_fires`` (occurrences where the parent latent
        fires), ``absorption_rate``, ``parent_latent`` and its cosine
        ``parent_cos``; attrs ``absorption_rate`` (pooled) and ``threshold``.

    Examples
    --------
    >>> import torch
    >>> from workbench.data.synthetic_sae import planted_hierarchy
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> ds = planted_hierarchy(n_tokens=500, d_in=32, n_parents=2, children_per_parent=2, n_independent=0)
    >>> absorption_rate(AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2)), ds)["absorption_rate"].dims
    ('parent',)
    """
    for name in ("acts", "directions", "coefficients", "parent", "role"):
        if name not in ds:
            raise ValueError(f"ds: expected a planted_hierarchy Dataset with {name!r}, got variables {list(ds)}")
    if ds.sizes["d_in"] != sae.cfg.d_in:
        raise ValueError(f"ds: expected d_in={sae.cfg.d_in} as the SAE, got {ds.sizes['d_in']}")
    threshold = check_positive_float("threshold", threshold)
    W = sae.W_dec.detach().double().cpu()
    cos = torch.from_numpy(ds["directions"].values).double() @ (W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)).T
    f = sae.encode(torch.from_numpy(ds["acts"].values).to(sae.device)).cpu() > 0  # [sample, d_sae]
    coefficients = torch.from_numpy(ds["coefficients"].values)
    parent_of = ds["parent"].values
    parents = np.nonzero(ds["role"].values == "parent")[0]
    rows = {name: [] for name in ("occurrences", "absorbed", "parent_fires", "parent_latent", "parent_cos")}
    for p in parents:
        latent = int(cos[p].argmax())
        children = np.nonzero(parent_of == p)[0]
        carriers = (cos[p] >= threshold) & (cos[children] >= threshold).any(0)
        present = coefficients[:, p] > 0
        fires = f[:, latent]
        carried = f[:, carriers].any(1)
        rows["occurrences"].append(int(present.sum()))
        rows["absorbed"].append(int((present & ~fires & carried).sum()))
        rows["parent_fires"].append(int((present & fires).sum()))
        rows["parent_latent"].append(latent)
        rows["parent_cos"].append(float(cos[p, latent]))
    occurrences, absorbed = np.array(rows["occurrences"]), np.array(rows["absorbed"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = absorbed / occurrences
    return xr.Dataset({**{name: ("parent", np.array(values)) for name, values in rows.items()},
                       "absorption_rate": ("parent", rate)},
                      coords={"parent": parents},
                      attrs={"absorption_rate": float(absorbed.sum() / max(occurrences.sum(), 1)),
                             "threshold": threshold})
