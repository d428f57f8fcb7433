"""The documentation stands on its own: no file in the repository refers to notes kept
outside it, and every relative link in the front page, docs/ and bench/README.md reaches
a file that exists (and, for `page.md#anchor`, a heading of that page, by GitHub's slugs).
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Written in pieces so that this file does not match itself.
OUTSIDE_REFERENCES = (
    "../" + "shared",
    "DESIGN" + ".md",
    "STYLE" + ".md",
    "origin" + "-notes",
)

LINKED_PAGES = ("README.md", "docs/*.md", "bench/README.md")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repository_files() -> list[str]:
    """Tracked files, and new ones not yet added that git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name})


# The project's work items are not part of what it documents: a numbered issue means
# nothing to a reader of this repository.
_WORK_ITEM = re.compile(r"\bissue\s+#?\d+", re.IGNORECASE)


def outside_references(text: str) -> list[str]:
    found = [needle for needle in OUTSIDE_REFERENCES if needle in text]
    return found + _WORK_ITEM.findall(text)


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, punctuation dropped (hyphens
    and underscores kept), spaces made hyphens."""
    text = _INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("*", "").strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: its headings' slugs (repeats numbered as GitHub does)
    and HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose_lines(text):
        match = _HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(_HTML_ANCHOR.findall(line))
    return found


def links(text: str) -> list[str]:
    """The targets of the page's inline, image and reference links, outside code."""
    targets = []
    for line in _prose_lines(text):
        prose = _INLINE_CODE.sub("", line)
        targets.extend(_INLINE_LINK.findall(prose))
        reference = _REFERENCE_LINK.match(prose)
        if reference:
            targets.append(reference.group(1))
    return targets


def broken_links(page: Path, root: Path) -> list[str]:
    """The relative links of `page` whose file, or whose heading, does not exist."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # absolute URLs are not checked offline
        path_part, _, anchor = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        destination = (page.parent / path_part).resolve() if path_part else page
        try:
            destination.relative_to(root.resolve())
        except ValueError:
            broken.append(f"{target} (outside the repository)")
            continue
        if not destination.exists():
            broken.append(f"{target} (no such file)")
            continue
        if (
            anchor
            and destination.suffix == ".md"
            and destination.is_file()
            and anchor.lower() not in anchors(destination.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target} (no such heading)")
    return broken


def linked_pages() -> list[Path]:
    pages: list[Path] = []
    for pattern in LINKED_PAGES:
        pages.extend(sorted(REPO_ROOT.glob(pattern)))
    return pages


def test_no_repository_file_refers_to_notes_outside_it():
    offenders = []
    for name in repository_files():
        path = REPO_ROOT / name
        if not path.is_file() or name == "uv.lock":
            continue  # deleted in the work tree
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (images)
        for number, line in enumerate(text.splitlines(), start=1):
            for needle in outside_references(line):
                offenders.append(f"{name}:{number}: {needle}")

    assert offenders == [], "refers outside the repository:\n" + "\n".join(offenders)


def test_the_documentation_pages_exist():
    names = {page.relative_to(REPO_ROOT).as_posix() for page in linked_pages()}

    assert {"README.md", "bench/README.md"} <= names
    assert any(name.startswith("docs/") for name in names)


@pytest.mark.parametrize(
    "page", linked_pages(), ids=lambda page: page.relative_to(REPO_ROOT).as_posix()
)
def test_every_relative_link_reaches_a_file_and_heading_that_exist(page):
    assert broken_links(page, REPO_ROOT) == []


# The checker itself, on pages made for the purpose.


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("How a request is handled", "how-a-request-is-handled"),
        ("auth_svc: `/api/users`", "auth_svc-apiusers"),
        ("Retries, NotYet and dead letters", "retries-notyet-and-dead-letters"),
        ("Logs and correlation ids", "logs-and-correlation-ids"),
        ("Deploy on Kubernetes", "deploy-on-kubernetes"),
    ],
)
def test_slugs_follow_github(heading, slug):
    assert github_slug(heading) == slug


def test_a_missing_file_or_heading_is_reported_and_code_is_not_read(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Title\n\n## A section\n\n## A section\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section) [repeat](other.md#a-section-1) [self](#page)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) ![img](img/none.png)\n"
        "[out](../../elsewhere.md) [web](https://example.com/x.md) `[code](nothing.md)`\n"
        "[ref]: ./missing-ref.md\n"
        "```\n[fenced](nothing.md)\n```\n"
    )

    assert broken_links(page, tmp_path) == [
        "missing.md (no such file)",
        "other.md#nowhere (no such heading)",
        "img/none.png (no such file)",
        "../../elsewhere.md (outside the repository)",
        "./missing-ref.md (no such file)",
    ]


def test_an_outside_reference_is_found():
    assert outside_references("see " + OUTSIDE_REFERENCES[1] + " §4") == [OUTSIDE_REFERENCES[1]]
    assert outside_references("see docs/events.md") == []
    work_items = "Issue" + " 13", "issue" + " #4"
    assert outside_references(f"as {work_items[0]} asks; {work_items[1]}") == list(work_items)
    assert outside_references("a known issue with 3 workers") == []
