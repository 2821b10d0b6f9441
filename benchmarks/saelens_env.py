"""The SAELens virtual environment shared by the benchmark and the interop fixtures.

SAELens pins transformer-lens < 4, so it runs in its own virtual environment,
``benchmarks/.envs/saelens``, made on first use. Torch is linked from the
calling environment rather than downloaded again: a folder with links to
torch goes on the new venv's path after its own site-packages, so SAELens'
pins win for everything else.

Usage::

    python benchmarks/saelens_env.py     # builds the environment, prints its python
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "benchmarks" / ".envs"
SAELENS_ENV = ENVS / "saelens"
SAELENS_VERSION = "6.54.12"


def ensure_saelens_env() -> Path:
    """The SAELens virtual environment's python; created and filled on first use."""
    import torch

    python = SAELENS_ENV / "bin" / "python"
    marker = SAELENS_ENV / f".sae-lens-{SAELENS_VERSION}"
    if marker.is_file():
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(SAELENS_ENV)
    site = Path(torch.__file__).resolve().parents[1]
    shared = ENVS / "shared-torch"
    shared.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if entry.name.startswith(("torch", "functorch")) and not (shared / entry.name).exists():
            (shared / entry.name).symlink_to(entry)
    target = next((SAELENS_ENV / "lib").glob("python3*/site-packages"))
    (target / "shared_torch.pth").write_text(str(shared) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"sae-lens=={SAELENS_VERSION}"], check=True)
    marker.write_text("ok\n")
    return python


if __name__ == "__main__":
    print(ensure_saelens_env())
