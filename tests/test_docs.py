"""The docs stay walkable: links resolve, and the commands they tell a reader to type exist.

Checked in README.md and docs/*.md: every relative link (a file, a folder, a `#heading` of a page),
every `make <target> [VAR=...]` against the Makefile, and every `wrenn <sub-command> [--option]`
against the CLI's own parser. Commands are read from code (fenced blocks and inline `code`), where
a reader copies them from.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from wrenn_platform.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
# Words after which the next word is a command, as in a shell.
_COMMAND_SEPARATORS = {";", "&", "&&", "|", "||", "(", ")", "!", "do", "then", "else", "if", "while", "until", "time"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Page:
    path: Path
    prose: list[str]  # lines outside fenced code
    code: list[str]  # lines of fenced code, backslash continuations joined, plus inline code spans


def read_page(path: Path) -> Page:
    prose: list[str] = []
    code: list[str] = []
    in_fence = False
    pending = ""
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            if line.endswith("\\"):
                pending += line[:-1] + " "
            else:
                code.append(pending + line)
                pending = ""
        else:
            prose.append(line)
            code.extend(span for _, span in _INLINE_CODE.findall(line))
    return Page(path, prose, code)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Page) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in page.prose:
        found.update(_HTML_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Page) -> list[str]:
    """Link targets in the prose, inline code left out (`[x](y)` there is an example, not a link)."""
    targets: list[str] = []
    for line in page.prose:
        targets.extend(_LINK.findall(_INLINE_CODE.sub("", line)))
    return targets


def broken_links(page: Page, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for target in links(page):
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.path.parent / path_part).resolve() if path_part else page.path
        if root not in destination.parents and destination != root:
            problems.append(f"{target}: points outside the repository")
        elif not destination.exists():
            problems.append(f"{target}: {destination.relative_to(root)} does not exist")
        elif anchor:
            if destination.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not a page")
            elif anchor not in anchors(read_page(destination)):
                problems.append(f"{target}: no heading #{anchor} in {destination.relative_to(root)}")
    return problems


def shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in a fragment: plain words are good enough
        return line.split()


def commands(page: Page, program: str) -> list[list[str]]:
    """Each use of `program` in the page's code as a command, with its arguments up to the next
    shell separator. `wrenn` also matches a path to it (`.venv/bin/wrenn`)."""
    found: list[list[str]] = []
    for line in page.code:
        words = shell_words(line)
        at_command = True
        for index, word in enumerate(words):
            if at_command and (word == program or (program == "wrenn" and word.endswith("/bin/wrenn"))):
                rest = words[index + 1:]
                end = next((i for i, w in enumerate(rest) if w in _COMMAND_SEPARATORS), len(rest))
                found.append(rest[:end])
            if word in _COMMAND_SEPARATORS:
                at_command = True
            elif not (at_command and _ASSIGNMENT.match(word)):
                at_command = False
    return found


def makefile_names() -> tuple[set[str], set[str]]:
    targets: set[str] = set()
    variables: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        if variable := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=", line):
            variables.add(variable.group(1))
        elif rule := re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line):
            targets.update(rule.group(1).split())
    return targets - {".PHONY"}, variables


def make_problems(arguments: list[str], targets: set[str], variables: set[str]) -> list[str]:
    problems: list[str] = []
    for word in arguments:
        if word.startswith("-"):
            continue
        if "=" in word:
            name = word.split("=", 1)[0]
            if name not in variables:
                problems.append(f"make {' '.join(arguments)}: the Makefile has no variable {name}")
        elif word not in targets:
            problems.append(f"make {' '.join(arguments)}: the Makefile has no target {word!r}")
    return problems


def wrenn_problems(arguments: list[str], root: Any) -> list[str]:
    """Walk the CLI as click would: sub-command names down the groups, then options of the command.
    (Typer ships its own copy of click, so a group is recognised by its `commands`.)"""
    command = root
    shown = " ".join(["wrenn", *arguments])
    for word in arguments:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            known = {opt for param in command.params for opt in param.opts + param.secondary_opts} | {"--help"}
            if name not in known:
                return [f"{shown}: `{command.name}` has no option {name}"]
        elif hasattr(command, "commands"):
            sub = command.commands.get(word)
            if sub is None:
                return [f"{shown}: no sub-command {word!r} (there are {', '.join(sorted(command.commands))})"]
            command = sub
    return []


def cli() -> Any:
    return typer.main.get_command(app)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(read_page(path)) == []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_make_commands_exist(path: Path) -> None:
    targets, variables = makefile_names()
    problems = [p for args in commands(read_page(path), "make") for p in make_problems(args, targets, variables)]
    assert problems == []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_wrenn_commands_exist(path: Path) -> None:
    root = cli()
    problems = [p for args in commands(read_page(path), "wrenn") for p in wrenn_problems(args, root)]
    assert problems == []


def test_the_docs_are_checked_at_all() -> None:
    """The checks above pass vacuously if the parsers find nothing: the landing page's own commands
    and links must be seen."""
    readme = read_page(ROOT / "README.md")
    assert ["run"] in commands(readme, "make") and ["test"] in commands(readme, "make")
    assert any(args[:2] == ["admin", "create"] for args in commands(readme, "wrenn"))
    assert "docs/configuration.md" in links(readme)
    assert "quick-start" in anchors(readme)


def test_the_checks_catch_mistakes(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Wrenn\n\n### Quick start\n")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "probe.md"
    text = (
        "# A page\n\n## Its `second` heading: (yes)\n\n"
        "[ok](#its-second-heading-yes) [ok](../README.md#quick-start) [bad](#nowhere) "
        "[bad](missing.md) [bad](../README.md#no-such-heading) [bad](../../x.md) `[not a link](nowhere.md)`\n\n"
        "Run `make tset` or `.venv/bin/wrenn admin creat`.\n\n"
        "```sh\nmake test NO_SUCH_VAR=1\nwrenn server \\\n  --no-such-flag\nX=1 wrenn template build minimal --force\n"
        "echo wrenn nothing  # not a command\n```\n"
    )
    page.write_text(text)
    parsed = read_page(page)
    assert broken_links(parsed, root=tmp_path) == [
        "#nowhere: no heading #nowhere in docs/probe.md",
        "missing.md: docs/missing.md does not exist",
        "../README.md#no-such-heading: no heading #no-such-heading in README.md",
        "../../x.md: points outside the repository",
    ]
    targets, variables = makefile_names()
    make_found = [p for args in commands(parsed, "make") for p in make_problems(args, targets, variables)]
    assert make_found == [
        "make tset: the Makefile has no target 'tset'",
        "make test NO_SUCH_VAR=1: the Makefile has no variable NO_SUCH_VAR",
    ]
    root = cli()
    wrenn_found = [p for args in commands(parsed, "wrenn") for p in wrenn_problems(args, root)]
    assert len(wrenn_found) == 2
    assert wrenn_found[0].startswith("wrenn admin creat: no sub-command 'creat'")
    assert wrenn_found[1] == "wrenn server --no-such-flag: `server` has no option --no-such-flag"
