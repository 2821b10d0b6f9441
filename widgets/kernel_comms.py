"""Panel's comm messages handled on the kernel's main thread, where everything else a page sends comes from.

JupyterLab 4.4+ with ipykernel 7 sends widget comm messages to kernel
*subshells* (its "Kernel Comms over subshells" setting, default one subshell
per comm target): the handler of a browser event then runs in another
thread. A Panel output sends each document change as several comm messages
(header, metadata, content, then one pair per binary buffer); a change made
by an event handler in the subshell thread and one made on the main thread
(a page's periodic poll, a finished job) interleave their pieces, and the
browser reassembles garbage: "Expected binary fragment but received text
fragment", "s is not iterable", updates lost. ipykernel lets a comm choose
where its messages are handled (``comm._reply_subshell_for``); the comms
Panel's browser side opens are pinned to the main shell here, which is how
every Panel event was handled before subshells existed. ipywidgets' comms,
whose messages are whole, keep their subshell.

Examples
--------
>>> pin_panel_comms_to_main_shell()   # no Jupyter kernel here: nothing to pin
False
"""

from __future__ import annotations

from typing import Any


def _main_shell(data: Any, default: str | None) -> None:
    """ipykernel's routing hook for a comm: the subshell to handle a message in; None is the main shell."""
    return None


def _opened_for_panel(manager: Any, comm: Any) -> bool:
    """True when ``comm`` was opened to a target a pyviz_comms (Panel) comm registered."""
    try:
        from pyviz_comms import Comm as PanelComm
    except ImportError:
        return False
    target = manager.targets.get(getattr(comm, "target_name", None))
    return isinstance(getattr(target, "__self__", None), PanelComm)


def pin_panel_comms_to_main_shell(kernel: Any = None) -> bool:
    """Handle every Panel comm of this kernel, open now or opened later, on the main thread.

    Idempotent. Without subshell support in the kernel the pin is harmless: every message
    already goes to the main shell.

    Parameters
    ----------
    kernel : ipykernel Kernel, optional
        Default: the running IPython kernel.

    Returns
    -------
    bool
        True when this kernel's comm manager is pinned (now or by an earlier call); False
        outside a kernel.
    """
    if kernel is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        kernel = getattr(get_ipython(), "kernel", None)
    manager = getattr(kernel, "comm_manager", None)
    if manager is None:
        return False
    if getattr(manager, "_workbench_panel_pinned", False):
        return True
    register = manager.register_comm

    def register_comm(comm: Any) -> str:
        if _opened_for_panel(manager, comm):
            comm._reply_subshell_for = _main_shell
        return register(comm)

    manager.register_comm = register_comm
    for comm in list(manager.comms.values()):
        if _opened_for_panel(manager, comm):
            comm._reply_subshell_for = _main_shell
    manager._workbench_panel_pinned = True
    return True


__all__ = ["pin_panel_comms_to_main_shell"]
