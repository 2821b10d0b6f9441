"""The root URL's page: the five pages with a line each, fully offline, behind the same login as the pages.

Bokeh's root handler renders it (``index=`` of :func:`panel.serve`), so it
asks for the login whenever the pages do. It links nothing outside the
server: system fonts, no icons, inline style.

Examples
--------
>>> from widgets.app import PAGES
>>> html = landing_html(PAGES)
>>> 'href="./sae"' in html, "http" in html
(True, False)
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

from widgets.template import ACCENT, SITE_TITLE

_STYLE = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933;
       background: #f4f5f7; }}
header {{ background: {ACCENT}; color: #fff; padding: 1.1rem 2rem; font-size: 1.4rem; }}
main {{ max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }}
p.lead {{ color: #52606d; margin: 0 0 1.5rem; }}
ul {{ list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr));
      gap: 1rem; }}
li a {{ display: block; height: 100%; box-sizing: border-box; background: #fff; border-radius: 8px;
        padding: 1rem 1.25rem; text-decoration: none; color: inherit; box-shadow: 0 1px 6px rgba(0,0,0,.1); }}
li a:hover {{ box-shadow: 0 2px 12px rgba(0,0,0,.2); }}
li strong {{ display: block; color: {ACCENT}; font-size: 1.1rem; margin-bottom: .35rem; }}
"""


def landing_html(pages: dict) -> str:
    """The landing page for ``pages`` (``{slug: Page subclass}``, in menu order): title and summary of each.

    The text is also a valid Tornado template (no ``{{``, ``{%`` or ``{#``),
    which is how Bokeh renders its index page.
    """
    items = "\n".join(f'<li><a href="./{html.escape(slug)}"><strong>{html.escape(page.title)}</strong>'
                      f'{html.escape(page.summary)}</a></li>' for slug, page in pages.items())
    text = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{SITE_TITLE}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<header>{SITE_TITLE}</header>\n<main>\n"
            f'<p class="lead">Take neural networks and neural recordings apart. Each page explains its terms '
            f"when you hover them; the Overview caches the activations the other pages read.</p>\n"
            f"<ul>\n{items}\n</ul>\n</main>\n</body>\n</html>\n")
    if any(mark in text for mark in ("{{", "{%", "{#")):
        raise ValueError("pages: a title or summary holds template syntax ({{, {% or {#)")
    return text


def write_landing(pages: dict) -> Path:
    """:func:`landing_html` written to a fresh temporary file, whose path ``panel.serve(index=...)`` takes.

    Examples
    --------
    >>> from widgets.app import PAGES
    >>> write_landing(PAGES).read_text().startswith("<!DOCTYPE html>")
    True
    """
    path = Path(tempfile.mkdtemp(prefix="workbench-landing-")) / "index.html"
    path.write_text(landing_html(pages))
    return path
