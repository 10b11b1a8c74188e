"""The site model and its loading: the one input every command shares."""

from importlib.resources import files

from kubeprem.site.load import LoadedSite, load_site, parse_site
from kubeprem.site.model import Machine, Site


def example_text() -> str:
    """The commented example site that `kubeprem init` prints."""
    return (files("kubeprem.site") / "example.yaml").read_text(encoding="utf-8")


__all__ = ["LoadedSite", "Machine", "Site", "example_text", "load_site", "parse_site"]
