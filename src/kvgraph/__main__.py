"""``python -m kvgraph``: the command line."""

from kvgraph.cli.main import main

main(prog_name="kvgraph")  # usage lines and shell completion (_KVGRAPH_COMPLETE) say kvgraph
