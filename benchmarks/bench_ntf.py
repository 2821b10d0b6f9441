"""Benchmark: workbench NTF (batched torch HALS) against tensorly and tensortools.

For a paper-scale tensor (109 neurons -> 5886 pairs x 240 time x 21 animals,
rank 15) and a smaller one, every method fits from random starts; the target
is the relative error tensorly's numpy HALS reaches after ``--ref-iters``
iterations, and each method's score is the wall time until its error is
within 0.1% of that target. Also reported: seconds per iteration against the
memory-bandwidth bound (the tensor read once per mode update, 3 reads per
iteration; the machine's bandwidth is measured here with a large numpy copy),
and the time of a full rank sweep (ranks 5-20, 10 restarts each).

Run: ``python benchmarks/bench_ntf.py [--no-sweep]``; results go to
``benchmarks/results/ntf.json``.

Quick mode ``--masked [--neurons N]``: seconds per iteration of ``ntf`` on a
7-animal tensor (N neurons -> pairs x 240 time x 7 animals, rank 8) with 60% of
the pairs missing in each animal (the pair's whole time fibre, as when a
neuron is not identified in that animal) against the same tensor fully
observed, for 1 and 10 restarts; results go to ``benchmarks/results/ntf_masked_N_neurons.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from workbench.connectome import ntf, rank_sweep

OUT = Path(__file__).resolve().parent / "results" / "ntf.json"
SLACK = 1e-3  # "same error": within 0.1% of the target


def bandwidth_gb_s(n_bytes: int = 1 << 29, repeats: int = 5) -> float:
    """Copy bandwidth (read + write bytes per second) of a large numpy copy."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n_bytes / best / 1e9


def planted_tensor(shape, rank, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    factors = [rng.random((n, rank)) ** 4 for n in shape]  # sparse-ish, like affinity factors
    clean = np.einsum("ir,jr,kr->ijk", *factors, optimize=True)
    return np.abs(clean + noise * clean.std() * rng.standard_normal(shape))


def time_to(errors, seconds, target):
    """First time at which the error is within SLACK of target (None if never)."""
    for err, sec in zip(errors, seconds):
        if err <= target * (1 + SLACK):
            return float(sec)
    return None


def run_tensorly(x, rank, iters, backend):
    import tensorly as tl
    from tensorly.decomposition import non_negative_parafac_hals

    tl.set_backend(backend)
    tensor = tl.tensor(x) if backend == "numpy" else tl.tensor(torch.as_tensor(x))
    t0 = time.perf_counter()
    # tensorly records errors only when tol > 0; 1e-30 never stops it early
    _, errors = non_negative_parafac_hals(tensor, rank, n_iter_max=iters, init="random", random_state=0,
                                          tol=1e-30, return_errors=True)
    total = time.perf_counter() - t0
    tl.set_backend("numpy")
    errors = [float(e) for e in errors]
    return errors, [total * (i + 1) / len(errors) for i in range(len(errors))], total / len(errors)


def run_tensortools(x, rank, iters):
    try:
        import tensortools as tt
    except Exception as exc:  # reported in the JSON, not hidden
        return {"error": f"tensortools unavailable: {type(exc).__name__}: {exc}"}
    t0 = time.perf_counter()
    res = tt.ncp_hals(x, rank, max_iter=iters, tol=0, random_state=0, verbose=False)
    total = time.perf_counter() - t0
    errors = [float(e) for e in res.obj_hist]
    return errors, [total * (i + 1) / len(errors) for i in range(len(errors))], total / len(errors)


def run_workbench(x, rank, target, max_iter, n_restarts=1):
    """Errors (worst restart) and time stamps per iteration until every restart reaches the target."""
    errors, stamps = [], []
    t0 = time.perf_counter()

    def callback(_it, err):
        errors.append(float(err.max()))
        stamps.append(time.perf_counter() - t0)
        return errors[-1] <= target * (1 + SLACK)

    ntf(x, rank, n_restarts=n_restarts, max_iter=max_iter, tol=0, device="cpu", seed=0, callback=callback)
    return errors, stamps


def seconds_per_iteration(x, rank, n_restarts, iters=6):
    """Median time of one HALS iteration on the full tensor (no compression, set-up excluded)."""
    stamps = []
    ntf(x, rank, n_restarts=n_restarts, max_iter=iters, tol=0, device="cpu", seed=0, compress=None,
        callback=lambda _it, _err: stamps.append(time.perf_counter()))
    return float(np.median(np.diff(stamps)))


def missing_pairs_mask(shape, fraction=0.6, seed=0):
    """``True`` = observed; in each animal (last mode) a random ``fraction`` of pairs is missing at every time."""
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, dtype=bool)
    for k in range(shape[2]):
        mask[rng.random(shape[0]) < fraction, :, k] = False
    return mask


def masked_speed(n_neurons, rank=8, n_animals=7, n_time=240, iters=20):
    """Seconds per iteration, masked against fully observed (same tensor, same start)."""
    shape = (n_neurons * (n_neurons - 1) // 2, n_time, n_animals)
    x = planted_tensor(shape, rank).astype(np.float32)
    mask = missing_pairs_mask(shape)
    out = {"shape": list(shape), "rank": rank, "missing_fraction": float(1 - mask.mean()), "by_restarts": {}}
    for n_restarts in (1, 10):
        per_it = {}
        for name, m in (("full", None), ("masked", mask)):
            # wall time over all restarts / iterations (masked restarts run one after another on the CPU,
            # so per-callback stamps would time one restart), set-up included for both alike
            t0 = time.perf_counter()
            ntf(x, rank, n_restarts=n_restarts, mask=m, max_iter=iters, tol=0, device="cpu", seed=0, compress=None)
            per_it[name] = (time.perf_counter() - t0) / iters
        per_it["ratio"] = per_it["masked"] / per_it["full"]
        out["by_restarts"][str(n_restarts)] = per_it
        print(f"{shape} rank {rank}, {n_restarts} restarts: full {per_it['full'] * 1e3:.1f} ms/it, "
              f"masked {per_it['masked'] * 1e3:.1f} ms/it, ratio {per_it['ratio']:.2f}")
    return out


def compare(name, shape, rank, ref_iters, bandwidth):
    x = planted_tensor(shape, rank)
    print(f"\n== {name}: {shape}, rank {rank}")
    out = {"shape": list(shape), "rank": rank, "ref_iters": ref_iters, "methods": {}}
    ref_errors, ref_times, ref_per_it = run_tensorly(x, rank, ref_iters, "numpy")
    target = ref_errors[-1]
    out["target_error"] = target
    out["methods"]["tensorly_numpy"] = {"time_to_target_s": ref_times[-1], "s_per_iter": ref_per_it,
                                        "final_error": target}
    print(f"tensorly numpy: {ref_per_it:.3f} s/it, error {target:.5f} after {ref_iters} it, {ref_times[-1]:.1f} s")
    tl_torch = run_tensorly(x, rank, ref_iters, "pytorch")
    out["methods"]["tensorly_pytorch"] = {"time_to_target_s": time_to(tl_torch[0], tl_torch[1], target),
                                          "s_per_iter": tl_torch[2], "final_error": tl_torch[0][-1]}
    tt_res = run_tensortools(x, rank, ref_iters)
    if isinstance(tt_res, dict):
        out["methods"]["tensortools_ncp_hals"] = tt_res
    else:
        out["methods"]["tensortools_ncp_hals"] = {"time_to_target_s": time_to(tt_res[0], tt_res[1], target),
                                                  "s_per_iter": tt_res[2], "final_error": tt_res[0][-1]}
    errors, stamps = run_workbench(x, rank, target, max_iter=10 * ref_iters)
    ours = time_to(errors, stamps, target)
    s_it = seconds_per_iteration(x, rank, 1)
    x_bytes_f32 = x.size * 4
    bound = 3 * x_bytes_f32 / (bandwidth * 1e9)
    out["methods"]["workbench_float32"] = {"time_to_target_s": ours, "full_iterations_to_target": len(errors),
                                          "s_per_iter": s_it, "final_error": errors[-1],
                                          "bandwidth_bound_s_per_iter": bound,
                                          "fraction_of_bandwidth_bound": bound / s_it,
                                          "tensor_reads_per_iter": 2}
    others = {k: v["time_to_target_s"] for k, v in out["methods"].items()
              if k != "workbench_float32" and v.get("time_to_target_s")}
    fastest = min(others, key=others.get)
    out["speedup_vs_fastest"] = others[fastest] / ours if ours else None
    out["fastest_reference"] = fastest
    out["speedups"] = {k: v / ours for k, v in others.items()} if ours else {}
    for k, v in out["methods"].items():
        print(f"{k:24s} time to target {v.get('time_to_target_s')} s, {v.get('s_per_iter', float('nan')):.4f} s/it")
    print(f"workbench: {len(errors)} it, {s_it * 1e3:.1f} ms/it; bandwidth bound {bound * 1e3:.1f} ms/it "
          f"({100 * bound / s_it:.0f}% of bound); speedup vs fastest ({fastest}): {out['speedup_vs_fastest']}")

    errors10, stamps10 = run_workbench(x, rank, target, max_iter=10 * ref_iters, n_restarts=10)
    ours10 = time_to(errors10, stamps10, target)
    s_it10 = seconds_per_iteration(x, rank, 10)
    out["ten_restarts"] = {
        "workbench_time_to_target_s": ours10, "full_iterations_to_target": len(errors10), "s_per_iter": s_it10,
        "worst_restart_error": errors10[-1], "fraction_of_bandwidth_bound": bound / s_it10,
        "reference_time_s": {k: 10 * v for k, v in others.items()},
        "speedup_vs_fastest": 10 * others[fastest] / ours10 if ours10 else None,
    }
    print(f"ten restarts: workbench {ours10} s ({len(errors10)} it, {s_it10 * 1e3:.1f} ms/it); "
          f"speedup vs 10 x fastest ({fastest}): {out['ten_restarts']['speedup_vs_fastest']}")
    return out, x


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-sweep", action="store_true", help="skip the full rank sweep")
    parser.add_argument("--ref-iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and numpy's BLAS alike (default: all); 1 gives per-core "
                             "figures that survive a shared, loaded machine")
    parser.add_argument("--masked", action="store_true",
                        help="quick mode: masked (60%% of pairs missing per animal) vs full seconds per iteration")
    parser.add_argument("--neurons", type=int, default=60, help="--masked: neurons (141 in NeuroPAL recordings)")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    if args.masked:
        result = {"machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                              "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
                  "masked": masked_speed(args.neurons)}
        result["machine"]["load_average_at_end"] = os.getloadavg()
        path = OUT.with_name(f"ntf_masked_{args.neurons}_neurons.json")
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
        return
    bw = bandwidth_gb_s()
    print(f"copy bandwidth: {bw:.1f} GB/s, torch threads {torch.get_num_threads()}")
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "torch_threads": torch.get_num_threads(), "copy_bandwidth_gb_s": bw,
                           "torch": torch.__version__, "load_average_at_start": os.getloadavg()}}
    results["small"], _ = compare("small", (1225, 120, 8), 8, 4 * args.ref_iters, bw)
    results["paper"], paper_x = compare("paper", (5886, 240, 21), 15, args.ref_iters, bw)
    if not args.no_sweep:
        t0 = time.perf_counter()
        sweep = rank_sweep(paper_x, range(5, 21), n_restarts=10, device="cpu", progress=True)
        elapsed = time.perf_counter() - t0
        results["rank_sweep"] = {"ranks": [5, 20], "n_restarts": 10, "seconds": elapsed,
                                 "within_15_min": elapsed <= 900, "suggested_rank": sweep.attrs["suggested_rank"],
                                 "stability": sweep["stability"].values.tolist(),
                                 "error": sweep["error"].values.tolist()}
        print(f"rank sweep 5-20 x 10 restarts: {elapsed:.0f} s (suggested rank {sweep.attrs['suggested_rank']})")
    results["machine"]["load_average_at_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
