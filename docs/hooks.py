"""MkDocs hook: the site's pages are the repository's READMEs, included as they are.

A page line ``<!-- include: path/from/the/root.md -->`` is replaced by that file. Its relative
links are then pointed at the site: a package README (``packages/<name>/README.md``, reached as
``../<name>/README.md`` from another package) becomes that package's page, and any other file of
the repository (examples, benchmarks) becomes its address in the repository, so ``--strict``
finds no broken link and the READMEs stay the one source.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r"^<!-- include: (?P<path>[^ ]+) -->$", re.MULTILINE)
# [text](target) where target is relative (no scheme, not an anchor of this page).
LINK = re.compile(r"\]\((?P<target>(?![a-z]+:|#)[^)\s]+)\)")


def _site_target(target: str, source: str, page: str, repo_url: str) -> str:
    path, _, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    match = re.fullmatch(r"packages/(?P<name>[^/]+)/README\.md", resolved)
    if match and (ROOT / resolved).is_file():
        page_path = f"packages/{match['name']}.md"
        link = posixpath.relpath(page_path, posixpath.dirname(page) or ".")
    elif resolved == "README.md":
        link = posixpath.relpath("index.md", posixpath.dirname(page) or ".")
    elif (ROOT / resolved).exists():
        kind = "tree" if (ROOT / resolved).is_dir() else "blob"
        link = f"{repo_url.rstrip('/')}/{kind}/main/{resolved}"
    else:
        raise ValueError(f"{source}: link to {target!r}, which does not exist")
    return f"{link}#{anchor}" if anchor else link


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    """Replace each include line by the file, its links pointed at the site."""
    repo_url = str(config["repo_url"])

    def include(match: re.Match[str]) -> str:
        source = match["path"]
        text = (ROOT / source).read_text(encoding="utf-8")
        return LINK.sub(
            lambda link: (
                "](" + _site_target(link["target"], source, page.file.src_uri, repo_url) + ")"
            ),
            text,
        )

    return INCLUDE.sub(include, markdown)
