"""The binaries a site's nodes run: the checked cache, its manifest, and the
sources that fill it (a mirror of the upstream release files, Debian's
source and binary packages, or Go modules pinned in this package)."""
