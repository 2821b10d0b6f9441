"""Bad depth and counts, integral-float counts, and outputs too large to fit: clear errors, or the same result."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.collapse import NCAccumulator, imbalanced_geometry, minority_collapse, run_experiment, train_ufm


@pytest.mark.parametrize("depth, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)])
def test_depth_below_one_or_not_an_int(depth, error):
    with pytest.raises(error, match="depth: expected an int >= 1"):
        train_ufm([4, 2], 2, depth, device="cpu")
    with pytest.raises(error, match="depth: expected an int >= 1"):
        imbalanced_geometry([4, 2], 1e-2, 1e-2, depth)
    with pytest.raises(error, match="depth: expected an int >= 1"):
        minority_collapse([2], depth=depth, device="cpu")


@pytest.mark.parametrize("counts", [[5, 0], [5, -3], np.array([5.0, 0.0])])
def test_counts_must_be_positive(counts):
    with pytest.raises(ValueError, match=r"n_per_class: expected counts >= 1, got \[5(\.0)?, (0|-3)(\.0)?\]"):
        train_ufm(counts, 2, device="cpu")
    with pytest.raises(ValueError, match="n_per_class: expected counts >= 1"):
        imbalanced_geometry(counts, 1e-2, 1e-2, 1)


def test_integral_float_counts_are_counts():
    as_float, as_int = np.array([300.0, 120.0]), [300, 120]
    th = imbalanced_geometry(as_float, 1e-3, 1e-3, 2)
    assert th.n.values.tolist() == as_int and float(th.objective) == float(imbalanced_geometry(as_int, 1e-3, 1e-3, 2).objective)
    ufm = train_ufm(np.array([20.0, 10.0]), 2, 2, 1e-2, 1e-2, device="cpu")
    assert ufm.attrs["n_per_class"] == [20, 10]
    assert float(ufm.objective) == float(train_ufm([20, 10], 2, 2, 1e-2, 1e-2, device="cpu").objective)
    x, y = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32), np.arange(40) % 2
    ds = run_experiment((x, y), n_per_class=np.array([20.0, 8.0]), hidden=(8,), n_linear=1, epochs=1, progress=False,
                        device="cpu")
    assert ds.attrs["n_per_class"] == [20, 8]


@pytest.mark.parametrize("counts", [[5.5, 2], [np.nan, 2.0], [np.inf, 2.0]])
def test_non_integral_float_counts_are_refused(counts):
    with pytest.raises(TypeError, match=r"n_per_class: expected integer counts \(integral floats such as 300.0"):
        imbalanced_geometry(counts, 1e-2, 1e-2, 1)


def test_a_ufm_too_large_to_fit_is_refused_with_its_size():
    with pytest.raises(ValueError, match=r"dim: the dense output \(features \(sample, dim\) 200000 x 200000.* would need "
                                         r"[\d.]+ [KMGT]?B, more than the .* of memory available"):
        train_ufm([1] * 200_000, 200_000, device="cpu")


def test_class_by_class_matrices_too_large_to_fit_are_refused_with_their_size():
    with pytest.raises(ValueError, match=r"n_classes: the dense output \(class x class matrices \(about 8\) "
                                         r"8 x 200000 x 200000.* would need [\d.]+ [KMGT]?B"):
        NCAccumulator(200_000, 200_000, scatter="projected", device="cpu")
