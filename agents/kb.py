"""Help articles from files into the knowledge base: parse, chunk by headings, import.

Markdown (.md, .markdown), HTML (.html, .htm) and plain text (.txt) are read, each with an
optional YAML front matter between `---` lines at the top:

    ---
    title: Reset your password
    url: https://help.example.com/password
    ---

Without a `title`, Markdown's first `#` heading, HTML's <title> (or first <h1>) or the file
name is the title; without a `url`, HTML's canonical link, else none. An article is cut at
its headings (Markdown `#`..`######` and underlined ones, HTML <h1>..<h6>; plain text has
none) into sections, and a section longer than `MAX_CHUNK_CHARS` at paragraphs, sentences,
then words. Each chunk keeps its heading trail, title first, so the title's words find it.

Importing a directory again updates the articles whose content hash changed, leaves the
others, and removes the stored articles under that directory whose file is gone.
"""

from __future__ import annotations

import hashlib
import html
import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from inscriptis import get_annotated_text
from inscriptis.model.config import ParserConfig

from bot.core.errors import ConfigurationError
from bot.store import kb
from bot.store.db import Database
from bot.store.kb import ArticleDraft, Section

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}
MAX_CHUNK_CHARS = 1200
PARSER_VERSION = "1"
"""Part of every content hash: a change in parsing or chunking re-imports every article."""
TRAIL = " › "

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_KEEPS_LINE = re.compile(r"^(\s{4,}|\t|\s*([-*+>|]|\d+[.)])\s)")


@dataclass(frozen=True, slots=True)
class Block:
    """Text under one heading: its level (0 before the first heading) and title."""

    level: int
    heading: str
    text: str


# Reading one file


def read_article(path: Path) -> ArticleDraft:
    """Parse one article file; `ConfigurationError` names the file and what is wrong."""
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ConfigurationError(f"{path}: not an article (use {', '.join(sorted(KINDS))})")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot read: {error.strerror}") from None
    return parse_article(raw, kind, path=path.resolve().as_posix(), name=path.stem)


def parse_article(raw: str, kind: str, *, path: str, name: str) -> ArticleDraft:
    """An article from its text; `kind` is markdown, html or text; `name` the fallback title."""
    meta, body = split_front_matter(raw, path)
    url = meta.get("url")
    if kind == "markdown":
        blocks = markdown_blocks(body)
    elif kind == "html":
        blocks = html_blocks(body)
        url = url or _canonical_link(body)
    else:
        blocks = [Block(0, "", unwrap(body))]
    if url is not None and len(url) > kb.URL_CHARS:
        raise ConfigurationError(f"{path}: url is longer than {kb.URL_CHARS} characters")
    title = meta.get("title") or _first_title(kind, body, blocks) or _humane(name)
    digest = hashlib.sha256(f"{PARSER_VERSION}\n{raw}".encode()).hexdigest()
    return ArticleDraft(path, title, url, body, digest, tuple(chunks(title, blocks)))


def split_front_matter(raw: str, source: str) -> tuple[dict[str, str], str]:
    """({title, url} given in the front matter, the rest of the text)."""
    found = _FRONT_MATTER.match(raw)
    if found is None:
        return {}, raw
    try:
        data: Any = yaml.safe_load(found.group(1))
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{source}: front matter is not YAML: {_problem(error)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: front matter must be fields (title:, url:)")
    meta = {}
    for key in ("title", "url"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{source}: front matter {key} must be text")
        if value and value.strip():
            meta[key] = " ".join(value.split())
    return meta, raw[found.end() :]


def _problem(error: yaml.YAMLError) -> str:
    """PyYAML's complaint on one line, with its line in the file (the `---` is line 1)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        return f"line {error.problem_mark.line + 2}: {error.problem}"
    return " ".join(str(error).split())


def _humane(name: str) -> str:
    words = re.sub(r"[-_]+", " ", name).strip()
    return words[:1].upper() + words[1:] if words else "Untitled"


def _first_title(kind: str, body: str, blocks: list[Block]) -> str | None:
    if kind == "html":
        found = re.search(r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
        if found and found.group(1).strip():
            return " ".join(html.unescape(found.group(1)).split())
    return next((b.heading for b in blocks if b.level == 1 and b.heading), None)


def _canonical_link(body: str) -> str | None:
    for tag in re.findall(r"<link\b[^>]*>", body, re.IGNORECASE):
        if re.search(r"rel\s*=\s*[\"']?canonical", tag, re.IGNORECASE):
            found = re.search(r"href\s*=\s*[\"']([^\"']+)", tag, re.IGNORECASE)
            if found:
                return html.unescape(found.group(1)).strip()
    return None


# Markdown


def markdown_blocks(body: str) -> list[Block]:
    """The text under each heading (fenced code is text, never a heading)."""
    blocks: list[Block] = []
    lines: list[str] = []
    level, heading, fenced = 0, "", False
    for line in body.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        found = None if fenced else _heading(line, lines)
        if found is None:
            lines.append(line)
            continue
        if found[0] == "setext":
            lines.pop()  # the underlined line is the heading, not text
        blocks.append(Block(level, heading, _clean_markdown("\n".join(lines))))
        level, heading, lines = found[1], found[2], []
    blocks.append(Block(level, heading, _clean_markdown("\n".join(lines))))
    return blocks


def _heading(line: str, previous: list[str]) -> tuple[str, int, str] | None:
    """("atx" | "setext", level, text) when `line` ends a heading."""
    atx = _ATX.match(line)
    if atx:
        return "atx", len(atx.group(1)), _clean_markdown(atx.group(2))
    setext = _SETEXT.match(line)
    above = previous[-1].strip() if previous else ""
    # A line under text, not a list item: `---` under a blank line is a rule, not a heading.
    if setext and above and not re.match(r"^([-*+]|\d+[.)])\s", above):
        return "setext", 1 if setext.group(1)[0] == "=" else 2, _clean_markdown(above)
    return None


def _clean_markdown(text: str) -> str:
    """Markdown as a person reads it: links as "text (url)", no images, emphasis or comments."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)[^)]*\)", r"\1 (\2)", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return unwrap(text).strip()


def unwrap(text: str) -> str:
    """Lines of a paragraph joined into one (files are often wrapped at 80 or 100 columns);
    list items, quotes, tables, indented and fenced code keep their lines."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        keep = fenced or _FENCE.match(line) or not line.strip() or _KEEPS_LINE.match(line)
        if keep or not lines or not lines[-1].strip() or _FENCE.match(lines[-1]):
            lines.append(line)
        else:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
    return "\n".join(lines)


# HTML


def html_blocks(body: str) -> list[Block]:
    """The text (as inscriptis lays it out) under each <h1>..<h6>."""
    rules = {f"h{n}": [f"h{n}"] for n in range(1, 7)}
    annotated = get_annotated_text(body, ParserConfig(annotation_rules=rules))
    text: str = annotated["text"]
    blocks: list[Block] = []
    level, heading, start = 0, "", 0
    for begin, end, label in sorted(annotated["label"]):
        blocks.append(Block(level, heading, text[start:begin].strip()))
        level, heading, start = int(label[1]), " ".join(text[begin:end].split()), end
    blocks.append(Block(level, heading, text[start:].strip()))
    return blocks


# Chunks


def chunks(title: str, blocks: Sequence[Block]) -> Iterator[Section]:
    """Sections with their heading trails ("Title › Heading › Subheading"), none empty."""
    stack: list[Block] = []
    for n, block in enumerate(blocks):
        if block.level:
            stack = [b for b in stack if b.level < block.level]
            # The first heading is the title itself (Markdown's `# Title`): not repeated.
            if not (n <= 1 and block.heading.lower() == title.lower()):
                stack.append(block)
        trail = TRAIL.join([title, *(b.heading for b in stack)])
        for piece in split_text(block.text):
            yield Section(trail, piece)


def split_text(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at paragraphs where possible."""
    pieces: list[str] = []
    for paragraph in (textwrap.dedent(p).strip("\n").rstrip() for p in _PARAGRAPHS.split(text)):
        if not paragraph:
            continue
        for part in _fit(paragraph, limit):
            if pieces and len(pieces[-1]) + 2 + len(part) <= limit:
                pieces[-1] += "\n\n" + part
            else:
                pieces.append(part)
    return pieces


def _fit(paragraph: str, limit: int) -> list[str]:
    """A paragraph in parts under `limit`: whole sentences, or words for a huge sentence."""
    if len(paragraph) <= limit:
        return [paragraph]
    parts: list[str] = []
    for unit in _SENTENCES.split(paragraph):
        words = [unit] if len(unit) <= limit else unit.split()
        for word in words:
            if parts and len(parts[-1]) + 1 + len(word) <= limit:
                parts[-1] += " " + word
            else:
                parts.extend(word[i : i + limit] for i in range(0, len(word), limit))
    return parts


# Importing


@dataclass(frozen=True, slots=True)
class ArticleChange:
    """One article an import added, updated, left unchanged or removed."""

    change: str
    path: str
    shown: str
    """The path as the report shows it: from the imported directory, or the file's name."""
    title: str = ""
    chunks: int = 0


@dataclass
class ImportReport:
    """What an import changed, article by article, in order."""

    changes: list[ArticleChange] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def summary(self) -> str:
        names = ("added", "updated", "unchanged", "removed")
        return "knowledge base: " + ", ".join(f"{self.count(n)} {n}" for n in names)


def article_files(root: Path) -> list[Path]:
    """The article files under `root`, at any depth, sorted; hidden ones are skipped."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in KINDS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


@dataclass(frozen=True, slots=True)
class Source:
    """One argument of an import: a directory (`root`) or a single file (`root` None)."""

    root: Path | None
    drafts: list[ArticleDraft]

    def shown(self, path: str) -> str:
        if self.root is None:
            return Path(path).name
        return Path(path).relative_to(self.root).as_posix()


def collect(paths: Sequence[Path]) -> list[Source]:
    """Every argument parsed: every file is read before anything is stored, so a broken one
    stops the import before it starts."""
    found: list[Source] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            found.append(Source(root, [read_article(p) for p in article_files(root)]))
        elif path.is_file():
            found.append(Source(None, [read_article(path)]))
        else:
            raise ConfigurationError(f"{path}: no such file or directory")
    return found


async def import_paths(db: Database, paths: Sequence[Path]) -> ImportReport:
    """Import articles from files and directories, in one transaction."""
    report = ImportReport()
    sources = collect(paths)
    async with db.transaction() as session:
        for source in sources:
            for draft in source.drafts:
                article, change = await kb.put_article(session, draft)
                report.changes.append(
                    ArticleChange(
                        change,
                        draft.path,
                        source.shown(draft.path),
                        article.title,
                        len(draft.sections),
                    )
                )
            if source.root is not None:
                keep = [d.path for d in source.drafts]
                for path in await kb.remove_missing(session, source.root.as_posix(), keep):
                    report.changes.append(ArticleChange("removed", path, source.shown(path)))
    return report
