"""``python -m kvgraph.cli``: the command line."""

from kvgraph.cli.main import main

main()
