"""The ``workbench`` command line: bad input ends in one line on stderr and a non-zero exit code;
``--cache`` names the workbench folder whose ``hooks`` folder holds the stores."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from workbench.cli import build_parser, main

KEY = "a" * 64


def _one_line_error(capsys, rc: int, *needles: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_cache_info_of_a_damaged_store_is_one_line(tmp_path, capsys):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / f"{KEY}.zarr").mkdir()  # a store folder without its manifest
    rc = main(["cache", "info", KEY, "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, "workbench cache info:", "has no manifest")
    assert (tmp_path / "hooks" / f"{KEY}.zarr").is_dir()  # reporting damage removes nothing


def test_cache_info_of_an_unknown_key_is_one_line(tmp_path, capsys):
    rc = main(["cache", "info", "b" * 64, "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, "workbench cache info: key: no cached store")


@pytest.mark.parametrize("action", ["info", "clear"])
def test_cache_malformed_key_is_one_line(tmp_path, capsys, action):
    rc = main(["cache", action, "nothex", "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, f"workbench cache {action}: key: expected a 64-character hex cache key or a prefix")


def test_cache_list_reports_a_damaged_store(tmp_path, capsys):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / f"{KEY}.zarr").mkdir()
    assert main(["cache", "list", "--json", "--cache", str(tmp_path)]) == 0
    assert '"status": "damaged: ' in capsys.readouterr().out
    assert main(["cache", "list", "--cache", str(tmp_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.startswith(KEY[:12] + "  ") and "damaged: " in row


def test_figures_into_a_path_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("keep me")
    rc = main(["figures", str(tmp_path), str(tmp_path / "taken")])
    _one_line_error(capsys, rc, "workbench figures:")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_figures_missing_results_dir(tmp_path, capsys):
    rc = main(["figures", str(tmp_path / "absent"), str(tmp_path / "out")])
    _one_line_error(capsys, rc, "results_dir: expected an existing cache folder")


@pytest.mark.parametrize("port", ["abc", "-1", "0", "65536", "70000"])
def test_serve_rejects_a_bad_port_before_starting(port, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--port", port])
    assert exit_.value.code == 2
    assert "argument --port" in capsys.readouterr().err


def test_serve_accepts_the_port_range_edges():
    assert [build_parser().parse_args(["serve", "--port", p]).port for p in ("1", "65535")] == [1, 65535]


@pytest.mark.parametrize("argv", [["frob"], [], ["cache", "frob"]])
def test_unknown_commands_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "usage: workbench" in capsys.readouterr().err


def _stores(root, *keys):
    folder = root / "hooks"
    folder.mkdir(exist_ok=True)
    for key in keys:
        (folder / f"{key}.zarr").mkdir()


def test_cache_clear_takes_a_unique_prefix(tmp_path, capsys):
    keep, doomed = "ab" + "0" * 62, "cd" + "0" * 62
    _stores(tmp_path, keep, doomed)
    assert main(["cache", "clear", "cd", "--cache", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "removed 1 stores"
    assert sorted(p.name for p in (tmp_path / "hooks").iterdir()) == [f"{keep}.zarr"]


def test_cache_ambiguous_prefix_names_the_matches_and_removes_nothing(tmp_path, capsys):
    first, second = "ab" + "0" * 62, "ac" + "0" * 62
    _stores(tmp_path, first, second)
    rc = main(["cache", "clear", "a", "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, "prefix 'a' matches 2 stores", first[:12], second[:12])
    assert len(list((tmp_path / "hooks").iterdir())) == 2


def test_cache_clear_everything_asks_first(tmp_path, capsys, monkeypatch):
    _stores(tmp_path, KEY)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["cache", "clear", "--cache", str(tmp_path)]) == 1  # answered no
    assert "nothing removed" in capsys.readouterr().err and (tmp_path / "hooks" / f"{KEY}.zarr").is_dir()
    assert main(["cache", "clear", "--cache", str(tmp_path)]) == 0  # answered yes
    assert not (tmp_path / "hooks" / f"{KEY}.zarr").exists()
    _stores(tmp_path, KEY)
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("--yes must not ask"))
    assert main(["cache", "clear", "--yes", "--cache", str(tmp_path)]) == 0
    assert not (tmp_path / "hooks" / f"{KEY}.zarr").exists()


def _options(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from ((f"{name} {label}", a, child) for label, a, _ in _options(child))
        elif not isinstance(action, argparse._HelpAction):
            yield "/".join(action.option_strings) or action.dest, action, parser


def test_every_option_has_help_that_shows_its_default():
    seen = 0
    for label, action, parser in _options(build_parser()):
        assert action.help, f"{label}: no help text"
        shown = parser.formatter_class(parser.prog)._get_help_string(action) % {**vars(action), "prog": parser.prog}
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            value = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
            assert f"default: {value}" in shown, f"{label}: help {shown!r} does not show its default"
        elif action.option_strings and action.default in (None, []):
            assert "default" in shown, f"{label}: help {shown!r} does not say what happens by default"
        seen += 1
    assert seen >= 20


def test_models_imports_neither_torch_nor_transformer_lens():
    code = ("import sys, time; t = time.perf_counter(); from workbench.cli import main; main(['models']); "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["tiny-attn-2l", "tiny-gelu-2l", "[]"]
