"""Who may reach the dashboard and what it may read: data folders, loopback, login, Host header."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from widgets.access import DataFolders, OutsideDataFolders, _host_name, allowed_hosts, is_loopback
from workbench.cli import main

PASSWORD = "correct-horse-battery-9"


@pytest.fixture()
def folders(tmp_path):
    data = tmp_path / "data"
    (data / "worm").mkdir(parents=True)
    (data / "worm" / "rec.npz").write_bytes(b"")
    (tmp_path / "secret.json").write_text('{"password": "x"}')
    return DataFolders([data]), tmp_path


def test_paths_inside_the_data_folders_resolve(folders):
    data_folders, tmp = folders
    assert data_folders.resolve("worm/rec.npz") == tmp / "data" / "worm" / "rec.npz"
    assert data_folders.resolve(str(tmp / "data" / "worm" / "./rec.npz")) == tmp / "data" / "worm" / "rec.npz"
    assert data_folders.files([".npz"]) == [str(tmp / "data" / "worm" / "rec.npz")]
    assert data_folders.files([".nc"], folder_markers=["rec.npz"]) == [str(tmp / "data" / "worm")]


@pytest.mark.parametrize("escape", ["../secret.json", "worm/../../secret.json", "{tmp}/secret.json",
                                    "{tmp}/no-such-file", "/etc/passwd", "link"])
def test_paths_outside_are_refused_alike_whether_or_not_they_exist(folders, escape):
    data_folders, tmp = folders
    (tmp / "data" / "link").symlink_to(tmp / "secret.json")  # a link inside that points outside
    with pytest.raises(OutsideDataFolders) as err:
        data_folders.resolve(escape.format(tmp=tmp))
    assert str(err.value) == f"path: outside the data folders ({tmp / 'data'})"


def test_bad_data_folders_and_paths_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dirs: expected existing folders"):
        DataFolders([tmp_path / "absent"])
    with pytest.raises(ValueError, match="data_dirs: expected at least one folder"):
        DataFolders([])
    with pytest.raises(ValueError, match="path: expected a file or folder name"):
        DataFolders([tmp_path]).resolve("  ")


def test_the_default_data_folders_never_include_the_home_or_root_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(Path.home())
    assert Path.home().resolve() not in DataFolders().roots
    monkeypatch.chdir("/")
    assert Path("/") not in DataFolders().roots
    monkeypatch.chdir(tmp_path)
    assert tmp_path.resolve() in DataFolders().roots


def test_loopback_and_host_names():
    assert [is_loopback(a) for a in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "0.0.0.0", "::", "10.1.2.3")] \
        == [True, True, True, True, False, False, False]
    assert [_host_name(h) for h in ("[::1]:5006", "Name:5006", "127.0.0.1", "::1")] \
        == ["::1", "name", "127.0.0.1", "::1"]
    assert allowed_hosts("0.0.0.0", ["lab.example"]) == {"localhost", "127.0.0.1", "::1", "lab.example"}


@pytest.mark.parametrize("argv", [["--address", "0.0.0.0"], ["--address", "::"]])
def test_a_remote_address_without_allow_remote_is_refused_before_serving(argv, capsys):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("workbench serve: address:") and "--allow-remote" in err


def test_serve_refuses_a_missing_data_folder(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path / "absent")]) == 2
    assert "data_dirs: expected existing folders" in capsys.readouterr().err


def _request(url: str, *, host: str | None = None, data: dict | None = None, cookie: str = ""):
    """(status, headers, body) without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None)
    if host:
        request.add_header("Host", host)
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


@pytest.fixture(scope="module")
def login_server(tmp_path_factory):
    from tests.widgets.test_widgets_browser import served

    with served(tmp_path_factory.mktemp("login"), "--login", env={"WORKBENCH_PASSWORD": PASSWORD},
                ready="/login") as (url, _):
        yield url, int(url.rsplit(":", 1)[1])


def test_other_host_headers_get_403(login_server):
    """A DNS-rebinding page reaches 127.0.0.1 under a name of its own: it must get nothing."""
    url, port = login_server
    for path in ("/overview", "/login", "/static/js/bokeh.min.js"):
        assert _request(url + path, host=f"evil.example:{port}")[0] == 403
    assert _request(url + "/login", host=f"localhost:{port}")[0] == 200


def test_every_page_needs_the_password(login_server):
    url, _ = login_server
    for path in ("/overview", "/"):  # the landing page too
        status, headers, _ = _request(url + path)
        assert status == 302 and "login" in headers["Location"], path
    status, headers, _ = _request(url + "/login", data={"username": "me", "password": "wrong-password"})
    assert status == 302 and "error=" in headers["Location"] and "Set-Cookie" not in headers
    status, headers, _ = _request(url + "/login", data={"username": "me", "password": PASSWORD})
    assert status == 302
    cookie = "; ".join(c.split(";", 1)[0] for c in headers.get_all("Set-Cookie"))
    assert _request(url + "/overview", cookie=cookie)[0] == 200
    status, _, body = _request(url + "/", cookie=cookie)
    assert status == 200 and 'href="./spectra"' in body and "http" not in body


def test_the_login_page_loads_nothing_from_the_internet(login_server):
    _, _, body = _request(login_server[0] + "/login")
    assert 'name="password"' in body and "http://" not in body and "https://" not in body and "//" not in \
        body.replace("<!--", "").split("<body>", 1)[0].replace("http-equiv", "")


@pytest.mark.browser
def test_a_visitor_logs_in_through_the_form_and_sees_the_overview(login_server):
    from tests.widgets.test_widgets_browser import ARTIFACTS, CHROMIUM, FIGURE

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no system Chromium at {CHROMIUM}")
    url, _ = login_server
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        outside = []
        local = (url, f"blob:{url}", "data:")
        page.on("request", lambda req: None if req.url.startswith(local) else outside.append(req.url))
        page.goto(f"{url}/overview")
        page.wait_for_selector("input[name=password]")
        page.screenshot(path=str(ARTIFACTS / "dashboard-login.png"))
        page.fill("input[name=username]", "me")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(FIGURE, timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-after-login.png"))
        browser.close()
    assert outside == []
