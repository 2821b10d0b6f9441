"""Where the hook cache lives: one workbench folder shared by the CLI, the dashboard and ``HookCache()``."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def workbench_root() -> Path:
    """The one folder the CLI, the dashboard and :class:`HookCache` share.

    ``$WORKBENCH_CACHE`` if set, else the user cache dir (``~/.cache/workbench``).
    Hook stores live in its ``hooks`` folder (:func:`hooks_root`); the dashboard
    keeps its results and exports beside them.

    Examples
    --------
    >>> import os
    >>> workbench_root() == Path(os.environ["WORKBENCH_CACHE"])   # the docstring tests set it
    True
    """
    env = os.environ.get("WORKBENCH_CACHE")
    return Path(env).expanduser() if env else Path(user_cache_dir("workbench"))


def hooks_root(root: str | os.PathLike | None = None) -> Path:
    """The hook stores' folder under a workbench ``root`` (default :func:`workbench_root`): ``<root>/hooks``.

    Every caller that takes a workbench folder (``--cache`` of the CLI, a
    page's ``cache_dir``) finds the hook stores here, so all of them see the
    same stores.

    Examples
    --------
    >>> hooks_root("/data/wb").as_posix()
    '/data/wb/hooks'
    """
    return (Path(root).expanduser() if root is not None else workbench_root()) / "hooks"


def default_root() -> Path:
    """Where ``HookCache()`` keeps its stores: :func:`hooks_root` of :func:`workbench_root`.

    Examples
    --------
    >>> default_root() == hooks_root()
    True
    """
    return hooks_root()
