"""Virtual environments of the reference libraries the benchmarks compare against.

Each reference runs where its own pins hold, in ``benchmarks/.envs/<name>``,
made on first use and reused while its marker file (the pinned requirement)
is there:

* ``saelens``: SAELens pins transformer-lens < 4. Torch is linked from the
  calling environment rather than downloaded again: a folder with links to
  torch goes on the new venv's path after its own site-packages, so SAELens'
  pins win for everything else.
* ``tensortools``: tensortools (Williams & Erichson) is not in the workbench's
  dependencies; it needs numba, which pins numpy, so it gets its own numpy.

Usage::

    python benchmarks/reference_envs.py [NAME ...]   # builds them (default all), prints each python
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "benchmarks" / ".envs"
SAELENS_VERSION = "6.54.12"
#: name -> (pip requirements, link the calling environment's torch, marker file of a finished install)
REFERENCES = {
    "saelens": ([f"sae-lens=={SAELENS_VERSION}"], True, f".sae-lens-{SAELENS_VERSION}"),
    "tensortools": (["tensortools==0.4", "numba>=0.60", "threadpoolctl>=3.0"], False, ".tensortools-0.4"),
}


def _link_torch(env: Path) -> None:
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    shared = ENVS / "shared-torch"
    shared.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if entry.name.startswith(("torch", "functorch")) and not (shared / entry.name).exists():
            (shared / entry.name).symlink_to(entry)
    target = next((env / "lib").glob("python3*/site-packages"))
    (target / "shared_torch.pth").write_text(str(shared) + "\n")


def ensure_env(name: str) -> Path:
    """The python of reference environment ``name`` (a key of :data:`REFERENCES`); built on first use."""
    if name not in REFERENCES:
        raise ValueError(f"name: expected one of {sorted(REFERENCES)}, got {name!r}")
    requirements, link_torch, marker_name = REFERENCES[name]
    env = ENVS / name
    python = env / "bin" / "python"
    marker = env / marker_name
    if marker.is_file():
        return python
    ENVS.mkdir(parents=True, exist_ok=True)
    with open(ENVS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits for the first build instead of clearing it
        if not marker.is_file():
            venv.EnvBuilder(with_pip=True, clear=True).create(env)
            if link_torch:
                _link_torch(env)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
            marker.write_text("ok\n")
    return python


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(REFERENCES):
        print(name, ensure_env(name))
