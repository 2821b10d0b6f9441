"""UI layer: Panel pages (served and inline) and ipywidgets controls.

The only package that imports panel, ipywidgets or bokeh; analysis code in
``workbench`` never imports it.
"""
