"""Plain-words explanations of every metric and setting the workbench shows: one glossary for all.

The dashboard's tooltips, the figures' hover texts and the notebooks read
their explanations here, so a term means the same thing everywhere. UI code
imports this module; this module imports nothing of the workbench.

Examples
--------
>>> explain("fvu")
'Fraction of variance unexplained: the share of the activations the SAE fails to reconstruct (0 = perfect, 1 = no better than the mean).'
>>> term("nc1")
'NC1'
>>> explain("alpha ")
Traceback (most recent call last):
...
KeyError: "key: no glossary entry 'alpha '; known: alpha, ..."
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    """A term as shown (``name``) and its explanation in plain words (``text``)."""

    name: str
    text: str


GLOSSARY: dict[str, Entry] = {
    # ----- spectra -------------------------------------------------------------------------------------
    "alpha": Entry("alpha", "Power-law exponent of the tail of a weight matrix's eigenvalue spectrum (WeightWatcher). "
                            "2-6 is typical of a well-trained layer (smaller = heavier tail, more learned structure); "
                            "above 6 looks barely trained; fits above 8 or with few eigenvalues in the tail are "
                            "unreliable."),
    "alpha_weighted": Entry("weighted alpha", "alpha times log10 of the largest eigenvalue: WeightWatcher's "
                                              "quality summary that also counts the layer's scale."),
    "stable_rank": Entry("stable rank", "Squared Frobenius norm over squared spectral norm: how many directions "
                                        "carry the matrix's energy, robust to tiny singular values."),
    "effective_rank": Entry("effective rank", "exp of the entropy of the normalised singular values: the number "
                                              "of equally strong directions with the same spread."),
    "numerical_rank": Entry("numerical rank", "Singular values above the floating-point tolerance: the rank a "
                                              "linear-algebra library would report."),
    "energy_rank": Entry("energy rank", "Fewest singular directions holding the given share of the squared "
                                        "singular values (energy_rank_90: 90% of the energy)."),
    "ks_distance": Entry("KS distance", "Kolmogorov-Smirnov distance between the spectrum's tail and the fitted "
                                        "power law: small means the alpha fit is good."),
    "xmin": Entry("xmin", "Eigenvalue where the power-law tail starts (chosen to minimise the KS distance)."),
    "log_norm": Entry("log norm", "log10 of the squared Frobenius norm of the matrix."),
    "log_spectral_norm": Entry("log spectral norm", "log10 of the largest eigenvalue of W^T W."),
    "mp_softrank": Entry("MP soft rank", "Marchenko-Pastur bulk edge over the largest eigenvalue: near 1 looks "
                                         "random, near 0 means strong structure above the noise bulk."),
    "num_spikes": Entry("spikes", "Eigenvalues above the Marchenko-Pastur edge of a random matrix of the same "
                                  "shape: directions the training put there. Blank for a rank-deficient matrix "
                                  "or an OV/QK circuit, where the law does not apply (see mp_reason)."),
    "bulk_max": Entry("bulk edge", "Largest eigenvalue a random matrix of this shape and scale would have "
                                   "(Marchenko-Pastur edge)."),
    "esd": Entry("ESD", "Empirical spectral density: the histogram of the eigenvalues of W^T W, on log axes, with "
                        "the power-law fit of its tail and the Marchenko-Pastur edge of a random matrix."),
    "spectra_metric": Entry("metric", "The rank or heavy-tail measure coloured in the heatmap; hover a name "
                                      "in the terms line for what each means."),
    "spectra_layer": Entry("layer", "Layer of the selected cell and of the per-head circuits (counted from 0)."),
    "calibration_seq": Entry("windows", "Corpus windows for the activation spectra and the held-out loss."),
    "matrix_kind": Entry("matrix", "Which weight matrix: q, k, v, o (attention), in/out (MLP), or the per-head "
                                   "OV and QK circuits."),
    "circuit": Entry("circuit", "OV: what a head writes given what it attends to (W_V W_O); QK: what it attends "
                                "to (W_Q W_K^T)."),
    # ----- neural collapse -----------------------------------------------------------------------------
    "nc1": Entry("NC1", "Within-class spread relative to the spread between class means, tr(Sigma_W Sigma_B^+)/K. "
                        "Falls towards 0 as every sample collapses onto its class mean."),
    "nc2": Entry("NC2", "How far the class means are from a simplex ETF (equal lengths, equal and maximal angles). "
                        "0 = a perfect simplex."),
    "nc3": Entry("NC3", "Distance between the classifier's rows and the class means, both normalised: 0 = the "
                        "classifier is the class means (self-duality)."),
    "nc4": Entry("NC4", "Share of samples where the network's prediction differs from the nearest class mean: "
                        "0 = the network classifies by nearest class mean."),
    "gram": Entry("Gram matrix", "Cosines between the centred class means (or classifier rows): a simplex ETF shows "
                                 "1 on the diagonal and -1/(K-1) elsewhere."),
    "imbalance": Entry("imbalance ratio", "Training samples of a majority class per sample of a minority class; "
                                          "1 = balanced. Large ratios make minority classes collapse together."),
    "target": Entry("target geometry", "ETF: the simplex equiangular tight frame of balanced training; OF: the "
                                       "orthogonal frame reached with MSE loss and imbalance."),
    "loss": Entry("loss", "mse: squared error to one-hot targets; ce: cross-entropy."),
    "epochs": Entry("epochs", "Passes over the training set."),
    "record_every": Entry("record every", "Epochs between two measurements of NC1-NC4."),
    "depth": Entry("depth", "ReLU layers before the linear head."),
    "width": Entry("width", "Units in every hidden layer."),
    "n_linear": Entry("linear layers", "Bias-free linear layers at the end (the last is the classifier)."),
    "n_classes": Entry("classes", "Digit classes 0..K-1 used for training."),
    "n_major": Entry("samples per majority class", "Training samples of each majority class."),
    "collapse_layer": Entry("layer", "Layer whose NC curves and Gram matrix are shown."),
    # ----- SAEs -----------------------------------------------------------------------------------------
    "l0": Entry("L0", "Average number of SAE features active on a token: lower is sparser."),
    "fvu": Entry("FVU", "Fraction of variance unexplained: the share of the activations the SAE fails to "
                        "reconstruct (0 = perfect, 1 = no better than the mean)."),
    "ce_loss_recovered": Entry("CE loss recovered", "How much of the model's next-token loss survives when the SAE's "
                                                    "reconstruction replaces the activations: 100% = as good as the "
                                                    "original, 0% = as bad as zeroing the hook."),
    "dead": Entry("dead features", "Features that never fired on the evaluation tokens."),
    "dfa": Entry("DFA", "Direct feature attribution: how much each earlier token (source) contributes to the "
                        "feature's activation at the chosen token, through each head's attention and values. The "
                        "sources add up to the activation."),
    "head_share": Entry("head share", "Share of the feature's decoder weight that lies in each attention head "
                                      "(rows sum to 1)."),
    "feature_family": Entry("family", "induction: fires where a token repeats an earlier pattern; local context: "
                                      "reads the last few tokens; long-range context: reads far back."),
    "logit_effect": Entry("logit effect", "Tokens whose logits the feature raises (top) or lowers (bottom) "
                                          "directly, through W_dec W_O W_U."),
    "architecture": Entry("architecture", "topk / batchtopk: keep the k strongest features per token (per batch); "
                                          "standard: ReLU with an L1 penalty; jumprelu: learned thresholds; "
                                          "gated; matryoshka: nested dictionaries."),
    "d_sae": Entry("features", "Number of features (latents) of a new SAE, typically 4-64 times the input width."),
    "k": Entry("k", "Active features per token for topk, batchtopk and matryoshka SAEs."),
    "l1_coefficient": Entry("L1 coefficient", "Sparsity penalty of standard and jumprelu SAEs: larger gives a "
                                              "lower L0 and a worse reconstruction."),
    "learning_rate": Entry("learning rate", "Adam step size, e.g. 3e-3 (type it as a number; 1e-4 to 1e-2 is the "
                                            "usual range)."),
    "n_tokens": Entry("training tokens", "Training budget: tokens the SAE sees in total."),
    "eval_seq": Entry("held-out windows", "Held-out corpus windows searched for each feature's examples."),
    "sae_layer": Entry("layer", "Layer whose attention output (attn.hook_z, all heads) the SAE reads."),
    "saved_sae": Entry("SAE", "A saved SAE of this model and layer; train one below if there is none."),
    "feature": Entry("feature", "Index of the feature shown in the browser."),
    "prompt": Entry("prompt", "Text whose token-by-token feature activations are shown."),
    "token": Entry("token", "Position in the prompt whose DFA by source is shown."),
    "steer_scale": Entry("steering scale", "Multiple of the feature's decoder direction added to hook_z while the "
                                           "model continues the text; negative values suppress the feature."),
    "steer_prompt": Entry("steering prompt", "Text the steered model continues."),
    # ----- models, cache -------------------------------------------------------------------------------
    "induction_score": Entry("induction score", "Attention a head pays, on a repeated random sequence, to the token "
                                                "just after the previous occurrence of the current token: near 1 "
                                                "for an induction head."),
    "model": Entry("model", "A bundled model name (see `workbench models`) or a folder written by save_pretrained."),
    "n_seq": Entry("windows", "Number of corpus windows (sequences) used."),
    "seq_len": Entry("tokens per window", "Length of each corpus window in tokens."),
    "seed": Entry("seed", "Random seed: the same seed gives the same result."),
    "layer": Entry("layer", "Transformer block, counted from 0."),
    # ----- connectomes ---------------------------------------------------------------------------------
    "ntf": Entry("NTF", "Non-negative tensor factorisation of the (neuron pair x time x animal) connectivity "
                        "tensor: each component is a set of pairs, a time course and a weight per animal."),
    "fms": Entry("FMS", "Factor match score: similarity of two factorisations after matching their components "
                        "(1 = identical up to order and scale). Used to check a rank gives the same answer on "
                        "every restart."),
    "rank": Entry("rank", "Number of NTF components."),
    "rank_min": Entry("smallest rank", "Smallest number of components the rank sweep fits."),
    "rank_max": Entry("largest rank", "Largest number of components the rank sweep fits; no single mode size "
                                      "bounds it (one animal is fine)."),
    "rank_sweep": Entry("rank sweep", "Fits every rank from the smallest to the largest with several restarts; "
                                      "pick the largest rank whose restarts agree (high FMS) and whose held-out "
                                      "error still falls."),
    "reconstruction_error": Entry("reconstruction error", "Relative error of the factorisation on the tensor "
                                                          "(held-out entries for the cross-validated curve)."),
    "n_restarts": Entry("restarts", "Fits per rank from different random starts, compared with FMS."),
    "max_iter": Entry("iterations", "Most iterations of each fit."),
    "n_surrogates": Entry("surrogates", "Recordings with each neuron's trace circularly shifted in time, fitted the "
                                        "same way: a component is above chance when it explains more than the "
                                        "surrogates' best (0: no test; 19 gives p < 0.05 at best)."),
    "covariate": Entry("covariate", "A behaviour or stimulus variable of the recording drawn over the time factor, "
                                    "with its correlation and circular-shift p-value."),
    "n_neurons": Entry("neurons", "Neurons of the synthetic recording."),
    "n_animals": Entry("animals", "Animals (recordings) of the synthetic data set."),
    "n_time": Entry("time points", "Samples per recording."),
    "n_motifs": Entry("planted motifs", "Connectivity motifs planted in the synthetic data: a good fit finds them."),
    "source": Entry("data", "synthetic: a generated recording with planted motifs; file: a recording from the "
                            "data folders."),
    "recording": Entry("recording", "A recording found in the data folders."),
    "path": Entry("path", "A recording file or folder inside the data folders (absolute, or relative to the first)."),
    "animal": Entry("animal", "Animal whose traces are shown."),
    "component": Entry("component", "NTF component shown in the browser."),
    "dfc": Entry("dynamic functional connectivity", "Correlation between every pair of neurons in a window "
                                                    "sliding over time."),
}


def _entry(key: str) -> Entry:
    if key not in GLOSSARY:
        raise KeyError(f"key: no glossary entry {key!r}; known: {', '.join(sorted(GLOSSARY))}")
    return GLOSSARY[key]


def explain(key: str) -> str:
    """The plain-words explanation of ``key`` (a :data:`GLOSSARY` key, e.g. ``"nc1"``); ``KeyError`` if unknown.

    Examples
    --------
    >>> explain("k")
    'Active features per token for topk, batchtopk and matryoshka SAEs.'
    """
    return _entry(key).text


def term(key: str) -> str:
    """The name ``key`` is shown under (``"nc1"`` -> ``'NC1'``).

    Examples
    --------
    >>> term("ce_loss_recovered")
    'CE loss recovered'
    """
    return _entry(key).name
