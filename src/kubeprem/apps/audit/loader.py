"""Read manifests from files, folders and stdin, remembering each object's lines.

The only module of the audit that reads files. YAML (and JSON, which ruamel
reads as YAML) is parsed with ruamel.yaml, multi-document streams and
``kind: List`` objects are split into objects, and every key and list item
keeps its line. Unreadable input raises ``ManifestError`` (exit status 2) as
``file:line: message``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kubeprem.apps.audit.model import Manifest, YPath
from kubeprem.errors import InputError, Location
from kubeprem.site.load import to_plain

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(InputError):
    """A manifest file cannot be read or is not a Kubernetes object."""

    def __init__(self, location: Location, message: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}")


def _lines(raw: Any, file: str) -> tuple[Any, dict[YPath, int]]:
    """Plain values and the 1-based line of every mapping key and list item."""
    plain, marks = to_plain(raw, file)
    lines: dict[YPath, int] = {p: line + 1 for p, (line, _) in marks.keys.items()}
    for p, (line, _) in marks.values.items():
        if p and isinstance(p[-1], int):
            lines[p] = line + 1
    return plain, lines


def _start_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else None


def _sub_lines(lines: Mapping[YPath, int], prefix: YPath) -> dict[YPath, int]:
    n = len(prefix)
    return {p[n:]: line for p, line in lines.items() if p[:n] == prefix}


def _objects(doc: Any, raw: Any, file: str) -> list[Manifest]:
    plain, lines = _lines(raw, file)
    top = [n for p, n in lines.items() if len(p) == 1]
    line = min(top) if top else _start_line(raw)
    where = Location(file, line)
    if not isinstance(plain, dict):
        kind = "a list" if isinstance(plain, list) else f"the value {plain!r}"
        raise ManifestError(where, f"expected a Kubernetes object (a mapping), found {kind}")
    if not isinstance(plain.get("kind"), str) or not plain["kind"]:
        raise ManifestError(where, "not a Kubernetes object: it has no 'kind'")
    if plain["kind"].endswith("List") and isinstance(plain.get("items"), list):
        out: list[Manifest] = []
        for i, item in enumerate(plain["items"]):
            item_lines = _sub_lines(lines, ("items", i))
            item_top = [n for p, n in item_lines.items() if len(p) == 1]
            item_line = min(item_top) if item_top else lines.get(("items", i), line)
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                raise ManifestError(
                    Location(file, item_line), f"item {i} of the List is not a Kubernetes object"
                )
            out.append(Manifest(item, file, item_line, item_lines))
        return out
    return [Manifest(plain, file, line, lines)]


def parse_manifests(text: str, file: str) -> list[Manifest]:
    """Every object in a YAML or JSON text (several documents, List objects)."""
    yaml = YAML(typ="rt")
    try:
        docs = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = (exc.problem or exc.context or "invalid YAML").strip().splitlines()[0]
        raise ManifestError(loc, f"YAML: {problem}") from exc
    except YAMLError as exc:
        if file.endswith(".json"):
            return _parse_json(text, file)
        raise ManifestError(Location(file), f"YAML: {str(exc).splitlines()[0]}") from exc
    out: list[Manifest] = []
    for doc in docs:
        if doc is not None:
            out.extend(_objects(doc, doc, file))
    return out


def _parse_json(text: str, file: str) -> list[Manifest]:
    """JSON that YAML refuses (tabs in odd places): no lines below the document."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(Location(file, exc.lineno, exc.colno), f"JSON: {exc.msg}") from exc
    return _objects(data, data, file)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise ManifestError(Location(str(path)), "folder holds no *.yaml, *.yml or *.json file")
        return found
    if path.is_file():
        return [path]
    raise ManifestError(Location(str(path)), "no such file or folder")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(Location(str(path)), "not UTF-8 text") from exc
    except OSError as exc:
        raise ManifestError(Location(str(path)), exc.strerror or str(exc)) from exc


def load_paths(paths: Iterable[str], stdin: TextIO | None = None) -> list[Manifest]:
    """The objects in ``paths``: files, folders (recursively) and ``-`` for stdin."""
    out: list[Manifest] = []
    for arg in paths:
        if arg == "-":
            out.extend(parse_manifests((stdin or sys.stdin).read(), "<stdin>"))
            continue
        for file in _files(Path(arg)):
            out.extend(parse_manifests(_read(file), str(file)))
    return out
