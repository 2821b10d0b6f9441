"""Who may reach the served dashboard, and which files its pages may read.

The dashboard is a multi-user server: a visitor types paths into it and starts
jobs on the machine that serves it. So

- pages read files only inside the data folders (:class:`DataFolders`), and a
  refusal never tells whether a path outside them exists;
- a server bound to anything but loopback needs ``allow_remote`` and then asks
  for a login (:func:`login_options`);
- every request must name an allowed host in its ``Host`` header
  (:func:`refuse_other_hosts`), so a DNS-rebinding page cannot reach a
  loopback server through a name of its own.

Examples
--------
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
>>> sorted(allowed_hosts("127.0.0.1"))
['127.0.0.1', '::1', 'localhost']
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Iterable

from workbench.data.corpus import DATA_DIR

LOGIN_TEMPLATE = Path(__file__).with_name("login.html")
PASSWORD_VARIABLE = "WORKBENCH_PASSWORD"


class OutsideDataFolders(ValueError):
    """A path that resolves outside the data folders (whether or not it exists is not said)."""


def is_loopback(address: str) -> bool:
    """True when ``address`` (an IP or a host name) reaches this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def allowed_hosts(address: str, extra: Iterable[str] = ()) -> set[str]:
    """Host names a request may carry: loopback names, the bound address, and ``extra``."""
    hosts = {"localhost", "127.0.0.1", "::1", *extra}
    if address not in ("0.0.0.0", "::", ""):
        hosts.add(address)
    return hosts


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header: ``[::1]:5006`` -> ``::1``, ``name:5006`` -> ``name``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def refuse_other_hosts(server, hosts: set[str]) -> None:
    """Answer 403 to any request on ``server`` (a Bokeh server) whose ``Host`` is not in ``hosts``."""
    from tornado.web import ErrorHandler

    app = server._tornado  # the tornado Application behind every Bokeh and Panel route
    allowed = {h.lower() for h in hosts}
    find_handler = app.find_handler

    def checked(request, **kwargs):
        if _host_name(request.host or "") not in allowed:
            return app.get_handler_delegate(request, ErrorHandler, {"status_code": 403})
        return find_handler(request, **kwargs)

    app.find_handler = checked


def login_options(password: str | None = None) -> tuple[dict, str | None]:
    """Options for :func:`panel.serve` that put every page behind a login, and a generated password.

    The password is ``password``, else ``$WORKBENCH_PASSWORD``, else a random
    token returned (once) so that the caller can print it. The login page is
    ours, with no resource from the internet.
    """
    password = password or os.environ.get(PASSWORD_VARIABLE) or None
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(18)
    if len(password) < 8:
        raise ValueError(f"{PASSWORD_VARIABLE}: expected a password of at least 8 characters")
    return ({"basic_auth": password, "cookie_secret": secrets.token_hex(32),
             "basic_login_template": str(LOGIN_TEMPLATE)}, generated)


class DataFolders:
    """The folders whose files the dashboard's pages may read.

    Parameters
    ----------
    roots : paths, optional
        Default: the bundled ``data/`` folder and the current working folder
        (unless that is the file system's root or the home folder, which hold
        far more than recordings).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "rec.npz").write_bytes(b"")
    0
    >>> folders = DataFolders([root])
    >>> folders.resolve(str(root / "rec.npz")).name, folders.resolve("rec.npz").name
    ('rec.npz', 'rec.npz')
    >>> folders.resolve("../../etc/passwd")
    Traceback (most recent call last):
    ...
    widgets.access.OutsideDataFolders: path: outside the data folders (...)
    """

    def __init__(self, roots: Iterable[str | os.PathLike] | None = None):
        if roots is None:
            here = Path.cwd().resolve()
            roots = [DATA_DIR] + ([here] if here not in (Path(here.anchor), Path.home().resolve()) else [])
        roots = list(roots)
        if not roots:
            raise ValueError("data_dirs: expected at least one folder")
        self.roots = [Path(root).expanduser().resolve() for root in roots]
        self._listed: dict[tuple, tuple[float, list[str]]] = {}
        for root in self.roots:
            if not root.is_dir():
                raise ValueError(f"data_dirs: expected existing folders, {str(root)!r} is not one")

    def __repr__(self) -> str:
        return f"DataFolders({[str(r) for r in self.roots]})"

    def _inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, text: str) -> Path:
        """The real path of ``text`` (absolute, or relative to the first data folder) inside a data folder.

        Links and ``..`` are resolved first; a path outside gets the same
        error whether or not it exists.
        """
        text = str(text).strip()
        if not text or "\x00" in text:
            raise ValueError("path: expected a file or folder name inside the data folders")
        candidate = Path(text).expanduser()
        candidate = candidate if candidate.is_absolute() else self.roots[0] / candidate
        resolved = candidate.resolve()
        if not self._inside(resolved):
            raise OutsideDataFolders(f"path: outside the data folders ({', '.join(str(r) for r in self.roots)})")
        return resolved

    def files(self, suffixes: Iterable[str], *, folder_markers: Iterable[str] = (), limit: int = 500,
              depth: int = 4) -> list[str]:
        """Up to ``limit`` recordings under the data folders, at most ``depth`` levels down (for a file picker).

        A recording is a file or folder (``.zarr``) ending in one of
        ``suffixes``, or a folder holding a file named in ``folder_markers``
        (Suite2p's ``F.npy``, say). The list is kept for a minute, since every
        visitor's page asks for it.
        """
        suffixes, folder_markers = tuple(s.lower() for s in suffixes), set(folder_markers)
        cache_key = (suffixes, tuple(sorted(folder_markers)), limit, depth)
        cached = self._listed.get(cache_key)
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        found: list[str] = []
        outermost = [r for r in self.roots if not any(r != o and r.is_relative_to(o) for o in self.roots)]
        for root in dict.fromkeys(outermost):
            for folder, dirs, names in os.walk(root):
                level = len(Path(folder).relative_to(root).parts)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules"))
                if folder_markers & set(names):
                    found.append(folder)
                    dirs[:] = []
                    continue
                found += [str(Path(folder) / n) for n in sorted(names) + dirs if n.lower().endswith(suffixes)]
                dirs[:] = [d for d in dirs if not d.lower().endswith(suffixes)] if level < depth else []
                if len(found) >= limit:
                    break
        self._listed[cache_key] = (time.monotonic(), found[:limit])
        return found[:limit]
