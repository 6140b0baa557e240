"""Questions over the Cypher graph: vectors on graph nodes (:mod:`~kvgraph.graphqa.node_index`),
text-to-Cypher (:mod:`~kvgraph.graphqa.text2cypher`), the router that picks the vector or the
graph tool (:mod:`~kvgraph.graphqa.router`) and the answer that combines them
(:mod:`~kvgraph.graphqa.ask`).
"""
