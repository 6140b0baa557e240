"""``python -m kvgraph``: the command line."""

from kvgraph.cli.main import main

main()
