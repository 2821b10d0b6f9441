"""The ``workbench`` command line: bad input ends in one line on stderr and a non-zero exit code."""

from __future__ import annotations

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
    (tmp_path / f"{KEY}.zarr").mkdir()  # a store folder without its manifest
    rc = main(["cache", "info", KEY, "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, "workbench cache info:", "has no manifest")
    assert (tmp_path / f"{KEY}.zarr").is_dir()  # reporting damage removes nothing


def test_cache_info_of_an_unknown_key_is_one_line(tmp_path, capsys):
    rc = main(["cache", "info", "b" * 64, "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, "workbench cache info: key: no cached store")


@pytest.mark.parametrize("action", ["info", "clear"])
def test_cache_malformed_key_is_one_line(tmp_path, capsys, action):
    rc = main(["cache", action, "nothex", "--cache", str(tmp_path)])
    _one_line_error(capsys, rc, f"workbench cache {action}: key: expected a 64-character hex cache key")


def test_cache_list_reports_a_damaged_store(tmp_path, capsys):
    (tmp_path / f"{KEY}.zarr").mkdir()
    assert main(["cache", "list", "--cache", str(tmp_path)]) == 0
    assert '"status": "damaged: ' in capsys.readouterr().out


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
