"""The one place that loads the YANG models (libyang) and validates or converts data.

Validation (`validate_*`) checks everything: types, identities, `when`, mandatory nodes.
Conversion (`xml_to_json`, `json_to_xml`, `canonical_xml`) checks every value against its
type and rejects unknown nodes, but not whole-tree constraints (mandatory, `when`), so that
partial trees such as edit-config payloads convert too. Nothing from libyang escapes: its
failures become `ValidationError` values or `SchemaError` exceptions.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import libyang
from _libyang import ffi, lib  # type: ignore[import-not-found]
from libyang.util import DataType
from lxml import etree

__all__ = [
    "CheckedConfig",
    "InvalidDataError",
    "NodeInfo",
    "NodeKind",
    "Schema",
    "SchemaError",
    "ValidationError",
]

YANG_DIR = Path(__file__).resolve().parent
# Implemented modules, in load order (imports are found in YANG_DIR).
IMPLEMENTED_MODULES = (
    "etsi-qkd-node-types",
    "etsi-qkd-sdn-node",
    "qkdsdn-node",
    "ietf-netconf-acm",
)
# The agents' NETCONF subscriptions (RFC 8639 dynamic subscriptions, RFC 8641 YANG-push):
# implemented after the modules above, each with the features the agents support (the
# capabilities advertise them); their imports (ietf-datastores, ietf-yang-patch) come along.
SUBSCRIPTION_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ietf-subscribed-notifications", ("encode-xml", "subtree", "xpath")),
    ("ietf-yang-push", ("on-change",)),
)
NODE_MODULE = "etsi-qkd-sdn-node"
ROOT_NAME = "qkd_node"
NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
# Local names of the envelopes a data tree may come in (any namespace).
DATA_WRAPPERS = frozenset({"config", "data"})

# libyang 2.1 stores an error's location as text: 'Data location "/path", line number 3.',
# 'Schema location "/path".' or both, comma-separated.
_LOCATION = re.compile(r'([Ss]chema|[Dd]ata) location "(.*?)"(?=, |\.|$)')

NodeKind = Literal["container", "list", "leaf", "leaf-list"]


@dataclass(frozen=True)
class ValidationError:
    """One problem of a data tree: where (data path) and what (libyang's message)."""

    path: str
    message: str
    app_tag: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SchemaError(Exception):
    """The models cannot be loaded, or data cannot be converted."""


class InvalidDataError(SchemaError):
    """Data given to a conversion is not valid against the models."""

    def __init__(self, errors: Sequence[ValidationError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(error) for error in self.errors))


@dataclass(frozen=True)
class NodeInfo:
    """What the schema says about one data node (see `Schema.node_info`)."""

    kind: NodeKind
    keys: tuple[str, ...]
    config: bool
    namespace: str
    module: str


@dataclass(frozen=True)
class CheckedConfig:
    """A configuration that passed full validation, printed from that one parsed tree."""

    xml: str  # canonical XML (schema order, no added defaults), as `canonical_xml` prints it
    json: str  # RFC 7951 JSON text, as `xml_to_json` reads it


@dataclass(frozen=True)
class CheckedNode:
    """One top-level node of a valid configuration, printed compact from the parse that
    validated it."""

    namespace: str  # its module's namespace
    name: str  # its RFC 7951 member name, "module:node"
    xml: str  # canonical XML of the node
    json: str  # its RFC 7951 member, '"module:node":{...}' (join with commas inside braces)


class _LibyangFailure(libyang.LibyangError):
    """A libyang error with its structured items (message, data path, app-tag)."""

    def __init__(self, summary: str, errors: tuple[ValidationError, ...]) -> None:
        self.errors = errors or (ValidationError("/", summary),)
        super().__init__(summary)


def _text(cdata: Any) -> str | None:
    if cdata == ffi.NULL:
        return None
    return str(ffi.string(cdata).decode("utf-8", errors="replace"))


class _Context(libyang.Context):
    """A libyang context whose errors keep libyang's separate path, message and app-tag."""

    def error(self, msg: str, *args: object) -> libyang.LibyangError:
        summary = msg % args if args else msg
        errors: list[ValidationError] = []
        if self.cdata:
            item = lib.ly_err_first(self.cdata)
            while item:
                if item.level == lib.LY_LLERR:
                    message = _text(item.msg) or summary
                    path = _location_path(_text(item.path))
                    errors.append(ValidationError(path, message, _text(item.apptag)))
                item = item.next
            lib.ly_err_clean(self.cdata, ffi.NULL)
        return _LibyangFailure(summary, tuple(errors))


def _location_path(location: str | None) -> str:
    """The data path of a libyang location (the instance), else its schema path, else '/'."""
    found = {kind.lower(): path for kind, path in _LOCATION.findall(location or "")}
    return found.get("data") or found.get("schema") or "/"


def _module_namespace(module: libyang.Module) -> str:
    return _text(module.cdata.ns) or ""


def _module_revision(module: libyang.Module) -> str:
    return str(next(iter(module.revisions())).date())


def _xml_parser() -> etree.XMLParser:
    # No DTDs, no entities, no network: the input is untrusted.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _parse_xml(xml: str) -> etree._Element:
    try:
        return etree.fromstring(xml.encode("utf-8"), _xml_parser())
    except (etree.XMLSyntaxError, UnicodeError, ValueError) as exc:
        raise InvalidDataError([ValidationError("/", f"malformed XML: {exc}")]) from None


def _serialize(elements: Sequence[etree._Element]) -> str:
    # lxml copies the namespace declarations in scope, so prefixes used only inside
    # identityref values (declared on an envelope) survive the unwrapping.
    return "".join(
        etree.tostring(element, encoding="unicode", with_tail=False) for element in elements
    )


def _child_elements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _top_level_xml(xml: str, namespaces: frozenset[str]) -> str:
    """The top-level data elements of `xml`: itself, or the children of a config/data envelope.

    A top-level element in a namespace no module has is reported here by name: libyang's
    own message names only the namespace.
    """
    root = _parse_xml(xml)
    elements = [root]
    if etree.QName(root).localname in DATA_WRAPPERS:
        elements = _child_elements(root)
    for element in elements:
        name = etree.QName(element)
        if name.namespace not in namespaces:
            raise InvalidDataError(
                [
                    ValidationError(
                        f"/{name.localname}",
                        f'element "{name.localname}" is in namespace "{name.namespace or ""}"'
                        ", which no loaded YANG module has",
                    )
                ]
            )
    return _serialize(elements)


def _notification_xml(xml: str) -> str:
    """The notification element: itself, or the content of a NETCONF <notification>."""
    root = _parse_xml(xml)
    name = etree.QName(root)
    if name.localname != "notification" or name.namespace != NOTIFICATION_NS:
        return _serialize([root])
    content = [
        child for child in _child_elements(root) if etree.QName(child).namespace != NOTIFICATION_NS
    ]
    if len(content) != 1:
        raise InvalidDataError(
            [ValidationError("/notification", "expected exactly one notification element")]
        )
    return _serialize(content)


def _json_text(doc: object) -> str:
    if not isinstance(doc, dict):
        raise InvalidDataError([ValidationError("/", "expected a JSON object")])
    try:
        return json.dumps(doc)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError([ValidationError("/", f"not JSON: {exc}")]) from None


def _schema_children(node: libyang.SNode) -> Iterator[libyang.SNode]:
    if isinstance(node, libyang.SContainer | libyang.SList):
        yield from node.children()


def _node_kind(node: libyang.SNode) -> NodeKind | None:
    keyword = node.keyword()
    if keyword == "container":
        return "container"
    if keyword == "list":
        return "list"
    if keyword == "leaf":
        return "leaf"
    if keyword == "leaf-list":
        return "leaf-list"
    return None


class Schema:
    """The loaded models. Immutable after construction; share one per process."""

    def __init__(self, yang_dir: Path = YANG_DIR) -> None:
        self._yang_dir = yang_dir
        # libyang stores an error's data path only with the path flag of its log callback
        # set; errors stay stored in the context (never printed), the bindings' default.
        lib.ly_set_log_clb(ffi.NULL, True)
        try:
            self._ctx = _Context(str(yang_dir))
            for name in IMPLEMENTED_MODULES:
                self._ctx.load_module(name)
            for name, features in SUBSCRIPTION_MODULES:
                _load_with_features(self._ctx, name, features)
        except libyang.LibyangError as exc:
            raise SchemaError(f"cannot load the YANG modules from {yang_dir}: {exc}") from None
        self._texts = self._read_module_texts()
        self._namespaces = frozenset(
            _module_namespace(self._ctx.get_module(name)) for name, _ in self._texts
        )
        self._nodes = self._index_nodes()

    @property
    def context(self) -> libyang.Context:
        """The libyang context, for callers that evaluate on libyang trees (XPath filters).
        Read-only use: loading more modules into it would change every other caller's view."""
        return self._ctx

    @staticmethod
    @functools.cache
    def default() -> Schema:
        """The models of this package, loaded once per process."""
        return Schema()

    # -- validation -------------------------------------------------------------------

    def validate_config_xml(self, xml: str) -> list[ValidationError]:
        """Problems of a configuration (no state nodes allowed); [] when valid."""
        return self._validate_xml(xml, with_state=False)

    def validate_data_xml(self, xml: str) -> list[ValidationError]:
        """Problems of configuration plus state data; [] when valid."""
        return self._validate_xml(xml, with_state=True)

    def validate_config_json(self, doc: dict[str, Any]) -> list[ValidationError]:
        """Problems of an RFC 7951 configuration; [] when valid."""
        try:
            text = _json_text(doc)
        except InvalidDataError as exc:
            return list(exc.errors)
        return self._validate_text(text, "json", with_state=False)

    def validate_notification_xml(self, xml: str) -> list[ValidationError]:
        """Problems of a notification (bare, or in a NETCONF <notification>); [] when valid."""
        try:
            text = _notification_xml(xml)
            notification = self._ctx.parse_op_mem("xml", text, DataType.NOTIF_YANG)
        except InvalidDataError as exc:
            return list(exc.errors)
        except libyang.LibyangError as exc:
            return list(_errors_of(exc))
        try:
            notification.validate_op(DataType.NOTIF_YANG)
        except libyang.LibyangError as exc:
            return list(_errors_of(exc))
        finally:
            notification.free()
        return []

    def check_config_xml(self, xml: str) -> CheckedConfig:
        """Validates a configuration like `validate_config_xml` and, when valid, returns its
        canonical XML and RFC 7951 JSON, printed from the same parsed tree (one libyang
        parse instead of three). Raises InvalidDataError with every problem otherwise.
        """
        tree = self._checked_config_tree(xml)
        if tree is None:
            return CheckedConfig("", "{}")
        try:
            # Explicit-mode printing leaves out the defaults validation added.
            return CheckedConfig(
                str(tree.print_mem("xml", with_siblings=True)),
                str(tree.print_mem("json", with_siblings=True)),
            )
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None
        finally:
            tree.free()

    def check_config_nodes(self, xml: str) -> tuple[CheckedNode, ...]:
        """`check_config_xml` printed node by node: each top-level node of a valid
        configuration with its canonical XML and RFC 7951 JSON (compact), in schema order.
        libyang validates the modules whose data are present, so a caller may check the
        modules an edit touched alone when the others are unchanged and already valid.
        Raises InvalidDataError with every problem otherwise.
        """
        tree = self._checked_config_tree(xml)
        if tree is None:
            return ()
        try:
            nodes = []
            for node in tree.first_sibling().siblings():
                module = node.module()
                member = str(node.print_mem("json", pretty=False)).strip()
                nodes.append(
                    CheckedNode(
                        _module_namespace(module),
                        f"{module.name()}:{node.name()}",
                        str(node.print_mem("xml", pretty=False)).strip(),
                        member[1:-1],  # the member inside the object's braces
                    )
                )
            return tuple(nodes)
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None
        finally:
            tree.free()

    def _checked_config_tree(self, xml: str) -> libyang.DNode | None:
        """The validated tree of a configuration (the caller frees it); None when empty.
        Raises InvalidDataError with every problem."""
        text = _top_level_xml(xml, self._namespaces)
        try:
            return self._ctx.parse_data_mem(
                text, "xml", no_state=True, strict=True, validate_present=True
            )
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None

    def merge_state_xml(self, config_xml: str, state_json: str) -> str:
        """The configuration `config_xml` with the RFC 7951 tree `state_json` merged into it
        (list entries matched by their keys), printed compact in schema order. Both are
        checked like conversions; InvalidDataError if either is not valid data.
        """
        try:
            state = json.loads(state_json)
        except ValueError as exc:
            raise InvalidDataError([ValidationError("/", f"not JSON: {exc}")]) from None
        inputs = (
            (_top_level_xml(config_xml, self._namespaces), "xml"),
            (_json_text(state), "json"),
        )
        trees: list[libyang.DNode] = []
        try:
            for text, fmt in inputs:
                tree = self._ctx.parse_data_mem(text, fmt, strict=True, parse_only=True)
                if tree is not None:
                    trees.append(tree)
            if not trees:
                return ""
            for extra in trees[1:]:
                trees[0].merge(extra, with_siblings=True)
            return str(trees[0].print_mem("xml", with_siblings=True, pretty=False))
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None
        finally:
            for tree in trees:
                tree.free()

    # -- conversion -------------------------------------------------------------------

    def xml_to_json(self, xml: str, config_only: bool = False) -> dict[str, Any]:
        """RFC 7951 JSON of an XML tree; with `config_only`, state nodes are an error."""
        text = self._print(
            _top_level_xml(xml, self._namespaces), "xml", "json", with_state=not config_only
        )
        return dict(json.loads(text)) if text else {}

    def json_to_xml(self, doc: dict[str, Any]) -> str:
        """XML of an RFC 7951 tree; identityrefs carry a declared prefix."""
        return self._print(_json_text(doc), "json", "xml", with_state=True)

    def canonical_xml(self, xml: str, config_only: bool = False) -> str:
        """The tree reprinted in schema order, without added defaults."""
        return self._print(
            _top_level_xml(xml, self._namespaces), "xml", "xml", with_state=not config_only
        )

    # -- schema queries ---------------------------------------------------------------

    def node_info(self, path: Sequence[str]) -> NodeInfo | None:
        """The schema node at `path` (element names from qkd_node down), None if unknown."""
        return self._nodes.get(tuple(path))

    def module_texts(self) -> dict[tuple[str, str], str]:
        """The YANG text of every module, by (name, revision), for get-schema."""
        return dict(self._texts)

    def capabilities(self) -> list[str]:
        """NETCONF module capability URIs (`ns?module=name&revision=date`)."""
        uris = []
        features = dict(SUBSCRIPTION_MODULES)
        for name, revision in sorted(self._texts):
            namespace = _module_namespace(self._ctx.get_module(name))
            uri = f"{namespace}?module={name}&revision={revision}"
            if features.get(name):
                uri += "&features=" + ",".join(features[name])
            uris.append(uri)
        return uris

    # -- internals --------------------------------------------------------------------

    def _validate_xml(self, xml: str, with_state: bool) -> list[ValidationError]:
        try:
            text = _top_level_xml(xml, self._namespaces)
        except InvalidDataError as exc:
            return list(exc.errors)
        return self._validate_text(text, "xml", with_state)

    def _validate_text(self, text: str, fmt: str, with_state: bool) -> list[ValidationError]:
        try:
            # validate_present: only modules with data here (not ietf-yang-library's state).
            tree = self._ctx.parse_data_mem(
                text, fmt, no_state=not with_state, strict=True, validate_present=True
            )
        except libyang.LibyangError as exc:
            return list(_errors_of(exc))
        if tree is not None:
            tree.free()
        return []

    def _print(self, text: str, in_fmt: str, out_fmt: str, with_state: bool) -> str:
        try:
            tree = self._ctx.parse_data_mem(
                text, in_fmt, no_state=not with_state, strict=True, parse_only=True
            )
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None
        if tree is None:
            return ""
        try:
            return str(tree.print_mem(out_fmt, with_siblings=True))
        except libyang.LibyangError as exc:
            raise InvalidDataError(_errors_of(exc)) from None
        finally:
            tree.free()

    def _read_module_texts(self) -> dict[tuple[str, str], str]:
        texts: dict[tuple[str, str], str] = {}
        for file in sorted(self._yang_dir.glob("*.yang")):
            name = file.stem.split("@", 1)[0]
            try:
                revision = _module_revision(self._ctx.get_module(name))
            except (libyang.LibyangError, StopIteration):
                raise SchemaError(f"{file} is not a loaded module with a revision") from None
            texts[(name, revision)] = file.read_text(encoding="utf-8")
        return texts

    def _index_nodes(self) -> Mapping[tuple[str, ...], NodeInfo]:
        nodes: dict[tuple[str, ...], NodeInfo] = {}
        # Every implemented module's top-level data nodes (qkd_node, and e.g. nacm).
        stack: list[tuple[tuple[str, ...], libyang.SNode]] = [
            ((node.name(),), node)
            for name in IMPLEMENTED_MODULES
            for node in self._ctx.get_module(name).children()
            if _node_kind(node) is not None
        ]
        while stack:
            path, node = stack.pop()
            kind = _node_kind(node)
            if kind is None:
                continue
            keys: tuple[str, ...] = ()
            if isinstance(node, libyang.SList):
                key_leaves = node.keys()  # the list's key leaves (not a dict)
                keys = tuple(leaf.name() for leaf in key_leaves)
            owner = node.module()
            nodes[path] = NodeInfo(
                kind=kind,
                keys=keys,
                config=not node.config_false(),
                namespace=_module_namespace(owner),
                module=owner.name(),
            )
            stack.extend(((*path, child.name()), child) for child in _schema_children(node))
        return nodes


def _load_with_features(ctx: libyang.Context, name: str, features: Sequence[str]) -> None:
    """Implements module `name` with exactly `features` enabled (the bindings' load_module
    enables none, and enabling them one by one afterwards would replace each by the next)."""
    names = [ffi.new("char[]", feature.encode()) for feature in features]
    array = ffi.new("char *[]", [*names, ffi.NULL])
    if lib.ly_ctx_load_module(ctx.cdata, name.encode(), ffi.NULL, array) == ffi.NULL:
        raise ctx.error(f"cannot load module {name}")


def _errors_of(exc: libyang.LibyangError) -> tuple[ValidationError, ...]:
    if isinstance(exc, _LibyangFailure):
        return exc.errors
    return (ValidationError("/", str(exc)),)
