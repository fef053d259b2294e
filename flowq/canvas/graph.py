"""The graph view of a workflow: a ``networkx.DiGraph`` for inspection and drawing.

Node keys are positions; attributes: ``kind``, ``task``, ``args``, ``kwargs``,
``options``, ``immutable``, ``path``, ``id``, ``deferred``. Edge ``flow`` is ``result``
(value passed as first argument), ``after`` (waits, value not passed: immutable step),
``member`` (with ``index``: position in a join) or ``errback``. ``graph["output"]`` is
the node holding the workflow's result.
"""

from __future__ import annotations

import networkx as nx

from flowq.canvas.dag import JOIN, Workflow
from flowq.canvas.frozen import thaw


def to_graph(workflow: Workflow, with_ids: bool = True) -> nx.DiGraph:
    """The graph of ``workflow``; ``with_ids=False`` for a workflow not sent (its ids
    would be those of one arbitrary compile)."""
    graph = nx.DiGraph(output=workflow.output, root_id=workflow.seed if with_ids else None)
    for position, node in enumerate(workflow.nodes):
        graph.add_node(position, kind=node.kind, task=node.task, args=tuple(thaw(node.args)),
                       kwargs=thaw(node.kwargs), options=thaw(node.options),
                       immutable=node.immutable, path=node.path,
                       id=workflow.node_id(position) if with_ids else None,
                       deferred=node.deferred)
        if node.input is not None:
            graph.add_edge(node.input, position, flow="after" if node.immutable else "result")
        for index, member in enumerate(node.members):
            graph.add_edge(member, position, flow="member", index=index)
    for scope in workflow.scopes:
        for position in range(scope.lo, scope.hi):
            if workflow.nodes[position].kind != JOIN:
                for errback in scope.errbacks:
                    graph.add_edge(position, errback, flow="errback")
    return graph
