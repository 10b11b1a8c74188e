"""Values files for apps: YAML read with file:line errors, validated by each app's model.

Called by the ``app`` commands. Parsing reuses the site loader's
``parse_yaml`` (positions of every key and value); validation errors
become ``SiteError`` (an ``InputError``, exit 2) pointing at the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kubeprem.errors import Location, SiteError
from kubeprem.site.load import parse_yaml

M = TypeVar("M", bound="Values")

Quantity = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$")
]
Name = Annotated[
    str, StringConstraints(strict=True, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
Spread = Literal["preferred", "required"]
# the cluster's DNS domain (site file: cluster.domain; `app` commands fill it
# in from the site unless the values file sets it)
ClusterDomain = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourcesV(_Model):
    cpu: Quantity
    memory: Quantity
    cpu_limit: Quantity | None = None


class StorageV(_Model):
    size: Quantity = "1Gi"
    # a StorageClass name, or null for the cluster's default class
    storage_class: Name | None = Field(default="local", alias="class")


class Values(_Model):
    namespace: Name


def load_values(model: type[M], path: str | Path | None) -> M:
    """The app's defaults, overridden by the values file when one is given."""
    if path is None:
        return model.model_validate({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteError(Location(str(p)), f"cannot read the values file: {exc}") from exc
    return parse_values(model, text, str(p))


def parse_values(model: type[M], text: str, file: str) -> M:
    data, marks = parse_yaml(text, file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SiteError(marks.locate(()), "a values file is a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            where = ".".join(str(p) for p in loc) or "(top level)"
            if err["type"] == "extra_forbidden":
                parent = loc[:-1]
                allowed = _allowed(model, parent)
                hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
                msg = f"unknown key '{loc[-1]}'{hint}"
                problems.append((marks.locate(loc, key=True), msg))
            else:
                text_msg = str(err["msg"]).replace("Input should be", "must be")
                text_msg = text_msg.replace("Value error, ", "")
                problems.append(
                    (marks.locate(loc), f"{where}: {text_msg} (got {err.get('input')!r})")
                )
        raise SiteError.many(problems) from None


def _allowed(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part))
        ann = getattr(info, "annotation", None) if info else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        current = ann
    return [f.alias or n for n, f in current.model_fields.items()]


__all__ = ["Quantity", "ResourcesV", "Spread", "StorageV", "Values", "load_values", "parse_values"]
