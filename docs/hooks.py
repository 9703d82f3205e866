"""mkdocs hook: the gallery page drawn from spec/figures.toml, the one list of figures.

`docs/gallery.md` holds the line ``<!-- gallery -->``; this hook replaces it
with one section per figure of the spec (its title, question and description,
and the demo's image, docs/demo/<file>). A figure of the spec without its
image in docs/demo is a warning, which `mkdocs build --strict` turns into a
failure: the gallery cannot fall behind the spec.
"""

from __future__ import annotations

import logging

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- gallery -->"
log = logging.getLogger("mkdocs.hooks.gallery")


def gallery_markdown(spec_path: Path = ROOT / "spec" / "figures.toml") -> str:
    entries = tomllib.loads(spec_path.read_text())["figure"]
    parts = []
    for entry in entries:
        image = ROOT / "docs" / "demo" / entry["file"]
        if not image.exists():
            log.warning("gallery: no docs/demo/%s for the spec's %r", entry["file"], entry["id"])
        parts += [
            f"## {entry['title']}",
            "",
            f"*{entry['question']}*",
            "",
            entry.get("description", ""),
            "",
            f"![{entry['title']}](demo/{entry['file']})",
            "",
        ]
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "gallery.md":
        return markdown.replace(MARKER, gallery_markdown())
    return markdown
