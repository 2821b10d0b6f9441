"""Builders of constructed neural-collapse geometry and a direct Papyan reference (test helpers).

A uniquely named module, so that ``import`` finds it whatever other test folders hold."""

from __future__ import annotations

import numpy as np


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def etf_features(n_classes: int, dim: int, radius: float, sigma: float, rng: np.random.Generator):
    """Simplex-ETF class means of norm ``radius`` about an offset, within-class Sigma_W = sigma^2 I exactly.

    Each class gets the 2 d deviations +-sigma sqrt(d) e_j: they sum to zero and
    their scatter is 2 d sigma^2 I = n_k sigma^2 I. Everything is then rotated.
    Returns features, labels, centred means (K, d) and the global mean.
    """
    k = n_classes
    simplex = (np.eye(k) - 1.0 / k) * np.sqrt(k / (k - 1)) * radius
    centred = np.zeros((k, dim))
    centred[:, :k] = simplex
    offset = rng.normal(size=dim)
    devs = np.concatenate([np.eye(dim), -np.eye(dim)]) * sigma * np.sqrt(dim)
    x = np.concatenate([offset + centred[c] + devs for c in range(k)])
    y = np.repeat(np.arange(k), 2 * dim)
    rot = random_rotation(dim, rng)
    return x @ rot.T, y, centred @ rot.T, offset @ rot.T


def papyan_reference(x, y, W=None, b=None, global_mean="class_means"):
    """Papyan's definitions computed directly, class by class, in float64 (eigh of the d x d Sigma_B)."""
    k = int(y.max()) + 1
    n = len(y)
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])
    mu_g = means.mean(axis=0) if global_mean == "class_means" else x.mean(axis=0)
    sigma_w = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(k)) / n
    mt = means - mu_g
    sigma_b = mt.T @ mt / k
    lam, vec = np.linalg.eigh(sigma_b)
    lam, vec = lam[::-1][: k - 1], vec[:, ::-1][:, : k - 1]
    out = {"nc1": np.trace(sigma_w @ (vec / lam) @ vec.T) / k}
    norms = np.linalg.norm(mt, axis=1)
    out["nc2_equinorm_h"] = norms.std() / norms.mean()
    cos = [mt[i] @ mt[j] / (norms[i] * norms[j]) for i in range(k) for j in range(k) if i != j]
    out["nc2_equiangle"] = np.std(cos)
    out["nc2_max_angle"] = np.mean(np.abs(np.array(cos) + 1 / (k - 1)))
    g = mt @ mt.T
    out["nc2_etf"] = np.linalg.norm(g / np.linalg.norm(g) - (np.eye(k) - 1 / k) / np.sqrt(k - 1))
    gu = means @ means.T
    out["nc2_of"] = np.linalg.norm(gu / np.linalg.norm(gu) - np.eye(k) / np.sqrt(k))
    if W is not None:
        b = np.zeros(k) if b is None else b
        wn = np.linalg.norm(W, axis=1)
        out["nc2_equinorm_w"] = wn.std() / wn.mean()
        out["nc3"] = np.linalg.norm(W.T / np.linalg.norm(W) - mt.T / np.linalg.norm(mt)) ** 2
        decided = np.argmax(x @ W.T + b, axis=1)
        nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        out["nc4"] = np.mean(decided != nearest)
    return out


def hooked_class_means(net, x, y, names):
    """{module name: class means (K, width)} of the features a forward hook catches, in numpy float64."""
    import torch

    caught, modules = {}, dict(net.named_modules())
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: caught.__setitem__(n, out)) for n in names]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    y = np.asarray(y)
    return {n: np.stack([caught[n].flatten(1).double().numpy()[y == c].mean(axis=0) for c in range(y.max() + 1)])
            for n in names}


def top3_projection(points, rows=None):
    """``points`` (and ``rows``) on the top three eigenvectors of their second-moment matrix, stacked (n, 3)."""
    stacked = np.vstack([p for p in (points, rows) if p is not None])
    lam, vec = np.linalg.eigh(stacked.T @ stacked)
    return stacked @ vec[:, np.argsort(lam)[::-1][:3]]


def assert_same_up_to_axis_signs(got, want, atol):
    """``got`` equals ``want`` (n, 3) after flipping each axis of ``got`` to agree in sign."""
    signs = np.sign(np.einsum("ij,ij->j", got, want))
    np.testing.assert_allclose(got * signs, want, atol=atol)
