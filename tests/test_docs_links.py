"""The README and docs/*.md point only at things that exist: files, headings, modules.

Every relative Markdown link must name an existing file and, with an ``#anchor``, a heading of
that file (GitHub's slug rules); every repository path written in the text (``proxy/http/app.py``,
``predictor_onnx/escalation_models/``) must exist; every ``python -m MODULE`` must be importable;
and the README stays a front page (at most :data:`README_MAX_LINES` lines) that links each file
of ``docs/``.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"(?P<hashes>#{1,6}) (?P<title>.+?)\s*#*\s*$")
# A repository path: at least two components, ending in a file extension or in "/".
_PATH = re.compile(
    r"(?<![\w./~$<>:*-])(?P<path>(?:[A-Za-z_][\w.-]*/)+[\w-]+(?:\.[\w-]+)*\.[a-z0-9]{1,6}"
    r"|(?:[A-Za-z_][\w.-]*/){2,})(?![\w/*<>-])"
)
_MODULE = re.compile(r"python -m (?P<module>[A-Za-z_][\w.]*)")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(title: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped
    (``-`` and ``_`` kept), each space a hyphen."""
    text = _LINK.sub(lambda m: m["text"], title).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub does."""
    seen: Counter[str] = Counter()
    found = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        heading = _HEADING.fullmatch(line)
        if heading is None:
            continue
        base = slug(heading["title"])
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file or heading does not exist."""
    broken = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        for link in _LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = link["target"]
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return broken


def missing_paths(path: Path) -> list[str]:
    """Each repository path the text names (code included) that does not exist."""
    text = path.read_text(encoding="utf-8")
    named = {m["path"] for m in _PATH.finditer(text)}
    return sorted(p for p in named if not (ROOT / p).exists())


def missing_modules(path: Path) -> list[str]:
    """Each ``python -m MODULE`` the text names that cannot be imported."""
    text = path.read_text(encoding="utf-8")
    modules = {m["module"].rstrip(".") for m in _MODULE.finditer(text)}
    return sorted(m for m in modules if importlib.util.find_spec(m) is None)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(path: Path) -> None:
    assert missing_paths(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_run_with_python_m_exists(path: Path) -> None:
    assert missing_modules(path) == []


def test_the_readme_is_a_front_page_linking_every_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {m["target"].partition("#")[0] for m in _LINK.finditer(readme)}
    assert {f"docs/{p.name}" for p in DOCS[1:]} <= linked


def test_the_checks_find_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# A `page`: its title\n\n## Twice\n\n## Twice\n\n"
        "[ok](#a-page-its-title) [ok](#twice-1) [gone](#twice-2) [gone](missing.md) "
        "[ok](page.md#twice) `[not a link](nowhere.md)`\n\n"
        "```bash\n[not a link](nowhere.md)\n```\n"
        "Run `python -m bench.docs` and `python -m no_such_module`; read `proxy/http/app.py`,\n"
        "proxy/no_such.py, `predictor_onnx/escalation_models/`, `bench/results/*.json`, "
        "`<cascade>.json` and `~/.cache/x/y.py`.\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"a-page-its-title", "twice", "twice-1"}
    assert [b.split(":")[0] for b in broken_links(page)] == ["#twice-2", "missing.md"]
    assert missing_paths(page) == ["proxy/no_such.py"]
    assert missing_modules(page) == ["no_such_module"]
