"""Mutation testing of the numeric core with mutmut, one module at a time, with its own tests only.

    bash scripts/run.sh mutants                       # every module of the numeric core, one after another
    bash scripts/run.sh mutants workbench/hooks/keys.py [--max-children 2]
    bash scripts/run.sh mutants workbench/hooks/keys.py --rerun-survivors   # after adding tests that kill some

For each module, a scratch copy of the project is made under ``build/mutants/<module>/``
(the working tree is never touched), mutmut mutates that one module
(``only_mutate``) and runs only the test files :data:`TESTS` maps it to
(mutmut then keeps, per mutant, only the tests that reach the mutated
function). The per-module scores are merged into
``benchmarks/results/mutants.json``: mutants, killed, survived, timeout,
score = (killed + timeout) / (all mutants: a timeout counts as detected, as in
other mutation tools; a mutant no selected test reaches counts as a survivor), and every survivor with a
one-line reason from :data:`EQUIVALENT` (a survivor without one is listed as
``"reason": null``: kill it with a test, or explain why no test can).

Not part of CI: a module takes minutes to an hour on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutants.json"
SCRATCH = ROOT / "build" / "mutants"

_SAE = ["tests/sae/test_sae_identities.py", "tests/sae/test_sae_edge_cases.py", "tests/sae/test_sae_bad_input.py"]
_COLLAPSE = ["tests/collapse/test_collapse_mutation_kills.py", "tests/collapse/test_collapse_metrics.py", "tests/collapse/test_collapse_accumulator.py",
             "tests/collapse/test_collapse_theory.py", "tests/collapse/test_collapse_edge_cases.py"]
_NTF = ["tests/connectome/test_connectome_ntf.py", "tests/connectome/test_connectome_edge_cases.py"]
_RANK_METRICS = ["tests/spectra/test_spectrum_metrics.py", "tests/spectra/test_mp_powerlaw_truth.py",
                 "tests/spectra/test_powerlaw_weightwatcher.py",
                 "tests/spectra/test_bad_input.py", "tests/spectra/test_edge_cases.py"]
# (test_hooks_faults.py runs the cache in subprocesses, which import the unmutated copy: left out)
_HOOKS = ["tests/core/test_hooks_cache.py", "tests/core/test_hooks_edge_cases.py"]

#: The numeric core: module -> the test files that check it (fast, independent truth).
TESTS: dict[str, list[str]] = {
    "workbench/sae/attribution.py": _SAE,
    "workbench/sae/evaluation.py": _SAE,
    "workbench/sae/model.py": _SAE,
    "workbench/sae/topk.py": _SAE,
    "workbench/sae/jumprelu.py": _SAE,
    "workbench/sae/batchtopk.py": _SAE,
    "workbench/collapse/geometry.py": _COLLAPSE,
    "workbench/collapse/accumulator.py": _COLLAPSE,
    "workbench/collapse/theory.py": _COLLAPSE,
    "workbench/connectome/ntf.py": _NTF,
    "workbench/connectome/_hals.py": _NTF,
    # (fms: the edge-case file only adds NTF fits that call the score; its NaN refusal is in the kill tests)
    "workbench/connectome/fms.py": ["tests/connectome/test_connectome_mutation_kills.py",
                                    "tests/connectome/test_connectome_fms.py"],
    "workbench/connectome/rank.py": ["tests/connectome/test_connectome_pipeline.py", *_NTF],
    "workbench/connectome/affinity.py": ["tests/connectome/test_connectome_affinity.py",
                                         "tests/connectome/test_connectome_edge_cases.py"],
    "workbench/spectra/metrics.py": _RANK_METRICS,
    "workbench/spectra/truncation.py": ["tests/spectra/test_truncation.py", "tests/spectra/test_bad_input.py",
                                        "tests/spectra/test_edge_cases.py",
                                        "tests/spectra/test_spectra_model_truncation.py"],
    "workbench/spectra/powerlaw.py": _RANK_METRICS,
    "workbench/spectra/mp.py": _RANK_METRICS,
    "workbench/hooks/cache.py": _HOOKS,
    "workbench/hooks/store.py": [*_HOOKS, "tests/core/test_hooks_scale.py"],
    "workbench/hooks/keys.py": ["tests/core/test_hooks_keys.py", *_HOOKS],
}

_M = "workbench.spectra.metrics."
_G = "workbench.collapse.geometry."
_F = "workbench.connectome.fms."
_F_WEIGHTS = ("the weights multiply float64 factors: any real dtype is promoted to float64 exactly as the "
              "explicit conversion does")
_F_VALUES = ("a factor read with np.asarray(f, dtype=float) instead of f.values: a DataArray converts to the same "
             "float64 values (an ndarray has no .values to read)")
_G_DIVIDE = ("not strictly equivalent: x / 0 with x != 0 (Cauchy-Schwarz bounds W_k.c_k by |W_k||c_k|) needs a "
             "row whose squared norm underflows (|w| < 1e-162) while W_k.c_k does not, and then std() of the "
             "infinite cosine warns anyway")
_G_ZERO_GRAM = ("the largest eigenvalue of M~ M~^T is >= its largest diagonal entry >= 0, so lam_1 <= 0 means "
                "the zero Gram, whose eigenvalues are exactly 0: keep is all False either way")
_P = "workbench.spectra.powerlaw."
_T = "workbench.spectra.truncation."
_SPECTRUM_ONLY_CHECKED = "these values only feed the inf / negative checks, which answer the same in the input dtype"
_INDEX_INTERNAL = "the bare spectrum's index dim and coordinate are internal: rank_metrics reduces over them"

#: Survivors no test can kill, by mutmut's mutant name: why the mutant behaves like the original.
#: (Names follow mutmut's numbering of the module as it is; re-check them when the module changes.)
EQUIVALENT: dict[str, str] = {
    _M + "x__as_spectrum__mutmut_34": _SPECTRUM_ONLY_CHECKED,
    _M + "x__as_spectrum__mutmut_36": _SPECTRUM_ONLY_CHECKED,
    _M + "x__as_spectrum__mutmut_81": "ndarray.astype(None) is astype(float64)",
    _M + "x__as_spectrum__mutmut_82": "an ascending spectrum gives the same metrics: "
                                      "metrics_from_singular_values sorts it again",
    _M + "x__as_spectrum__mutmut_91": "xarray infers dims=('index',) from the coords dict",
    _M + "x__as_spectrum__mutmut_95": "xarray infers dims=('index',) from the coords dict",
    _M + "x__as_spectrum__mutmut_92": _INDEX_INTERNAL,
    _M + "x__as_spectrum__mutmut_96": _INDEX_INTERNAL,
    _M + "x__as_spectrum__mutmut_112": "spectrum() converts and checks the raw input itself: x and t hold the same data",
    _M + "x_rank_metrics__mutmut_37": "numpy reads any negative size in reshape as the one inferred axis",
    _M + "x_metrics_from_singular_values__mutmut_86": "with n_tail = 0 alpha is NaN, so alpha log10(lambda_1) is "
                                                      "NaN either way",
    _P + "x__ks_distances__mutmut_4": "two extra entries of 1 after the candidates: argmin returns the first "
                                      "minimum, a real candidate with D <= 1",
    _P + "x__ks_distances__mutmut_13": "blocks start at every row and overlap: the same D recomputed (slower)",
    _P + "x__ks_distances__mutmut_15": "the extra block start lies past the last row: an empty block, skipped",
    _P + "x__ks_distances__mutmut_16": "not strictly equivalent: skips the last row only when n = 1024 k + 2, and only "
                                       "a best fit on the 2-point top tail (D = 1.5 - e^-2, tied by the 4-point tail "
                                       "of a flat bulk) would notice",
    _P + "x__ks_distances__mutmut_20": "blocks restart at row 0 and overlap: the same D recomputed (slower)",
    _P + "x__ks_distances__mutmut_28": "not strictly equivalent: the 2-point top tail is never scored; its D = "
                                       "1.5 - e^-2 = 0.365 is never below every longer tail's in any case we built",
    _P + "x__ks_distances__mutmut_32": "a block with no valid row is followed only by such blocks: valid rows are a "
                                       "prefix (flat tails are at the top)",
    _P + "x__ks_distances__mutmut_35": "ndarray.astype(None) is astype(float64)",
    _P + "x__ks_distances__mutmut_38": "no 0 * inf or inf - inf on valid rows (finite alpha and logs): nothing invalid "
                                       "to silence",
    _P + "x__ks_distances__mutmut_40": "no 0 * inf or inf - inf on valid rows (finite alpha and logs): nothing invalid "
                                       "to silence",
    _P + "x__ks_distances__mutmut_58": "NaN below xmin is skipped by nanmax as 0 is: the gap at j = i is 0 anyway",
    _P + "x__ks_distances__mutmut_59": "at j = i both CDFs are 0: masking it changes no maximum",
    _P + "x_power_law_fit__mutmut_12": "with 2 eigenvalues the small-sample rule (tail >= 8) rejects every candidate",
    _P + "x_power_law_fit__mutmut_13": "with 2 eigenvalues the small-sample rule (tail >= 8) rejects every candidate",
    _P + "x_power_law_fit__mutmut_28": "ndarray.astype(None) is astype(float64)",
    _P + "x_power_law_fit__mutmut_49": "no 0/0: the numerator n_tail (or n_tail - 1) is at least 1",
    _P + "x_power_law_fit__mutmut_51": "no 0/0: the numerator n_tail (or n_tail - 1) is at least 1",
    _P + "x_power_law_fit__mutmut_67": "alpha = 1 + n_tail / spread equals 1 only for an infinite spread, which "
                                       "finite logs never give",
    _T + "xǁActivationStatsǁupdate__mutmut_13": "device move: on a CPU-only run the tensors are already there",
    _T + "xǁActivationStatsǁupdate__mutmut_16": "device move: on a CPU-only run the tensors are already there",
    _T + "x__cholesky__mutmut_5": "not strictly equivalent: a positive definite Gram also gets the 1e-12 relative "
                                  "ridge, a change below any float64 check of the curves",
    _T + "x__cholesky__mutmut_7": "+/- float64 tiny (2e-308) added to a positive ridge changes nothing",
    _T + "x__cholesky__mutmut_12": "the Gram is square: shape[1] == shape[0]",
    _T + "x__cholesky__mutmut_18": "float32 eye * float64 ridge promotes to float64 before the sum",
    _T + "x__cholesky__mutmut_20": "float32 eye * float64 ridge promotes to float64 before the sum",
    _T + "x__cholesky__mutmut_21": "the Gram is square: shape[1] == shape[0]",
    _T + "x__as_matrix__mutmut_5": "as_matrices' default name is 'W'",
    _T + "x_loss_terms__mutmut_29": "torch.einsum accepts upper-case subscripts: the same contraction",
    _T + "x_loss_terms__mutmut_60": "torch.einsum accepts upper-case subscripts: the same contraction",
    _T + "x_loss_terms__mutmut_61": "whitened and afm terms are equal (sigma(W L)^2 = lambda(W C W^T)): swapping "
                                    "the two routes changes the curves by rounding only",
    _T + "x_loss_terms__mutmut_62": "'whitened' then takes the afm route: equal terms by the same identity",
    _T + "x_loss_terms__mutmut_63": "'whitened' then takes the afm route: equal terms by the same identity",
    _T + "x_truncation_curve__mutmut_44": "terms are s^2 v^T C v >= 0 or clamped eigenvalues: no negative sum to clip",
    _T + "x_truncation_curve__mutmut_50": "xarray infers dims=('rank',) from the coords dict",
    _T + "x_truncation_curve__mutmut_55": "xarray infers dims=('rank',) from the coords dict",
    _T + "x_low_rank_factors__mutmut_52": "full_matrices=True only adds columns of U that [:, :k] drops",
    _T + "x_low_rank_factors__mutmut_53": "full_matrices=True only adds columns of U that [:, :k] drops",
    _T + "x_low_rank_factors__mutmut_76": "float32 ones times float64 W promote to float64",
    _T + "x_low_rank_factors__mutmut_78": "float32 ones times float64 W promote to float64",
    _T + "x_low_rank_factors__mutmut_84": "full_matrices=True only adds rows/columns that the [:k] slices drop",
    _T + "x_low_rank_factors__mutmut_86": "full_matrices=True only adds rows/columns that the [:k] slices drop",
    _G + "x__nc1__mutmut_2": "the Gram is square: shape[1] == shape[0]",
    _G + "x__nc1__mutmut_15": _G_ZERO_GRAM,
    _G + "x__nc1__mutmut_22": _G_ZERO_GRAM,
    _G + "x__nc1__mutmut_24": "np.zeros_like(None, bool) is a 0-d False: keep.any() is False as for the zeros it replaces",
    _G + "x__nc1__mutmut_25": "float zeros instead of bool zeros: keep.any() is False either way",
    _G + "x__nc1__mutmut_16": "not strictly equivalent: >= vs > differs only for an eigenvalue exactly on "
                              "lam_1 K eps, a tie no float input reaches without copying the rounding",
    _G + "x__nc1__mutmut_47": "numpy.einsum accepts upper-case subscripts: the same contraction",
    _G + "x_metrics_from_moments__mutmut_57": "_nc1 only tests sigma_w_trace > 0, and scatter * N > 0 iff "
                                              "scatter / N > 0 (N >= 1)",
    _G + "x_metrics_from_moments__mutmut_113": "k >= 2 always: nc_metrics, NCAccumulator and the tiled path refuse "
                                               "fewer than two classes",
    _G + "x_metrics_from_moments__mutmut_150": "numpy.einsum accepts upper-case subscripts: the same contraction",
    _G + "x_metrics_from_moments__mutmut_172": "numpy.einsum accepts upper-case subscripts: the same contraction",
    _G + "x_metrics_from_moments__mutmut_156": _G_DIVIDE,
    _G + "x_metrics_from_moments__mutmut_158": _G_DIVIDE,
    _G + "x__nc1__mutmut_27": "float zeros instead of bool zeros: keep.any() is False either way",
    _G + "x_metrics_from_moments__mutmut_97": "k >= 2 always: nc_metrics, NCAccumulator and the tiled path refuse "
                                              "fewer than two classes",
    _F + "x__as_cp__mutmut_86": "a zero column divided by 2 instead of 1 is still zero",
    _F + "x__as_cp__mutmut_32": _F_WEIGHTS,
    _F + "x__as_cp__mutmut_34": _F_WEIGHTS,
    _F + "x_congruence__mutmut_24": "_as_cp checks every factor has the same rank: fa[1].shape[1] == fa[0].shape[1]",
    _F + "x_congruence__mutmut_26": "_as_cp checks every factor has the same rank: fb[1].shape[1] == fb[0].shape[1]",
    _F + "x_congruence__mutmut_55": "largest = 0 means both weights are 0: |0 - 0| / 2 = |0 - 0| / 1 = 0",
    _F + "x__as_cp__mutmut_19": _F_VALUES,
    _F + "x__as_cp__mutmut_21": _F_VALUES,
    _F + "x__as_cp__mutmut_25": _F_VALUES,
    _F + "x__as_cp__mutmut_26": _F_VALUES,
    "workbench.spectra.mp.x_mp_fit__mutmut_75": "not strictly equivalent: > vs >= differs only for an eigenvalue "
                                                "exactly on edge + margin, a tie no float input reaches without "
                                                "copying the implementation's rounding",
}

#: pytest options for every run: no notebooks, no cache directory, fail fast.
PYTEST_ARGS = ["-o", "addopts=", "-p", "no:cacheprovider", "-x", "-q"]


def _mutmut_config(module: str) -> str:
    # mutmut reads [tool.mutmut] from the scratch copy's pyproject.toml.
    lines = ["[tool.mutmut]", 'source_paths = ["workbench"]', f'only_mutate = ["{module}"]',
             f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS)}",
             f"pytest_add_cli_args_test_selection = {json.dumps(TESTS[module])}",
             'also_copy = ["data"]', 'process_isolation = "fork"', "use_git_change_detection = false",
             "timeout_multiplier = 5.0", "timeout_constant = 10.0"]
    return "\n".join(lines) + "\n"


def prepare(module: str) -> Path:
    """A scratch copy of the package, its tests and data, with mutmut configured for ``module``."""
    where = SCRATCH / module.removesuffix(".py").replace("/", ".")
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "workbench", where / "workbench", ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    (where / "data").symlink_to(ROOT / "data")
    text = (ROOT / "pyproject.toml").read_text()
    (where / "pyproject.toml").write_text(text.split("[tool.mutmut]")[0] + "\n" + _mutmut_config(module))
    return where


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def _mutmut(where: Path, *args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "mutmut", *args]
    out = subprocess.run(cmd, cwd=where, env=_env(), text=True, check=False,
                         stdout=subprocess.PIPE if capture else None)
    return out.stdout or ""


def _statuses(where: Path) -> dict[str, str]:
    """mutant name -> mutmut status, from ``mutmut results --all true``."""
    out = {}
    for line in _mutmut(where, "results", "--all", "true", capture=True).splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            out[name] = status
    return out


def recheck_timeouts(where: Path, module: str, statuses: dict[str, str], limit: float = 300.0) -> dict[str, str]:
    """Run each timed-out mutant again outside mutmut's forked workers.

    mutmut forks its workers from a process that has already run the tests;
    a test that drives a model can hang in such a child (thread pools do not
    survive a fork), which mutmut reports as a timeout. Here each such mutant
    is applied to the scratch copy (``mutmut apply``) and its tests run in a
    fresh pytest process: a failure is a kill, a pass a survivor, and only a
    run past ``limit`` seconds stays a timeout.
    """
    source = where / module
    original = source.read_text()
    out = dict(statuses)
    for name in sorted(n for n, st in statuses.items() if st == "timeout"):
        _mutmut(where, "apply", name, capture=True)
        cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *TESTS[module]]
        try:
            rc = subprocess.run(cmd, cwd=where, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=limit, check=False).returncode
            out[name] = "killed" if rc != 0 else "survived"
        except subprocess.TimeoutExpired:
            out[name] = "timeout"
        finally:
            source.write_text(original)
        print(f"   rechecked {name}: {out[name]}", flush=True)
    return out


def score(module: str, statuses: dict[str, str], seconds: float) -> dict:
    """The summary :data:`RESULTS` keeps for one module."""
    count = {s: sum(v == s for v in statuses.values()) for s in ("killed", "survived", "timeout", "no tests")}
    tested = len(statuses)
    detected = count["killed"] + count["timeout"]
    survivors = sorted(n for n, s in statuses.items() if s not in ("killed", "timeout"))
    return {"module": module, "tests": TESTS[module], "mutants": len(statuses), "killed": count["killed"],
            "survived": count["survived"], "timeout": count["timeout"], "no_tests": count["no tests"],
            "other": len(statuses) - sum(count.values()),
            "score": round(detected / tested, 4) if tested else None,
            "score_counting_equivalent": round((detected + sum(n in EQUIVALENT for n in survivors))
                                               / tested, 4) if tested else None,
            "survivors": [{"mutant": n, "status": statuses[n], "reason": EQUIVALENT.get(n)} for n in survivors],
            "seconds": round(seconds), "tool": "mutmut " + _version()}


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def record(entry: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"modules": []}
    data["modules"] = sorted([m for m in data["modules"] if m["module"] != entry["module"]] + [entry],
                             key=lambda m: m["module"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def rerun_survivors(module: str, max_children: int) -> tuple[Path, dict[str, str], float]:
    """Test the last run's unexplained survivors again, with the current tests (new kill tests included).

    The scratch copy's tests and mutmut configuration are refreshed; mutmut
    reruns only those mutants (its stats are recollected for the new tests) and
    their new statuses replace the old ones; every other mutant keeps its status.
    """
    where = SCRATCH / module.removesuffix(".py").replace("/", ".")
    if not (where / "statuses.json").exists():
        raise SystemExit(f"{module}: no earlier run under {where} to rerun")
    old = json.loads((where / "statuses.json").read_text())
    names = sorted(n for n, s in old.items() if s not in ("killed", "timeout") and n not in EQUIVALENT)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tests in (where / "tests", where / "mutants" / "tests"):
        if tests.exists():
            shutil.rmtree(tests)
        shutil.copytree(ROOT / "tests", tests, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    (where / "pyproject.toml").write_text(text.split("[tool.mutmut]")[0] + "\n" + _mutmut_config(module))
    start = time.monotonic()
    print(f">> mutmut again on {len(names)} survivors of {module} with {' '.join(TESTS[module])}", flush=True)
    if names:
        _mutmut(where, "run", "--max-children", str(max_children), *names)
    new = _statuses(where)
    again = recheck_timeouts(where, module, {n: new.get(n, old[n]) for n in names})
    return where, {**old, **again}, time.monotonic() - start


def run(module: str, max_children: int, rescore: bool = False, rerun: bool = False) -> dict:
    if module not in TESTS:
        raise SystemExit(f"module: expected one of the numeric core {sorted(TESTS)}, got {module!r}")
    start = time.monotonic()
    where = SCRATCH / module.removesuffix(".py").replace("/", ".")
    if rerun:
        where, statuses, extra = rerun_survivors(module, max_children)
        (where / "statuses.json").write_text(json.dumps(statuses, indent=1))
        previous = {m["module"]: m for m in json.loads(RESULTS.read_text())["modules"]} if RESULTS.exists() else {}
        entry = score(module, statuses, previous.get(module, {}).get("seconds", 0) + extra)
        record(entry)
        _report(module, entry)
        return entry
    if rescore:  # the last run's results, with the current EQUIVALENT reasons
        if not (where / "mutants").exists():
            raise SystemExit(f"{module}: no earlier run under {where} to rescore")
        previous = {m["module"]: m for m in json.loads(RESULTS.read_text())["modules"]} if RESULTS.exists() else {}
        seconds = previous.get(module, {}).get("seconds", 0)
    else:
        where = prepare(module)
        print(f">> mutmut on {module} with {' '.join(TESTS[module])}", flush=True)
        _mutmut(where, "run", "--max-children", str(max_children))
        seconds = time.monotonic() - start
    statuses = _statuses(where)
    if not rescore:
        statuses = recheck_timeouts(where, module, statuses)
        (where / "statuses.json").write_text(json.dumps(statuses, indent=1))
        seconds = time.monotonic() - start
    elif (where / "statuses.json").exists():
        statuses = {**statuses, **json.loads((where / "statuses.json").read_text())}
    entry = score(module, statuses, seconds)
    record(entry)
    _report(module, entry)
    return entry


def _report(module: str, entry: dict) -> None:
    print(f">> {module}: {entry['killed']} killed, {entry['survived']} survived, {entry['timeout']} timeout "
          f"of {entry['mutants']} (score {entry['score']})", flush=True)
    for s in entry["survivors"]:
        print(f"   survivor {s['mutant']}: {s['reason'] or 'NOT EXPLAINED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="paths like workbench/hooks/keys.py (default: all of TESTS)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    parser.add_argument("--rescore", action="store_true",
                        help="do not run: rescore the last run of each module (after editing EQUIVALENT)")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="rerun only the last run's survivors without a reason, with the current tests")
    args = parser.parse_args(argv)
    for module in args.modules or list(TESTS):
        run(module, args.max_children, args.rescore, args.rerun_survivors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
