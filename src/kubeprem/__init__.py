"""kubeprem: highly-available Kubernetes on on-premises machines, and stateful
applications on it. See docs in the README; layers in DESIGN.md."""

__version__ = "0.1.0"
