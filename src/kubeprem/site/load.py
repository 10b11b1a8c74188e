"""Load a site file into a ``Site``, or fail with ``file:line:column`` errors.

Called by every command that takes a site file. YAML is read with
ruamel.yaml (YAML 1.2: ``no`` stays a string, duplicate keys are errors),
converted to plain Python values while remembering where each value stood,
validated by the pydantic model, then by the cross-field checks.
"""

from __future__ import annotations

import contextlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kubeprem.errors import Location, SiteError
from kubeprem.site.checks import check_site
from kubeprem.site.model import Site

YPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Marks:
    """Where each key and value of a loaded document stood in its file."""

    file: str
    keys: dict[YPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[YPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: YPath, *, key: bool = False) -> Location:
        """The location of ``path``'s value (or key), else its nearest parent."""
        p = tuple(path)
        while True:
            table = self.keys if key else self.values
            if p in table:
                line, col = table[p]
                return Location(self.file, line + 1, col + 1)
            if p in self.keys:
                line, col = self.keys[p]
                return Location(self.file, line + 1, col + 1)
            if not p:
                return Location(self.file, 1, 1)
            p = p[:-1]


@dataclass(frozen=True)
class LoadedSite:
    """A validated site plus where it came from."""

    site: Site
    path: Path
    marks: Marks

    @property
    def state_dir(self) -> Path:
        """``.kubeprem/<cluster>/`` beside the site file: PKI, keys, state."""
        return self.path.parent / ".kubeprem" / self.site.cluster.name

    def ssh_key(self, machine_name: str | None = None) -> Path:
        """The SSH private key for a machine (or the site default)."""
        key = self.site.ssh.key
        if machine_name is not None:
            override = self.site.machine(machine_name).ssh.key
            key = override or key
        if key is None:
            return self.state_dir / "ssh" / "id_ed25519"
        return resolve_relative(self.path, key)


def resolve_relative(site_path: Path, value: str) -> Path:
    """A path from the site file: ``~`` expanded, relative to the file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else site_path.parent / p


def _plain(node: Any, path: YPath, marks: Marks) -> Any:
    """Plain dicts/lists/scalars from ruamel's nodes, recording positions."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for k, v in node.items():
            child = (*path, str(k))
            try:
                kl, kc, vl, vc = node.lc.key(k) + node.lc.value(k)
                marks.keys[child] = (kl, kc)
                marks.values[child] = (vl, vc)
            except (KeyError, TypeError):
                pass
            out[str(k)] = _plain(v, child, marks)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            child = (*path, i)
            with contextlib.suppress(KeyError, TypeError):
                line, col = node.lc.item(i)
                marks.values[child] = (line, col)
            items.append(_plain(v, child, marks))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def to_plain(node: Any, file: str) -> tuple[Any, Marks]:
    """Plain Python values from a ruamel document, with where each stood.
    Shared by the site loader and the manifest audit."""
    marks = Marks(file)
    return _plain(node, (), marks), marks


def parse_yaml(text: str, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document; syntax errors and duplicate keys raise SiteError."""
    marks = Marks(file)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = (exc.problem or "invalid YAML").strip()
        ctx = exc.context_mark
        if exc.context and ctx is not None and mark is not None and ctx.line != mark.line:
            problem += f" ({exc.context.strip()} started at line {ctx.line + 1})"
        if "duplicate key" in problem or "found duplicate key" in str(exc):
            problem = problem.split("\n")[0] + "; each key may appear once in a mapping"
        raise SiteError(loc, f"YAML: {problem}") from exc
    except YAMLError as exc:
        raise SiteError(Location(file), f"YAML: {str(exc).splitlines()[0]}") from exc
    return _plain(doc, (), marks), marks


def _field_names(loc: YPath) -> list[str] | None:
    """The keys allowed at ``loc`` (a path into Site), for 'unknown key' help."""
    model: Any = Site
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``list[X]``, ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (list, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _dotted(loc: YPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _describe(err: Any) -> tuple[YPath, bool, str]:
    """(path, points-at-key, message) for one pydantic error."""
    loc: YPath = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    kind = err["type"]
    where = _dotted(loc)
    if kind == "extra_forbidden":
        allowed = _field_names(loc[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return loc, True, f"unknown key '{loc[-1]}'{hint}"
    if kind == "missing":
        parent = _dotted(loc[:-1])
        return loc[:-1], True, f"missing required key '{loc[-1]}' in {parent}"
    if kind in ("string_type", "str_type") and isinstance(err.get("input"), int | float):
        return (
            loc,
            False,
            (
                f"{where}: expected text, got the number {err['input']!r}; "
                f'quote it, e.g. "{err["input"]}"'
            ),
        )
    if kind == "string_pattern_mismatch":
        if loc[-1:] == ("kubernetes_version",):
            return loc, False, f"{where}: '{err['input']}' is not a version like \"1.20.2\""
        if loc[-1:] in (("name",),):
            return (
                loc,
                False,
                (
                    f"{where}: '{err['input']}' is not a valid name; use lower-case letters, "
                    "digits and '-', starting and ending with a letter or digit"
                ),
            )
    if kind == "literal_error":
        return loc, False, f"{where}: {err['msg'].replace('Input should be', 'must be')}"
    msg = str(err["msg"]).replace("Input should be", "must be").replace("Value error, ", "")
    return loc, False, f"{where}: {msg} (got {err.get('input')!r})"


def parse_site(text: str, file: str) -> tuple[Site, Marks]:
    """Parse and validate a site from text; raises SiteError with every problem."""
    data, marks = parse_yaml(text, file)
    if data is None:
        raise SiteError(
            Location(file, 1, 1),
            "the site file is empty; start from `kubeprem init > site.yaml`",
        )
    if not isinstance(data, dict):
        raise SiteError(
            marks.locate(()),
            f"the site file must be a mapping of keys (cluster, api, machines, ...), "
            f"not a {type(data).__name__}",
        )
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path, is_key, message = _describe(err)
            problems.append((marks.locate(path, key=is_key), message))
        raise SiteError.many(problems) from None
    problems = [(marks.locate(path, key=is_key), msg) for path, is_key, msg in check_site(site)]
    if problems:
        raise SiteError.many(problems)
    return site, marks


def load_site(path: str | Path, *, check_files: bool = True) -> LoadedSite:
    """Read, parse and check a site file. ``check_files`` also checks that
    files it names (SSH keys, image archives) exist."""
    p = Path(path)
    if not p.exists():
        raise SiteError(
            Location(str(p)), "no such file; create one with `kubeprem init > site.yaml`"
        )
    if p.is_dir():
        raise SiteError(Location(str(p)), "is a folder; give the site file (site.yaml)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteError(Location(str(p)), f"cannot read: {exc}") from exc
    site, marks = parse_site(text, str(p))
    loaded = LoadedSite(site=site, path=p.resolve(), marks=marks)
    if check_files:
        problems = []
        keys: list[tuple[YPath, str | None]] = [(("ssh", "key"), site.ssh.key)]
        keys += [(("machines", i, "ssh", "key"), m.ssh.key) for i, m in enumerate(site.machines)]
        for ypath, key in keys:
            if key is not None and not resolve_relative(loaded.path, key).is_file():
                problems.append(
                    (
                        marks.locate(ypath),
                        f"SSH key file '{key}' does not exist "
                        f"(looked at {resolve_relative(loaded.path, key)}); create it with "
                        f"`ssh-keygen -t ed25519 -N '' -f {key}`, or remove the key to let "
                        "kubeprem create and use its own",
                    )
                )
        for i, image in enumerate(site.images):
            if image.archive and not resolve_relative(loaded.path, image.archive).is_file():
                problems.append(
                    (
                        marks.locate(("images", i, "archive")),
                        f"image archive '{image.archive}' does not exist",
                    )
                )
        if problems:
            raise SiteError.many(problems)
    return loaded
