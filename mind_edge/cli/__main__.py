"""``python -m mind_edge.cli``: the ``mind-edge`` command (e.g. on a device where only the module path is known)."""

from mind_edge.cli import main

main()
