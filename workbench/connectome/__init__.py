"""Dynamic functional connectomes by non-negative tensor factorization.

Reproduces and extends Dyballa et al. (ICLR 2024), "Learning dynamic
representations of the functional connectome in neurobiological networks".
The idea in four steps:

1. **Affinities.** For every pair of neurons and every time bin, a
   non-negative number saying how much the two traces change together
   (:func:`affinity`). Stacking animals gives a tensor ``pair x time x animal``.
2. **Factorization.** A non-negative CP model writes that tensor as a sum of
   ``R`` rank-one components (:func:`ntf`). Component ``r`` is a *pair factor*
   (which neuron pairs, i.e. a weighted graph), a *time factor* (when) and an
   *animal factor* (who). Random restarts and the factor match score
   (:func:`factor_match_score`) tell whether a solution is reproducible, and
   :func:`rank_sweep` picks ``R`` from error and stability.
3. **Communities.** Each pair factor is a weighted graph whose communities
   (:func:`communities`, a weighted stochastic block model) are the groups of
   neurons that act together in that component.
4. **Pipeline and figures.** :func:`dynamic_connectome` runs it all;
   :mod:`workbench.figures.connectome` draws the results.
5. **Chance and behaviour.** ``n_surrogates=`` refits the pipeline on
   recordings whose neurons keep their own dynamics but lose their timing
   (:func:`surrogate_traces`), giving each component a p-value and each pair
   a chance threshold; covariates that travel with the traces (velocity,
   reversals, stimuli) are correlated with every time factor
   (:mod:`workbench.connectome.covariates`).

Worked example on planted data: two motifs, each a pair of communities that
co-activate in one epoch in some animals.

>>> from workbench.connectome import synthetic, affinity, ntf, communities
>>> ds = synthetic(n_neurons=20, n_animals=3, n_time=320, n_motifs=2, seed=0)
>>> tensor = affinity(ds.traces, window=4)              # (pair, time, animal)
>>> tensor.dims
('pair', 'time', 'animal')
>>> result = ntf(tensor, rank=2, n_restarts=4, device="cpu")
>>> bool((result.factor("pair") >= 0).all()), result.stability > 0.9
(True, True)
>>> labels = communities(result.factor("pair")[:, 0])  # neurons of component 0
>>> labels.dims
('neuron',)
"""

from workbench.connectome.affinity import affinity
from workbench.connectome.communities import communities
from workbench.connectome.consensus import consensus_communities
from workbench.connectome.fms import congruence, factor_match_score
from workbench.connectome.loaders import load_traces
from workbench.connectome.ntf import NTFResult, default_device, ntf
from workbench.connectome.pairs import matrix_to_pairs, pairs_to_matrix
from workbench.connectome.pipeline import dynamic_connectome
from workbench.connectome.rank import rank_sweep, suggest_rank
from workbench.connectome.surrogates import surrogate_traces
from workbench.data.synthetic_connectome import synthetic_connectome as synthetic

__all__ = [
    "NTFResult",
    "affinity",
    "communities",
    "congruence",
    "consensus_communities",
    "default_device",
    "dynamic_connectome",
    "factor_match_score",
    "load_traces",
    "matrix_to_pairs",
    "ntf",
    "pairs_to_matrix",
    "rank_sweep",
    "suggest_rank",
    "surrogate_traces",
    "synthetic",
]
