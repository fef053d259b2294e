"""The canvas: workflow shapes, the DAG they compile to, its wire format and views.

Pure code: nothing here does I/O or imports a broker; the runtime does that.
"""

from flowq.canvas.chain import Chain, chain
from flowq.canvas.chord import Chord, chord
from flowq.canvas.dag import Node, Workflow, compile_workflow
from flowq.canvas.fanout import Fanout, fanout
from flowq.canvas.group import Group, group
from flowq.canvas.signature import Canvas, Signature, signature
from flowq.canvas.stamping import StampingVisitor

__all__ = ["Canvas", "Chain", "Chord", "Fanout", "Group", "Node", "Signature",
           "StampingVisitor", "Workflow", "chain", "chord", "compile_workflow", "fanout",
           "group", "signature"]
