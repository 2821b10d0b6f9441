#!/usr/bin/env bash
# Set up everything the workbench needs, then run one job.
#
#   bash scripts/run.sh demo    # set up, cache a bundled model's hooks, export a figure
#   bash scripts/run.sh test    # set up, run the whole test suite
#   bash scripts/run.sh setup   # set up only
#   bash scripts/run.sh mutants [MODULE...]   # mutation testing of the numeric core (not in CI; slow):
#                                             # MODULE like workbench/hooks/keys.py, default all of them;
#                                             # scores go to benchmarks/results/mutants.json
#   bash scripts/run.sh bench [NAME] [ARGS...]  # benchmarks against the reference libraries (not in CI; slow):
#                                             # NAME one of collapse ntf spectra cache sae dashboard, default all
#                                             # but dashboard (collapse at 1 and 2 threads); ARGS go to each
#                                             # script (e.g. --quick). Installs the bench extra and builds the
#                                             # reference venvs (SAELens, tensortools) in benchmarks/.envs/, then
#                                             # regenerates README.md's table from benchmarks/results/*.json
#
# Works on a fresh Debian/Ubuntu machine with Python 3.11+: creates .venv when
# missing, installs a CPU build of torch when no CUDA GPU is present (never a
# multi-GB CUDA build when a CPU one is at hand), installs the system Chromium
# that static figure export and the browser tests drive, then the package.
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-demo}"
shift || true
VENV="${WORKBENCH_VENV:-.venv}"

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (none found on PATH)" >&2
  return 1
}

install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo ">> installing the system Chromium (figure export and browser tests use it)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
    || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium-browser >/dev/null
}

install_torch() {
  local pip="$VENV/bin/python -m pip"
  if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    return 0
  fi
  echo ">> installing torch"
  # 1. a wheel already on this machine (pip's configured find-links), no download
  if $pip install -q --no-index "torch>=2.4" 2>/dev/null; then return 0; fi
  # 2. no NVIDIA GPU: the CPU build, a few hundred MB instead of several GB
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    if $pip install -q --timeout 30 --retries 1 "torch>=2.4" \
         --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then return 0; fi
  fi
  # 3. the default build from the package index
  $pip install -q "torch>=2.4"
}

setup() {
  local py
  py="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV with $py"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  install_torch
  install_chromium
  if [ ! -f "$VENV/.workbench-installed" ] || [ pyproject.toml -nt "$VENV/.workbench-installed" ]; then
    echo ">> installing the workbench and its dependencies"
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    touch "$VENV/.workbench-installed"
  fi
}

bench() {
  local names=(collapse collapse_t2 ntf spectra cache sae) status=0 name
  case "${1:-}" in
    ""|-*) ;;
    all) shift ;;
    *) names=("$1"); shift ;;
  esac
  if [ ! -f "$VENV/.workbench-bench-installed" ] || [ pyproject.toml -nt "$VENV/.workbench-bench-installed" ]; then
    echo ">> installing the bench extra"
    python -m pip install -q -e ".[dev,bench]"
    touch "$VENV/.workbench-bench-installed"
  fi
  python benchmarks/reference_envs.py
  for name in "${names[@]}"; do
    echo ">> benchmark $name"
    if [ "$name" = collapse_t2 ]; then
      python benchmarks/bench_collapse.py --threads 2 "$@" || status=1
    elif [ -f "benchmarks/bench_$name.py" ]; then
      python "benchmarks/bench_$name.py" "$@" || status=1
    else
      echo "error: no benchmark named $name (benchmarks/bench_$name.py)" >&2; return 2
    fi
  done
  python scripts/bench_table.py
  return "$status"
}

setup
export PATH="$PWD/$VENV/bin:$PATH"
case "$job" in
  setup) ;;
  demo) workbench demo "$@" ;;
  test) python -m pytest "$@" ;;
  mutants) python scripts/mutants.py "$@" ;;
  bench) bench "$@" ;;
  *) echo "usage: bash scripts/run.sh [demo|test|setup|mutants|bench] [args...]" >&2; exit 2 ;;
esac
