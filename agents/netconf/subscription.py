"""An RFC 5277 subscription of one session: which notifications it gets."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from agents.netconf.subtree import filter_subtree
from agents.netconf.xpath import notification_matches
from yang.schema import Schema


@dataclass(frozen=True)
class XPathSelect:
    """An XPath filter: the expression and the prefixes declared where it was written."""

    expression: str
    nsmap: tuple[tuple[str | None, str], ...]


@dataclass(frozen=True)
class Subscription:
    """An RFC 5277 subscription: the NETCONF stream, optionally filtered.

    At most one of the two filters is set; neither: every notification.
    """

    filter_nodes: tuple[etree._Element, ...] | None  # a subtree filter's nodes
    select: XPathSelect | None = None

    def content_of(self, event: etree._Element, schema: Schema) -> etree._Element | None:
        """What of `event` (the element inside <notification>) this subscriber gets;
        None: nothing, its filter does not match."""
        if self.select is not None:
            nsmap = dict(self.select.nsmap)
            matched = notification_matches(schema, event, self.select.expression, nsmap)
            return event if matched else None
        if self.filter_nodes is None:
            return event
        content = filter_subtree([event], self.filter_nodes)
        return content[0] if content else None
