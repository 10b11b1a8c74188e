"""YAML text for everything kubeprem renders (manifests, configs), one way.

Block style, keys in insertion order, multi-line strings as literal blocks,
long lines never folded (a PromQL expression or a certificate stays whole).
The representer is a subclass of ruamel's, so nothing global is changed.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.representer import SafeRepresenter


class _Representer(SafeRepresenter):
    pass


def _str(dumper: SafeRepresenter, data: str) -> Any:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Representer.add_representer(str, _str)


def dump_yaml(*docs: Any) -> str:
    """One document per argument, joined by ``---``."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep key order
    out = []
    for doc in docs:
        buf = io.StringIO()
        yaml.dump(doc, buf)
        out.append(buf.getvalue())
    return "---\n".join(out)
