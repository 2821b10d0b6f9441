"""UI layer: Panel pages (served and inline) and ipywidgets controls.

The only package that imports panel, ipywidgets or bokeh; analysis code in
``workbench`` never imports it.

Start a notebook with ``import widgets; widgets.notebook_setup()`` (see :mod:`widgets.jupyter`).
"""

__all__ = ["notebook_setup"]


def __getattr__(name: str):
    # Lazy: ``import widgets`` stays light (no Panel) for scripts that only use the ipywidgets controls.
    if name == "notebook_setup":
        from widgets.jupyter import notebook_setup

        return notebook_setup
    raise AttributeError(f"module 'widgets' has no attribute {name!r}")
