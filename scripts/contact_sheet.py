"""Export every figure builder's figure to PNG in one folder, to look at them all.

The builders and their inputs are those of the figure standard's test
(:mod:`workbench.figures.gallery`): what the test checks on the figure
objects, this sheet lets a person check by eye (overlaps, clipped legends,
unreadable labels). Nothing it writes is committed (``build/`` is ignored).

Usage::

    python scripts/contact_sheet.py [OUT_DIR] [--only NAME ...] [--scale 2]

OUT_DIR defaults to ``build/contact_sheet``; one ``<module>.<builder>.png``
per builder, each at the figure's own size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from workbench.figures import export
    from workbench.figures.gallery import INPUTS, build, builders

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "build" / "contact_sheet"),
                        help="folder for the PNGs (default: build/contact_sheet, created if missing)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME",
                        help="only these builders, as module.function (default: all)")
    parser.add_argument("--scale", type=float, default=2.0, help="pixel scale of the PNGs (default: 2)")
    args = parser.parse_args(argv)

    names = [name for name, _ in builders()]
    missing = sorted(set(names) - set(INPUTS))
    if missing:
        print(f"no input in workbench.figures.gallery.INPUTS for: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"--only: unknown builders {unknown}; expected some of {names}")
        names = [n for n in names if n in args.only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        path = export(build(name), out / f"{name}.png", scale=args.scale)
        print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
