"""Every relative link in README.md and docs/*.md points at a file of the repository, and a link
to a heading of a Markdown page (`page.md#heading`) at a heading that page has."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
#: pages linked before they exist (none now: a name here is a link allowed to dangle)
PENDING: set[str] = set()


def _pages() -> list[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)   # not in code
    return [m.group(1) for m in LINK.finditer(text)
            if not re.match(r"[a-z]+:", m.group(1))]                              # not http(s), mailto


def test_every_relative_link_resolves():
    broken = []
    for page in _pages():
        for link in _links(page):
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
            if not path.exists():
                if rel not in PENDING:
                    broken.append(f"{page.relative_to(REPO)}: {link} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(REPO)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme_and_says_what_it_is_for():
    readme = set(_links(REPO / "README.md"))
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in {link.partition("#")[0] for link in readme}, page.name
        first = page.read_text(encoding="utf-8").split("\n\n")[1]
        assert first.startswith("What this page is for"), page.name


def test_the_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("# Title\n\nsee [a](missing.md), [b](#title), [c](https://example.org) and\n"
                    "```\n[not a link](nowhere.md)\n```\n")
    assert _links(page) == ["missing.md", "#title"]
    assert _anchors(page) == {"title"}
