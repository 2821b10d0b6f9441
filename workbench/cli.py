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


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
        return f"{text} (default: {shown})"


_CACHE_HELP = "workbench folder: hook stores in its 'hooks' folder, dashboard results beside them " \
              "(default: $WORKBENCH_CACHE, else the user cache folder)"


def build_parser() -> argparse.ArgumentParser:
    """The ``workbench`` argument parser; every option has help text that shows its default.

    Examples
    --------
    >>> build_parser().parse_args(["cache", "list"]).json
    False
    """
    parser = argparse.ArgumentParser(prog="workbench", description="Decomposition workbench",
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    demo = command("demo", "cache a bundled model's hooks and export a figure")
    demo.add_argument("--model", default="tiny-attn-2l", help="bundled model to run (see 'workbench models')")
    demo.add_argument("--out", default="workbench-demo", help="folder the figures are written to")
    demo.add_argument("--cache", default=None, help=_CACHE_HELP)
    demo.add_argument("--n-seq", type=int, default=64, help="number of corpus windows to cache")
    demo.add_argument("--seq-len", type=int, default=128, help="tokens per window")
    command("models", "list bundled models")
    cache = command("cache", "list, describe or clear cached hook activations")
    cache.add_argument("action", choices=("list", "info", "clear"),
                       help="list: a table of the stores; info: one store's provenance; clear: remove stores")
    cache.add_argument("key", nargs="?",
                       help="a store's key or any unique prefix of it, as 'cache list' shows (default: none; "
                            "'clear' without a key removes every store after asking)")
    cache.add_argument("--cache", default=None, help=_CACHE_HELP)
    cache.add_argument("--json", action="store_true", help="print JSON lines instead of a table (for scripts)")
    cache.add_argument("--yes", "-y", action="store_true", help="clear without asking for confirmation")
    serve = command("serve", "serve the dashboard (Panel) on this machine")
    serve.add_argument("--port", type=_port, default=5006, help="TCP port to listen on")
    serve.add_argument("--address", default="127.0.0.1", help="interface to bind (default: %(default)s, this machine only)")
    serve.add_argument("--cache", default=None, help=_CACHE_HELP)
    serve.add_argument("--data-dir", action="append", dest="data_dirs", default=None, metavar="DIR",
                       help="a folder whose recordings the pages may read (repeatable; default: the bundled "
                            "data and the current folder); nothing outside them is read")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow an --address other machines can reach; every page then asks for a login "
                            "(password: $WORKBENCH_PASSWORD, or a token printed once)")
    serve.add_argument("--login", action="store_true",
                       help="ask for a login on loopback too (a machine other people log in to)")
    serve.add_argument("--host", action="append", dest="hosts", default=[], metavar="NAME",
                       help="a host name visitors use to reach the server (repeatable; default: "
                            "localhost and the --address itself); requests naming any other host are refused")
    figures = command("figures", "re-export paper figures from results the dashboard saved")
    figures.add_argument("results_dir", help="workbench folder the dashboard used (--cache of 'workbench serve')")
    figures.add_argument("out_dir", help="folder the figure files are written to")
    figures.add_argument("--formats", nargs="+", default=["pdf"], choices=("pdf", "svg", "png"),
                         help="file formats to write")
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
    from workbench.hooks import HookCache, default_hooks, hooks_root
    from workbench.models import corpus_tokens, induction_scores, load_model

    model = load_model(args.model)
    tokens = corpus_tokens(model, args.n_seq, args.seq_len)
    cache = HookCache(hooks_root(args.cache))
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


def _size(nbytes: int) -> str:
    """Bytes in words: ``1.5 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def cache_table(entries: list[dict]) -> str:
    """``cache list`` as a table: a short key (any unique prefix works), model, hook, shape, size, status.

    Examples
    --------
    >>> print(cache_table([{"key": "ab" * 32, "model_id": "tiny-attn-2l", "hook": "blocks.0.attn.hook_z",
    ...                     "n_seq": 4, "seq_len": 8, "dtype": "float32", "nbytes": 2048, "status": "ok"}]))
    KEY           MODEL         HOOK                  TOKENS  DTYPE    SIZE    STATUS
    abababababab  tiny-attn-2l  blocks.0.attn.hook_z  4 x 8   float32  2.0 kB  ok
    """
    rows = [("KEY", "MODEL", "HOOK", "TOKENS", "DTYPE", "SIZE", "STATUS")]
    for e in entries:
        tokens = f"{e['n_seq']} x {e['seq_len']}" if e.get("n_seq") is not None else "?"
        rows.append((e["key"][:12], str(e.get("model_id") or "?"), str(e.get("hook") or "?"), tokens,
                     str(e.get("dtype") or "?"), _size(e["nbytes"]), e["status"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _confirm(question: str) -> bool:
    """Ask on the terminal; anything but y/yes (or no terminal at all) is a no."""
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run_cache(args: argparse.Namespace) -> int:
    from workbench.hooks import HookCache, hooks_root
    from workbench.hooks.store import StoreDamagedError

    if args.action == "info" and not args.key:
        print("workbench cache info: give a KEY or a prefix of one (see 'workbench cache list')", file=sys.stderr)
        return 2
    try:
        cache = HookCache(hooks_root(args.cache))
        if args.action == "list":
            entries = cache.list()
            if args.json:
                for entry in entries:
                    print(json.dumps(entry))
            elif entries:
                print(cache_table(entries))
                print(f"\n{len(entries)} stores in {cache.root}; 'workbench cache info KEY' takes any unique "
                      "prefix of a key, --json prints the full keys")
            else:
                print(f"no cached stores in {cache.root}")
        elif args.action == "info":
            print(json.dumps(cache.info(args.key), indent=1, default=str))
        elif args.key is not None:
            print(f"removed {cache.clear(args.key)} stores")
        else:
            count = len(cache.list())
            if not args.yes and not _confirm(f"remove all {count} stores in {cache.root}?"):
                print("workbench cache clear: nothing removed (pass --yes to clear without asking)", file=sys.stderr)
                return 1
            print(f"removed {cache.clear()} stores")
    except (KeyError, ValueError, StoreDamagedError, OSError) as err:
        print(f"workbench cache {args.action}: {_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
