#!/usr/bin/env python3
"""Every relative link in the docs leads somewhere.

Reads README.md, CHANGELOG.md and every Markdown file under docs/ and
examples/, and checks that each relative link ([text](path), [text](#anchor),
[text](path#anchor)) names a file or directory that exists and, where it
names an #anchor, a heading of that Markdown file. Anchors are made as
GitHub makes them: the heading's text in lower case, without its
punctuation, spaces turned into hyphens, and -1, -2, ... after a repeat.
Links to other sites (http:, https:, mailto:) are not followed. Code
(fenced blocks and `spans`) is neither a link nor a heading.

    python3 tests/docs-links.py        # exit 0, or 1 listing each broken link
"""

import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def markdown_files():
    """The files whose links are checked, relative to the repository."""
    files = [name for name in ("README.md", "CHANGELOG.md") if os.path.exists(os.path.join(ROOT, name))]
    for top in ("docs", "examples"):
        for folder, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.endswith(".md"):
                    files.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return files


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def slug(heading):
    """The anchor GitHub gives a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LN" or category == "Mn":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path, cache={}):
    """The anchors of a Markdown file's headings."""
    if path not in cache:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        seen = {}
        found = set()
        for _, line in prose_lines(text):
            match = HEADING.match(line)
            if not match:
                continue
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        cache[path] = found
    return cache[path]


def broken_links(relative):
    """(line, link, what is wrong) for each broken link of one file."""
    path = os.path.join(ROOT, relative)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    for number, line in prose_lines(text):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(linked):
                yield number, target, f"no file {os.path.relpath(linked, ROOT)}"
                continue
            if anchor and linked.endswith(".md") and anchor not in anchors(linked):
                yield number, target, f"no heading #{anchor} in {os.path.relpath(linked, ROOT)}"


def main():
    files = markdown_files()
    problems = [
        f"{relative}:{number}: {target}: {what}"
        for relative in files
        for number, target, what in broken_links(relative)
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"docs-links: {len(problems)} broken link(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"docs-links: every relative link in {len(files)} file(s) resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
