"""Neural collapse: the geometry of last-layer features at the end of training.

Train a classifier past zero training error and its penultimate features
collapse (Papyan, Han & Donoho 2020):

* **NC1** every feature shrinks onto its class mean: within-class covariance
  Sigma_W vanishes against the between-class covariance Sigma_B,
  ``nc1 = tr(Sigma_W Sigma_B^+) / K``;
* **NC2** the centred class means form a simplex equiangular tight frame (ETF):
  equal norms, pairwise cosines -1/(K-1). Without a bias and with MSE they form
  an orthogonal frame (OF) instead;
* **NC3** the classifier rows line up with the class means (self-duality);
* **NC4** the classifier decides like a nearest-class-mean rule.

With imbalanced classes the geometry tilts in a way known in closed form for
the (deep linear) unconstrained-feature model (Dang et al., ICML 2023): class
means stay orthogonal, but majority classes get longer classifier rows and
shorter feature means, and classes that are too small collapse to zero.

The pieces: :func:`nc_metrics` (one array of features) and
:class:`NCAccumulator` (streamed batches, exact for any split) measure NC1-NC4;
:func:`cdnv`, :func:`hyperspherical_uniformity` (GNC2), :func:`uniform_duality`
(UNC3) and :func:`ood_orthogonality` (NC5) the variants used with many or
imbalanced classes; :class:`TiledNCAccumulator` and :func:`next_token_collapse`
measure them at vocabulary scale (next-token classes, K up to 50,257, d < K - 1,
no K x K matrix formed); :func:`layerwise` and :func:`track` measure them at every layer of a model and
over training; :func:`imbalanced_geometry` gives the theory, :func:`train_ufm`
the numerical optimum it predicts, :func:`minority_collapse` the
cross-entropy minority collapse, and :func:`run_experiment` trains an MLP with a
bias-free deep linear head on real data. Figures: :mod:`workbench.figures.collapse`.

Examples
--------
Features that sit exactly on a simplex ETF of radius 2, spread isotropically
with sigma = 0.1 around each mean, have NC1 = sigma^2 (K-1)^2 / (K r^2) and
NC2 = 0:

>>> import numpy as np
>>> from workbench.collapse import nc_metrics, imbalanced_geometry, train_ufm
>>> K, d, r, sigma = 3, 3, 2.0, 0.1
>>> means = (np.eye(K) - 1 / K) * np.sqrt(K / (K - 1)) * r     # simplex ETF, norms r
>>> spread = np.vstack([np.eye(d), -np.eye(d)]) * sigma * np.sqrt(d)  # Sigma_W = sigma^2 I
>>> x = np.vstack([m + spread for m in means]); y = np.repeat(np.arange(K), 2 * d)
>>> nc = nc_metrics(x, y, W=means, device="cpu")
>>> round(float(nc.nc1), 6), round(sigma**2 * (K - 1) ** 2 / (K * r**2), 6)
(0.003333, 0.003333)
>>> bool(nc.nc2_etf < 1e-12), float(nc.nc4)
(True, 0.0)

The unconstrained-feature model trained on imbalanced counts lands on
Dang et al.'s closed form:

>>> n = [200, 100, 50, 50]
>>> ufm = train_ufm(n, dim=6, depth=2, lambda_W=5e-4, lambda_H=5e-4, device="cpu")
>>> fit = nc_metrics(ufm.features, ufm.label, ufm.classifier, device="cpu")
>>> theory = imbalanced_geometry(n, 5e-4, 5e-4, depth=2)
>>> bool(np.allclose(fit.mean_norm, theory.mean_norm, rtol=1e-4)), bool(fit.nc1 < 1e-8)
(True, True)
"""

from workbench.collapse.accumulator import NCAccumulator
from workbench.collapse.experiment import against_theory, build_model, run_experiment
from workbench.collapse.extended import cdnv, hyperspherical_uniformity, ood_orthogonality, uniform_duality
from workbench.collapse.layerwise import NCTracker, layerwise, track
from workbench.collapse.metrics import nc_metrics
from workbench.collapse.theory import etf_gram, imbalanced_geometry, of_gram
from workbench.collapse.ufm import UFMOptimumWarning, minority_collapse, minority_cosine, train_ufm
from workbench.collapse.vocab import TiledNCAccumulator, next_token_collapse

__all__ = [
    "NCAccumulator",
    "NCTracker",
    "TiledNCAccumulator",
    "UFMOptimumWarning",
    "against_theory",
    "build_model",
    "cdnv",
    "etf_gram",
    "hyperspherical_uniformity",
    "imbalanced_geometry",
    "layerwise",
    "minority_collapse",
    "minority_cosine",
    "nc_metrics",
    "next_token_collapse",
    "of_gram",
    "ood_orthogonality",
    "run_experiment",
    "track",
    "train_ufm",
    "uniform_duality",
]
