"""Dashboard pages: one state object per analysis, rendered by :mod:`widgets.template`."""
