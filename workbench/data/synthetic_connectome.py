"""Calcium-like traces with a planted dynamic connectome.

Each *motif* is a set of neuron communities that are driven together during
the motif's epoch, in the animals that take part in it. A community's neurons
share sparse drive events; every neuron also has its own sparse background
events. Events are convolved with an exponential (calcium) kernel, scaled by a
per-neuron gain and offset, and corrupted by Gaussian noise. The planted truth
travels with the traces: community labels per motif, epochs (also given as
stimulus windows), and which animals take part.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.memory import check_fits


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _slow_drive(rng: np.random.Generator, n_time: int, width: float) -> np.ndarray:
    """A slow signal in (0, 1): Gaussian-smoothed white noise, standardised, through a logistic."""
    from scipy.ndimage import gaussian_filter1d

    slow = gaussian_filter1d(rng.normal(size=n_time), width, mode="wrap")
    return 1.0 / (1.0 + np.exp(-2.0 * (slow - slow.mean()) / slow.std()))


def synthetic_connectome(n_neurons: int = 30, n_animals: int = 4, n_time: int = 600, n_motifs: int = 3, *,
                         seed: int = 0, communities_per_motif: int = 2, community_size: int | None = None,
                         participation: float = 0.5, drive_rate: float = 0.15, background_rate: float = 0.01,
                         tau: float = 4.0, noise: float = 0.1, missing_fraction: float = 0.0,
                         fps: float = 4.0, shared_events: bool = False,
                         driven_motif: int | None = None) -> xr.Dataset:
    """Synthetic recordings with planted motifs, communities, epochs and participating animals.

    Parameters
    ----------
    n_neurons, n_animals, n_time, n_motifs : int
        Sizes; time is split into ``n_motifs`` consecutive epochs, one per motif.
    seed : int
        Random seed; the same seed gives the same data.
    communities_per_motif : int
        Communities per motif; communities are disjoint across all motifs.
    community_size : int, optional
        Neurons per community; default ``n_neurons // (n_motifs * communities_per_motif + 1)``
        (so some neurons belong to no motif).
    participation : float
        Fraction of animals taking part in each motif (at least one, at most
        all but one when there are two or more animals).
    drive_rate, background_rate : float
        Probability per frame of a shared community event (inside the epoch,
        participating animals only) and of a private background event.
    tau : float
        Decay time of the calcium kernel, in frames.
    noise : float
        Gaussian noise SD relative to each trace's signal SD.
    missing_fraction : float
        Probability that a neuron is not identified in an animal (all NaN);
        every neuron stays present in at least one animal.
    fps : float
        Frames per second, for the ``time`` coord (seconds).
    shared_events : bool
        If True, every participating animal sees the same community event
        times (a stimulus-locked design); if False (default), each animal's
        events are drawn independently.
    driven_motif : int, optional
        A motif driven by a planted covariate instead of an epoch: its shared
        events happen over the whole recording with probability
        ``2 * drive_rate * drive(t)``, where ``drive`` is a slow signal in
        (0, 1) (Gaussian-smoothed noise, width ``2 tau``, through a logistic),
        returned as the data variable ``drive`` (time). Its epoch is then
        the whole recording. Default: none (the data do not change).

    Returns
    -------
    xr.Dataset
        ``traces`` (animal, neuron, time); truth ``community`` (motif, neuron):
        0 = not in the motif, 1.. = community; ``participates`` (motif, animal);
        ``epoch_start``/``epoch_end`` (motif) in seconds, ``drive`` (time)
        with ``driven_motif``. ``traces.attrs`` hold the epochs as stimulus
        windows (``stim_names``, ``stim_start``, ``stim_end``).

    Notes
    -----
    The CP rank of the affinity tensor (:func:`~workbench.connectome.affinity`)
    is not ``n_motifs``. A CP term has one time course shared by every
    animal, so with independent events (the default) each (community,
    participating animal) is its own term: ``communities_per_motif x`` the
    number of participating animals per motif, summed over motifs. With
    ``shared_events=True`` each community is one term. On top of either
    comes a noise floor (uncorrelated noise makes ``d_i d_j`` positive half of
    the time), shared by all pairs and bins: one more, nearly flat, term.

    Examples
    --------
    >>> ds = synthetic_connectome(20, 3, 300, 2, seed=1)
    >>> ds.traces.dims, int(ds.community.max())
    (('animal', 'neuron', 'time'), 2)
    """
    for name, value in (("n_neurons", n_neurons), ("n_animals", n_animals), ("n_time", n_time),
                        ("n_motifs", n_motifs), ("communities_per_motif", communities_per_motif)):
        _check_positive_int(name, value)
    check_fits(n_elements=4 * n_animals * n_neurons * n_time, itemsize=8, argument="n_neurons, n_animals, n_time",
               what=f"{n_animals} x {n_neurons} x {n_time} traces (and their working copies)")
    n_groups = n_motifs * communities_per_motif
    size = community_size if community_size is not None else n_neurons // (n_groups + 1)
    _check_positive_int("community_size", size, minimum=2)
    if size * n_groups > n_neurons:
        raise ValueError(
            f"n_neurons: expected at least community_size * n_motifs * communities_per_motif = "
            f"{size * n_groups}, got {n_neurons}"
        )
    if n_time < 4 * n_motifs * tau:
        raise ValueError(f"n_time: expected at least {int(4 * n_motifs * tau)} frames for {n_motifs} epochs, got {n_time}")
    for name, value in (("participation", participation), ("missing_fraction", missing_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a fraction in [0, 1], got {value!r}")
    if driven_motif is not None and (not isinstance(driven_motif, (int, np.integer)) or not 0 <= driven_motif < n_motifs):
        raise ValueError(f"driven_motif: expected None or an integer in [0, {n_motifs}), got {driven_motif!r}")
    rng = np.random.default_rng(seed)

    community = np.zeros((n_motifs, n_neurons), dtype=int)
    members = rng.permutation(n_neurons)[: size * n_groups].reshape(n_motifs, communities_per_motif, size)
    for m in range(n_motifs):
        for c in range(communities_per_motif):
            community[m, members[m, c]] = c + 1
    edges = np.linspace(0, n_time, n_motifs + 1).astype(int)
    starts, ends = edges[:-1].copy(), edges[1:].copy()
    drive = None
    if driven_motif is not None:  # its own generator: the other draws stay those of the undriven data
        drive = _slow_drive(np.random.default_rng([seed, 1]), n_time, 2 * tau)
        starts[driven_motif], ends[driven_motif] = 0, n_time
    n_part = int(np.clip(round(participation * n_animals), 1, max(1, n_animals - 1)))
    participates = np.zeros((n_motifs, n_animals), dtype=bool)
    for m in range(n_motifs):
        participates[m, rng.choice(n_animals, n_part, replace=False)] = True

    events = (rng.random((n_animals, n_neurons, n_time)) < background_rate) * rng.exponential(1.0, (n_animals, n_neurons, n_time))
    spans = ends - starts
    common = [[(rng.random(spans[m]) < (2 * drive_rate * drive if m == driven_motif else drive_rate))
               * rng.exponential(1.0, spans[m]) for _ in range(communities_per_motif)]
              for m in range(n_motifs)] if shared_events else None
    for m in range(n_motifs):
        epoch, length = slice(starts[m], ends[m]), ends[m] - starts[m]
        rate = 2 * drive_rate * drive if m == driven_motif else drive_rate
        for a in np.flatnonzero(participates[m]):
            for c in range(communities_per_motif):
                shared = common[m][c] if shared_events else \
                    (rng.random(length) < rate) * rng.exponential(1.0, length)
                jitter = rng.uniform(0.7, 1.3, (size, 1))
                events[a, members[m, c], epoch] += jitter * shared
    kernel = np.exp(-np.arange(int(8 * tau)) / tau)
    calcium = np.apply_along_axis(lambda e: np.convolve(e, kernel)[:n_time], -1, events)
    signal_sd = calcium.std(-1, keepdims=True) + 1e-3
    gain = rng.uniform(0.5, 2.0, (n_animals, n_neurons, 1))
    offset = rng.normal(0.0, 1.0, (n_animals, n_neurons, 1))
    traces = gain * (calcium + noise * signal_sd * rng.normal(size=calcium.shape)) + offset

    if missing_fraction > 0:
        missing = rng.random((n_animals, n_neurons)) < missing_fraction
        missing[rng.integers(n_animals, size=n_neurons), np.arange(n_neurons)] = False
        traces[missing] = np.nan

    time = np.arange(n_time) / fps
    starts, ends = starts / fps, ends / fps
    motif_names = [f"motif{m}" for m in range(n_motifs)]
    neurons = [f"N{i:03d}" for i in range(n_neurons)]
    animals = [f"animal{a}" for a in range(n_animals)]
    attrs = {"stim_names": motif_names, "stim_start": starts.tolist(), "stim_end": ends.tolist(), "fps": float(fps),
             "source": "workbench.data.synthetic_connectome", "seed": int(seed)}
    data = {
        "traces": xr.DataArray(traces, dims=("animal", "neuron", "time"), attrs=attrs),
        "community": (("motif", "neuron"), community),
        "participates": (("motif", "animal"), participates),
        "epoch_start": ("motif", starts),
        "epoch_end": ("motif", ends),
    }
    if drive is not None:
        data["drive"] = xr.DataArray(drive, dims=("time",), attrs={"long_name": f"drive of motif{driven_motif}"})
    return xr.Dataset(
        data,
        coords={"animal": animals, "neuron": neurons, "time": time, "motif": motif_names},
        attrs={"description": "synthetic calcium traces with planted motifs (workbench.connectome.synthetic)"},
    )
