"""Container images for clusters without a registry.

The catalogue (``catalogue``) lists every image kubeprem uses; the builder
(``builder``) makes them from Debian packages into deterministic archives
(``archive``) in a cache; apply calls ``image_archives`` and imports each
archive on every node with ``ctr -n k8s.io images import``.
"""

from kubeprem.images.builder import (
    ImageArchive,
    ImageStatus,
    build_images,
    default_cache,
    image_archives,
    image_refs,
    list_images,
)
from kubeprem.images.catalogue import CATALOGUE, ImageSpec

__all__ = [
    "CATALOGUE",
    "ImageArchive",
    "ImageSpec",
    "ImageStatus",
    "build_images",
    "default_cache",
    "image_archives",
    "image_refs",
    "list_images",
]
