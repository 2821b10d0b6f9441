"""Numerical minimisation of the deep linear UFM: balanced starts, restarts and per-class escapes.

For depth M >= 2 the UFM objective has more than one local minimum: the all-zero
point is one (every gradient there is of order M + 1 in the parameters), and so
is every point where some classes are "switched off" (their classifier rows and
feature means at zero) while the others sit at their optimum, or switched on
where the global optimum has them collapsed. A plain small random start lands
in one of them and looks converged (tiny gradient). Three things steer the
search to the global minimum:

* a **balanced start**: every layer is ``s`` times an orthogonal map, and the
  feature mean of each class has the norm that balances the first layer at the
  optimum (``lambda_H n ||h||^2 = lambda_W s^2``), with ``s`` chosen so that an
  average class starts with an output of norm about 1 (beyond the bump of the
  per-class objective, so no class starts in the zero basin) and in a random
  direction of the class space;
* **several starts** (independent random frames), keeping the lowest objective;
* **escapes**: from the best point, each class in turn is switched off (its
  feature columns and classifier row set to zero), reset (switched off, then
  on again along the directions the layers use least: this separates two
  classes caught sharing one direction), or, if already off, switched on (a
  rank-one path of scale ``s`` through every layer); the optimiser runs again
  and a move is kept only when the objective falls. Passes repeat until no
  move helps.
"""

from __future__ import annotations

import numpy as np
import torch

#: Relative objective decrease an escape move must achieve to be kept.
ESCAPE_GAIN = 1e-12
#: Iterations (at least) an escape move gets before it must have beaten the best point to be pursued.
ESCAPE_STEPS = 100


def objective(H, layers, bias, labels, onehot, loss, lam_w, lam_h):
    """The UFM objective: fit of ``W_M ... W_1 H + b`` plus weight decay on layers and features."""
    product = layers[-1]
    for w in layers[-2::-1]:  # the (class, dim) product first: K dim^2 per layer instead of N dim^2
        product = product @ w
    logits = H.T @ product.T
    if bias is not None:
        logits = logits + bias
    n = H.shape[1]
    if loss == "mse":
        fit = 0.5 * ((logits - onehot) ** 2).sum() / n
    else:
        fit = torch.nn.functional.cross_entropy(logits, labels)
    decay = 0.5 * lam_w * sum((w**2).sum() for w in layers) + 0.5 * lam_h * (H**2).sum()
    return fit + decay


def _orthonormal_rows(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(cols, rows, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).T


def layer_scale(counts: np.ndarray, depth: int, lam_w: float, lam_h: float) -> tuple[float, float]:
    """Balanced per-layer singular value ``s`` and feature-mean norm for an average class.

    With ``lambda_H n ||h||^2 = lambda_W s^2`` (the balance every stationary
    point satisfies between the features and the first layer) and an output
    ``s^M ||h|| = 1``: ``s^(M+1) = sqrt(n lambda_H / lambda_W)``.
    """
    n_mean = float(counts.mean())
    s = (n_mean * lam_h / lam_w) ** (1.0 / (2 * (depth + 1)))
    return s, s * np.sqrt(lam_w / (lam_h * n_mean))


def balanced_start(counts: np.ndarray, dim: int, depth: int, scale: float, h_norm: float,
                   gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Layers ``scale`` times orthogonal maps; class-k features ``h_norm`` times a random unit output direction."""
    k = counts.size
    frames = [_orthonormal_rows(dim, dim, gen) for _ in range(depth)]
    out = _orthonormal_rows(k, dim, gen)
    layers = [scale * frames[m] @ frames[m - 1].T for m in range(1, depth)] + [scale * out @ frames[-1].T]
    directions = _orthonormal_rows(k, k, gen)  # a random rotation: classes start apart, none in the zero basin
    means = h_norm * (frames[0].T @ out.T @ directions.T)  # (dim, K): the product maps mean k to s^M h_norm d_k
    spread = 0.1 * h_norm / np.sqrt(dim) * torch.randn(dim, int(counts.sum()), generator=gen, dtype=torch.float64)
    H = torch.repeat_interleave(means, torch.from_numpy(counts), dim=1) + spread
    return H, layers


def switch_class(H: torch.Tensor, layers: list[torch.Tensor], columns: slice, cls: int, on: bool, scale: float,
                 h_norm: float) -> None:
    """In place: switch class ``cls`` off (zero features and classifier row) or on.

    Switching on adds a rank-one path of scale ``scale`` through every layer
    along the directions the layers use least (the last singular vectors), so
    it does not land on a direction another class already holds.
    """
    with torch.no_grad():
        if not on:
            H[:, columns] = 0.0
            layers[-1][cls] = 0.0
            return
        path = [torch.linalg.svd(layers[0])[2][-1]]  # the input direction layer 1 uses least
        for w in layers[:-1]:
            path.append(torch.linalg.svd(w)[0][:, -1])  # each hidden layer's least-used output direction
        H[:, columns] += h_norm * path[0][:, None]
        for m, w in enumerate(layers[:-1]):
            w += scale * torch.outer(path[m + 1], path[m])
        layers[-1][cls] += scale * path[-1]


def minimise(params: list[torch.Tensor], value, optimizer: str, steps: int, lr: float, tol: float,
             trace: list[float]) -> float:
    """Run L-BFGS (strong Wolfe) or plain gradient descent on ``params``; the final objective."""
    def closure() -> torch.Tensor:
        opt.zero_grad()
        out = value()
        out.backward()
        trace.append(float(out.detach()))
        return out

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=steps, max_eval=2 * steps, tolerance_grad=tol,
                                tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")
        opt.step(closure)
    else:
        opt = torch.optim.SGD(params, lr=lr)
        for _ in range(steps):
            opt.step(closure)
    with torch.no_grad():
        return float(value())


def class_is_on(layers: list[torch.Tensor], cls: int) -> bool:
    """Whether class ``cls`` has a classifier row (of the layer product) above 1e-3 of the largest."""
    with torch.no_grad():
        product = layers[0]
        for w in layers[1:]:
            product = w @ product
        norms = product.norm(dim=1)
        return bool(norms[cls] > 1e-3 * norms.max())


#: Escape moves tried per class, by whether the class is on: sequences of switches (False = off, True = on).
ESCAPES = {True: [(False,), (False, True)], False: [(True,)]}
