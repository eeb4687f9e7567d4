"""RFC 6241 §8.9 XPath filters (capability :xpath:1.0), evaluated by libyang.

The data tree is parsed into libyang, the expression evaluated there, and every matching
node is copied with its ancestors (list entries keep their keys) into a fresh <data>.

Prefixes in the expression come from the namespace declarations in scope of the <filter>
(RFC 6241 §8.9.1); libyang wants module names, so each prefix is rewritten. Like other
servers we are forgiving: an undeclared prefix may be a module's name or YANG prefix, and
unprefixed names resolve to whichever of our modules has such a node (libyang's own rule),
so `/qkd_node/qkd_links` works as users type it.

Expressions are evaluated in a libyang context of their own that holds the schema's modules
and our ietf-netconf-monitoring (RFC 6022), so one expression can select in both the node
tree and /netconf-state; the schema's context stays as the datastore validates with it.
The same evaluation filters notifications of an RFC 5277 subscription.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import libyang
from _libyang import ffi  # type: ignore[import-not-found]
from libyang.util import DataType
from lxml import etree

from agents.netconf.errors import BASE_NS, ErrorTag, ErrorType, NetconfError, base_element
from agents.netconf.monitoring import MODULE_PATH, MONITORING_MODULE, MONITORING_NS
from yang.schema import Schema

log = logging.getLogger(__name__)

XPATH_CAPABILITY = "urn:ietf:params:netconf:capability:xpath:1.0"

# XPath 1.0 lexical pieces that matter for prefixes: string literals (left untouched),
# axis names ("child::"), prefixed names ("p:name", "p:*") and plain names.
_NAME = r"[^\W\d][\w.\-]*"
_TOKEN = re.compile(
    rf"""
    (?P<literal>'[^']*'|"[^"]*")
  | (?P<axis>{_NAME}\s*::)
  | (?P<qname>(?P<prefix>{_NAME}):(?P<local>{_NAME}|\*))
  | (?P<name>{_NAME})
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_PREFIXED_VALUE = re.compile(rf"(?P<prefix>{_NAME}):(?P<local>{_NAME})")


def select_by_filter(
    schema: Schema, wrapper: etree._Element, filter_element: etree._Element
) -> etree._Element:
    """What a <filter type="xpath" select="..."> selects from a <data> wrapper."""
    return select_xpath(schema, wrapper, select_of(filter_element), filter_element.nsmap)


def select_of(filter_element: etree._Element) -> str:
    """The expression of an XPath <filter>; a missing one is the client's error."""
    select = filter_element.get("select")
    if select is None:
        raise NetconfError.of(
            ErrorType.PROTOCOL,
            ErrorTag.MISSING_ATTRIBUTE,
            'an XPath filter needs a "select" attribute',
            info=(("bad-attribute", "select"), ("bad-element", "filter")),
        )
    return select


def select_xpath(
    schema: Schema,
    wrapper: etree._Element,
    select: str,
    nsmap: Mapping[str | None, str],
) -> etree._Element:
    """A new <data> (same name as `wrapper`) with the nodes `select` matches and their
    ancestors. Nothing matched: an empty <data/>. A bad expression: invalid-value.
    """
    name = etree.QName(wrapper)
    data = base_element(name.localname, name.namespace or BASE_NS)
    scope = _scope(schema)
    expression = to_libyang_xpath(select, nsmap, scope.modules)
    roots = [child for child in wrapper if isinstance(child.tag, str)]
    if not roots:
        return data
    if expression.strip() in ("/", "/."):  # the document root: everything
        data.extend(etree.fromstring(etree.tostring(root)) for root in roots)
        return data
    with scope.lock:
        tree = _parse(scope.context, roots)
        if tree is None:
            return data
        try:
            text = _selected_xml(_evaluate(tree, expression, select))
        finally:
            tree.free()
    if not text:
        return data
    # Parsed in one piece, never moved: lxml drops a declaration such as xmlns:ncm on
    # <transport> when the element moves under one declaring the same URI as default,
    # and the identityref value "ncm:netconf-ssh" would lose its prefix.
    local, namespace = name.localname, name.namespace or BASE_NS
    return etree.fromstring(f'<{local} xmlns="{namespace}">{text}</{local}>', _safe_parser())


def check_xpath(schema: Schema, select: str, nsmap: Mapping[str | None, str]) -> None:
    """invalid-value unless `select` is an XPath 1.0 expression whose prefixes resolve."""
    scope = _scope(schema)
    expression = to_libyang_xpath(select, nsmap, scope.modules)
    # lxml compiles XPath 1.0 without evaluating it: a syntax check with our module names.
    names = {module: f"urn:module:{module}" for module in set(scope.modules.values())}
    try:
        etree.XPath(expression, namespaces=names)
    except etree.XPathSyntaxError as error:
        raise _invalid(f"invalid XPath {select!r}: {error}") from None


def notification_matches(
    schema: Schema, event: etree._Element, select: str, nsmap: Mapping[str | None, str]
) -> bool:
    """Whether `select` selects anything in a notification's content (RFC 5277 §3.6).

    libyang evaluates it; should libyang fail on an event the publisher validated, the
    failure is logged and the expression is evaluated again by lxml on local names
    (`_matches_by_local_names`): a filtered subscription never loses a matching event
    to an error of the evaluator.
    """
    scope = _scope(schema)
    try:
        expression = to_libyang_xpath(select, nsmap, scope.modules)
    except NetconfError as error:  # checked at subscribe: only a changed schema gets here
        log.warning("XPath filter %r no longer resolves: %s", select, error)
        return False
    text = etree.tostring(event, encoding="unicode")
    with scope.lock:
        try:
            tree = scope.context.parse_op_mem("xml", text, DataType.NOTIF_YANG)
        except libyang.LibyangError as error:
            log.warning("libyang cannot read notification <%s>: %s", _name(event), error)
            return _matches_by_local_names(event, select)
        if tree is None:
            log.warning("libyang read notification <%s> as empty", _name(event))
            return _matches_by_local_names(event, select)
        try:
            return bool(list(tree.find_all(expression)))
        except libyang.LibyangError as error:
            log.warning(
                "libyang failed on XPath filter %r for <%s>: %s", select, _name(event), error
            )
            return _matches_by_local_names(event, select)
        finally:
            tree.free()


def _name(event: etree._Element) -> str:
    return etree.QName(event).localname


def _matches_by_local_names(event: etree._Element, select: str) -> bool:
    """The fallback evaluation: namespaces and prefixes dropped from event and expression
    alike (names of this schema are unique enough for a notification's content)."""
    plain = etree.fromstring(etree.tostring(event), _safe_parser())
    for element in plain.iter():
        if isinstance(element.tag, str):
            element.tag = etree.QName(element).localname
            if element.text and _PREFIXED_VALUE.fullmatch(element.text.strip()):
                element.text = element.text.strip().partition(":")[2]
    etree.cleanup_namespaces(plain)
    parts: list[str] = []
    previous: str | None = None
    for token in _TOKEN.finditer(select):
        text = token.group(0)
        if previous is None and token.group("name") is not None:
            parts.append("/")  # a relative path starts at the root, as in RFC 6241 §8.9
        if token.group("prefix") is not None:
            text = token.group("local")
        elif token.group("literal") is not None:
            match = _PREFIXED_VALUE.fullmatch(text[1:-1])
            text = text if match is None else f"{text[0]}{match.group('local')}{text[0]}"
        if not text.isspace():
            previous = text
        parts.append(text)
    document = etree.ElementTree(plain)
    try:
        found = document.xpath("".join(parts))
    except etree.XPathError as error:
        log.warning("XPath filter %r cannot be evaluated: %s", select, error)
        return False
    return bool(found)


def to_libyang_xpath(
    select: str, nsmap: Mapping[str | None, str], modules: Mapping[str, str]
) -> str:
    """`select` as libyang evaluates it from the first data node: every XML prefix (also in
    identityref literals such as 't:PHYS') becomes its module name, and a relative location
    path outside predicates is anchored at the root, its context node in RFC 6241 §8.9.

    `modules` maps each implemented module's namespace, name and YANG prefix to its name.
    """
    parts: list[str] = []
    depth = 0  # predicate nesting: inside [...] relative paths keep their context
    previous: str | None = None  # the last token that is not blank
    for token in _TOKEN.finditer(select):
        text = token.group(0)
        if depth == 0 and previous in _PATH_STARTERS and _starts_a_path(token, select):
            parts.append("/")
        if token.group("prefix") is not None:
            prefix, local = token.group("prefix"), token.group("local")
            text = f"{_module_of(prefix, nsmap, modules)}:{local}"
        elif token.group("literal") is not None:
            text = _literal(text, nsmap, modules)
        depth += {"[": 1, "]": -1}.get(text, 0)
        if not text.isspace():
            previous = text
        parts.append(text)
    return "".join(parts)


# Tokens after which (outside predicates) a relative location path starts; None: the start.
_PATH_STARTERS = frozenset({None, "|", "(", ","})


def _starts_a_path(token: re.Match[str], select: str) -> bool:
    """A name test, axis, '*', '@' or '.' that begins a location path (no function call)."""
    if token.group("other") is not None:
        return token.group(0) in ("*", "@", ".")
    if token.group("literal") is not None:
        return False
    if token.group("axis") is not None:
        return True
    return not select[token.end() :].lstrip().startswith("(")


def _literal(text: str, nsmap: Mapping[str | None, str], modules: Mapping[str, str]) -> str:
    """An identityref literal 'p:name' with a declared XML prefix p, as 'module:name'."""
    quote, value = text[0], text[1:-1]
    match = _PREFIXED_VALUE.fullmatch(value)
    namespace = nsmap.get(match.group("prefix")) if match is not None else None
    module = modules.get(namespace) if namespace is not None else None
    if match is None or module is None:
        return text  # any other string stays as written
    return f"{quote}{module}:{match.group('local')}{quote}"


def _module_of(prefix: str, nsmap: Mapping[str | None, str], modules: Mapping[str, str]) -> str:
    namespace = nsmap.get(prefix)
    if namespace is not None:
        module = modules.get(namespace)
        if module is None:
            raise _invalid(
                f"prefix {prefix!r} is bound to namespace {namespace!r}, "
                "which no module of this agent has"
            )
        return module
    module = modules.get(prefix)
    if module is None:
        raise _invalid(
            f"prefix {prefix!r} is not declared (declare it with xmlns:{prefix} on the filter)"
        )
    return module


@dataclass(frozen=True)
class _Scope:
    """The libyang context expressions run in, and how prefixes map to its modules."""

    context: libyang.Context
    modules: Mapping[str, str]  # namespace, module name or YANG prefix → module name
    # One evaluation at a time: the scope is shared by every agent of the process, and a
    # test or a process may run agents on several threads' event loops.
    lock: threading.Lock


@functools.cache
def _scope(schema: Schema) -> _Scope:
    """Built once per schema (a Schema is immutable and shared by a process's agents)."""
    schema_context: libyang.Context = schema.context
    namespaces = {MONITORING_MODULE: MONITORING_NS}
    for uri in schema.capabilities():
        namespace, _, query = uri.partition("?module=")
        namespaces[query.partition("&")[0]] = namespace
    names = [name for name in namespaces if name != MONITORING_MODULE]
    modules = [schema_context.get_module(name) for name in names]
    directories = {os.path.dirname(str(module.filepath())) for module in modules}
    directories.add(str(MODULE_PATH.parent))
    context = libyang.Context(":".join(sorted(directories)))
    implemented = [module.name() for module in modules if module.implemented()]
    for name in (*implemented, MONITORING_MODULE):
        context.load_module(name)
    return _Scope(context, _module_names(context, namespaces), threading.Lock())


def _module_names(context: libyang.Context, namespaces: Mapping[str, str]) -> dict[str, str]:
    """Namespace, module name and YANG prefix of each module → module name."""
    found: dict[str, str] = {}
    for name, namespace in namespaces.items():
        found[namespace] = name
        found[name] = name
        found.setdefault(str(context.get_module(name).prefix()), name)
    return found


def _parse(context: libyang.Context, roots: list[etree._Element]) -> Any:
    text = "".join(etree.tostring(root, encoding="unicode") for root in roots)
    try:
        # parse_only: no validation, so no defaults are added to what the datastore holds.
        return context.parse_data_mem(text, "xml", parse_only=True, strict=True)
    except libyang.LibyangError as exc:
        raise NetconfError.of(
            ErrorType.APPLICATION, ErrorTag.OPERATION_FAILED, f"cannot read the data: {exc}"
        ) from None


def _evaluate(tree: Any, expression: str, select: str) -> list[Any]:
    try:
        return list(tree.find_all(expression))
    except libyang.LibyangError as exc:
        errors = getattr(exc, "errors", ())
        reason = "; ".join(error.message for error in errors) or str(exc)
        raise _invalid(f"invalid XPath {select!r}: {reason}") from None


def _address(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def _outermost(nodes: list[Any]) -> Iterator[Any]:
    """The nodes that have no selected ancestor (their copy holds the others)."""
    chosen = {_address(node.cdata) for node in nodes}
    for node in nodes:
        parent = node.cdata.parent
        while parent and _address(parent) not in chosen:
            parent = parent.parent
        if not parent:
            yield node


def _selected_xml(nodes: list[Any]) -> str:
    """The nodes with their ancestors (list entries with their keys), serialized."""
    merged: Any = None
    try:
        for node in _outermost(nodes):
            copy = node.duplicate(with_parents=True, recursive=True).root()
            if merged is None:
                merged = copy
                continue
            try:
                merged.merge(copy, with_siblings=True)
            finally:
                copy.free()
        if merged is None:
            return ""
        return str(merged.print_mem("xml", with_siblings=True, pretty=False))
    finally:
        if merged is not None:
            merged.free()


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _invalid(message: str) -> NetconfError:
    return NetconfError.of(ErrorType.PROTOCOL, ErrorTag.INVALID_VALUE, message)
