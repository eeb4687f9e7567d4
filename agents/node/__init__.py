"""One emulated QKD node, split by job (backend, events, key streams, NodeLink) over agents/emulator/."""

from agents.emulator.hardware import LinkReport, NodeStatus
from agents.emulator.site import Site
from agents.node.qkd_node import QkdNode
from agents.node.settings import NodeSettings

__all__ = ["LinkReport", "NodeSettings", "NodeStatus", "QkdNode", "Site"]
