"""Reports written by kubeprem: PNG timelines of chaos scenarios (``png``,
``timeline``), without a plotting library."""
