#!/usr/bin/env python3
"""Checks README.md and every docs/**/*.md: each relative markdown link resolves.

A link `[x](path)` or `[x](path#anchor)` (images `![x](path)` and reference definitions
`[x]: path` too) must name a file or folder that exists, relative to the page; with an anchor,
or as `#anchor` within the page, a heading of the target markdown file must produce that anchor
by GitHub's rule (lowercase; characters other than letters, digits, spaces, hyphens and
underscores dropped; spaces to hyphens; a repeated heading gets -1, -2, ...). http(s) and mailto
links, links in fenced code blocks and in inline code are skipped. The README must also name the
two commands, scripts/quickstart.sh and scripts/test.sh, inside a fenced code block, and both
must exist and be executable.

Usage: scripts/check-docs.py [--self-test]   (exit 1 with FILE:LINE: lines on a broken link)
"""

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("scripts/quickstart.sh", "scripts/test.sh")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title"): text may hold one level of brackets ([`x`] or ![img](..) inside).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*\s)?(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)


def lines_outside_fences(text):
    """(line number, line) for each line not inside a fenced code block."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            yield number, line
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and \
                line.strip() == m.group(1):
            fence = None


def fenced_blocks(text):
    """The text of each fenced code block."""
    blocks, current, fence = [], None, None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, current = m.group(1), []
        elif m and m.group(1)[0] == fence[0] and line.strip() == m.group(1):
            blocks.append("\n".join(current))
            fence = None
        else:
            current.append(line)
    return blocks


def slug(heading):
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w: Unicode letters, digits and _
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Every anchor a markdown file's headings (and <a name/id>) produce."""
    if path not in cache:
        seen, found = {}, set()
        text = path.read_text(encoding="utf-8")
        for _, line in lines_outside_fences(text):
            found.update(HTML_ANCHOR.findall(line))
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


def links(text):
    """(line number, target) for each link outside code."""
    for number, line in lines_outside_fences(text):
        m = REFERENCE.match(line)
        if m:
            yield number, m.group(1)
            continue
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, m.group(1)


def check_page(page, root):
    problems = []
    shown = page.relative_to(root)
    for number, target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        if not path and not anchor:
            problems.append(f"{shown}:{number}: broken link ({target!r}): empty")
            continue
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{shown}:{number}: broken link {target}: {path} does not exist")
            continue
        if anchor:
            if dest.is_dir() or dest.suffix.lower() not in (".md", ".markdown"):
                problems.append(f"{shown}:{number}: broken link {target}: "
                                f"#{anchor} points into a file that is not markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{shown}:{number}: broken link {target}: no heading in "
                                f"{os.path.relpath(dest, root)} makes #{anchor}")
    return problems


def check_commands(root):
    problems = []
    readme = root / "README.md"
    code = "\n".join(fenced_blocks(readme.read_text(encoding="utf-8")))
    for command in COMMANDS:
        if not re.search(rf"(^|\s){re.escape(command)}(\s|$)", code, re.MULTILINE):
            problems.append(f"README.md:1: {command} is not named in a fenced code block")
        path = root / command
        if not path.is_file():
            problems.append(f"README.md:1: {command} does not exist")
        elif not os.access(path, os.X_OK):
            problems.append(f"README.md:1: {command} is not executable")
    return problems


def pages(root):
    found = [root / "README.md"]
    if (root / "docs").is_dir():
        found += sorted((root / "docs").rglob("*.md"))
    return found


def check(root):
    problems, count = [], 0
    for page in pages(root):
        problems += check_page(page, root)
        count += sum(1 for _ in links(page.read_text(encoding="utf-8")))
    problems += check_commands(root)
    return problems, len(pages(root)), count


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        (root / "scripts").mkdir()
        for command in COMMANDS:
            (root / command).write_text("#!/bin/sh\n")
            (root / command).chmod(0o755)
        (root / "README.md").write_text(
            "# Demo\n\n```sh\nscripts/quickstart.sh\nscripts/test.sh --fast\n```\n\n"
            "See [the guide](docs/guide.md#load-your-own-endpoint), [here](#demo), "
            "[`code`](docs/guide.md#a-b_c-x-1) and [the web](https://example.com/x#y).\n"
            "`[not a link](nowhere.md)`\n\n```\n[in a fence](nowhere.md)\n```\n")
        (root / "docs" / "guide.md").write_text(
            "# Guide\n\n## Load your own endpoint\n\n## A `b_c`: (x)!\n\n## A `b_c`: (x)!\n\n"
            "[back](../README.md#demo) [gone](./missing.md) [bad anchor](#no-such-heading)\n")
        problems, _, _ = check(root)
        want = ["docs/guide.md:9: broken link ./missing.md:",
                "docs/guide.md:9: broken link #no-such-heading:"]
        assert len(problems) == len(want) and all(
            any(p.startswith(w) for p in problems) for w in want
        ), f"self-test: want {want}, got {problems}"
        assert slug("Running it again: the `loadgate.dev/run` annotation") == \
            "running-it-again-the-loadgatedevrun-annotation"
        assert slug("(c) Flux: a Kustomization that waits on the test") == \
            "c-flux-a-kustomization-that-waits-on-the-test"
        # The two commands: missing from the README's code, or not executable, is caught too.
        (root / "scripts" / "test.sh").chmod(0o644)
        (root / "README.md").write_text("# Demo\n\nRun scripts/quickstart.sh.\n")
        problems, _, _ = check(root)
        assert any("scripts/quickstart.sh is not named" in p for p in problems), problems
        assert any("scripts/test.sh is not executable" in p for p in problems), problems
    print("check-docs: self-test OK (a missing file, a missing anchor and a missing command are caught)")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if argv[1:]:
        print(__doc__.strip().split("\n")[-1], file=sys.stderr)
        return 2
    problems, page_count, link_count = check(ROOT)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check-docs: {len(problems)} problem(s) in README.md and docs/", file=sys.stderr)
        return 1
    print(f"check-docs: OK: {link_count} links in {page_count} pages resolve; "
          f"README names {' and '.join(COMMANDS)}, both executable")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
