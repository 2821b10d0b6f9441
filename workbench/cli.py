"""The ``workbench`` command line: a thin shell over the library.

Examples
--------
>>> build_parser().parse_args(["demo", "--out", "figs"]).out
'figs'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _port(text: str) -> int:
    """A TCP port number, for argparse: an int in [1, 65535]."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [1, 65535], got {text!r}")
    return port


def _message(err: Exception) -> str:
    """An error's text; a KeyError's own str() would add quotes."""
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Decomposition workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="cache a bundled model's hooks and export a figure")
    demo.add_argument("--model", default="tiny-attn-2l")
    demo.add_argument("--out", default="workbench-demo")
    demo.add_argument("--cache", default=None, help="cache folder (default: $WORKBENCH_CACHE or the user cache)")
    demo.add_argument("--n-seq", type=int, default=64)
    demo.add_argument("--seq-len", type=int, default=128)
    sub.add_parser("models", help="list bundled models")
    cache = sub.add_parser("cache", help="list, describe or clear cached activations")
    cache.add_argument("action", choices=("list", "info", "clear"))
    cache.add_argument("key", nargs="?")
    cache.add_argument("--cache", default=None)
    serve = sub.add_parser("serve", help="serve the dashboard (Panel) on this machine")
    serve.add_argument("--port", type=_port, default=5006)
    serve.add_argument("--address", default="127.0.0.1", help="interface to bind (default: localhost only)")
    serve.add_argument("--cache", default=None, help="cache folder (default: $WORKBENCH_CACHE or the user cache)")
    serve.add_argument("--data-dir", action="append", dest="data_dirs", default=None, metavar="DIR",
                       help="a folder whose recordings the pages may read (repeatable; default: the bundled "
                            "data and the current folder); nothing outside them is read")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow an --address other machines can reach; every page then asks for a login "
                            "(password: $WORKBENCH_PASSWORD, or a token printed once)")
    serve.add_argument("--login", action="store_true",
                       help="ask for a login on loopback too (a machine other people log in to)")
    serve.add_argument("--host", action="append", dest="hosts", default=[], metavar="NAME",
                       help="a host name visitors use to reach the server (repeatable); requests naming "
                            "any other host are refused")
    figures = sub.add_parser("figures", help="re-export paper figures from results the dashboard saved")
    figures.add_argument("results_dir", help="cache folder the dashboard used (--cache of 'workbench serve')")
    figures.add_argument("out_dir")
    figures.add_argument("--formats", nargs="+", default=["pdf"], choices=("pdf", "svg", "png"))
    return parser


def run_serve(args: argparse.Namespace) -> int:
    # widgets imports panel/bokeh: only this command pays for it
    from widgets.app import serve

    try:
        serve(port=args.port, address=args.address, cache_dir=args.cache, data_dirs=args.data_dirs,
              allow_remote=args.allow_remote, hosts=tuple(args.hosts),
              login=True if args.login else None)
    except ValueError as err:
        print(f"workbench serve: {err}", file=sys.stderr)
        return 2
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from widgets.app import export_results

    try:
        written = export_results(args.results_dir, args.out_dir, tuple(args.formats))
    except (ValueError, OSError) as err:
        print(f"workbench figures: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    import xarray as xr

    from workbench.figures import export
    from workbench.figures.models import head_norms, induction_heatmap
    from workbench.hooks import HookCache, default_hooks
    from workbench.models import corpus_tokens, induction_scores, load_model

    model = load_model(args.model)
    tokens = corpus_tokens(model, args.n_seq, args.seq_len)
    cache = HookCache(args.cache)
    hooks = default_hooks(model)
    ds = cache.activations(model, tokens, hooks)
    print(f"cached {len(hooks)} hooks of {args.model} over {tokens.numel()} tokens in {cache.root}")
    z = xr.concat([ds[h] for h in hooks if h.endswith("hook_z")], dim="layer")
    z = z.assign_coords(layer=range(model.cfg.n_layers))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    induction = induction_heatmap(induction_scores(model))
    written = [export(induction, out / "induction_scores.pdf"),
               export(induction, out / "induction_scores.png"),
               export(head_norms(z), out / "head_norms.svg")]
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "figures":
        return run_figures(args)
    if args.command == "models":
        from workbench.models import list_models

        print("\n".join(list_models()))
        return 0
    return run_cache(args)


def run_cache(args: argparse.Namespace) -> int:
    from workbench.hooks import HookCache
    from workbench.hooks.store import StoreDamagedError

    if args.action == "info" and not args.key:
        print("workbench cache info: give a KEY (see 'workbench cache list')", file=sys.stderr)
        return 2
    try:
        cache = HookCache(args.cache)
        if args.action == "list":
            for entry in cache.list():
                print(json.dumps(entry))
        elif args.action == "info":
            print(json.dumps(cache.info(args.key), indent=1, default=str))
        else:
            print(f"removed {cache.clear(args.key)} stores")
    except (KeyError, ValueError, StoreDamagedError, OSError) as err:
        print(f"workbench cache {args.action}: {_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
