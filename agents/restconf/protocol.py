"""RESTCONF (RFC 8040) without I/O: a `Request` in, a `Response` out.

Reads come from the datastore's operational (or running) tree, with what NACM hides left
out; writes become edits (`operation` attributes, as NETCONF's) that go through the same
NACM check and the datastore's validate → veto → apply, so both faces see each change at
once and the node raises the same notifications. Authentication is the edge's job:
`Request.user` is who it authenticated (None: nobody, answered 401).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from agents.access.control import AccessControl
from agents.access.reads import prune
from agents.access.writes import edit_changes
from agents.datastore import Datastore, DatastoreError, DatastoreName, Operation
from agents.datastore.tree import serialize
from agents.restconf import tree, xml_body
from agents.restconf.errors import RestconfError, error_document, from_datastore
from agents.restconf.query import Content, ReadQuery, limit_depth, parse_query, select_fields
from agents.restconf.uri import Segment, Target, location, parse_target
from common.audit import AuditLog
from yang.schema import IMPLEMENTED_MODULES, NodeInfo

JSON = "application/yang-data+json"
XML = "application/yang-data+xml"
ROOT = "/restconf"
DATA = f"{ROOT}/data"
YANG_LIBRARY = "ietf-yang-library:modules-state"
YANG_LIBRARY_VERSION = "2016-06-21"
DATA_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
HOST_META = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"
    b"<Link rel='restconf' href='/restconf'/></XRD>\n"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-encoded, without the query
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    user: str | None = None


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


LockHolder = Callable[[], int | None]  # the NETCONF session holding running or candidate


class Restconf:
    """The RESTCONF resources of one agent's datastore."""

    def __init__(
        self,
        datastore: Datastore,
        access: AccessControl | None = None,
        audit: AuditLog | None = None,
        lock_holder: LockHolder | None = None,
    ) -> None:
        self._datastore = datastore
        self._schema = datastore.schema
        self._access = access
        self._audit = audit
        self._lock_holder = lock_holder
        self._namespaces = {
            query.partition("&")[0]: namespace
            for namespace, _, query in (
                uri.partition("?module=") for uri in self._schema.capabilities()
            )
        }
        self._modules = {namespace: name for name, namespace in self._namespaces.items()}
        self._cache: tuple[etree._Element, dict[str, Any]] | None = None
        # Whole answers to reads that need no pruning, for the operational tree they were
        # made from: (path, query, xml) → response.
        self._answers: tuple[etree._Element, dict[tuple[Any, ...], Response]] | None = None
        self._targets: dict[str, Target] = {}

    # ---- entry -----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        xml = _wants_xml(request.headers.get("accept", ""), _media(request))
        try:
            return self._route(request, xml)
        except RestconfError as error:
            headers = [("content-type", XML if xml else JSON)]
            if error.allow:
                headers.append(("allow", error.allow))
            if error.status == 401:
                headers.append(("www-authenticate", 'Basic realm="restconf"'))
            return Response(error.status, tuple(headers), error_document(error, xml))

    def _route(self, request: Request, xml: bool) -> Response:
        path, method = request.path, request.method
        if path == "/.well-known/host-meta":
            _only(method, "GET, HEAD")
            return Response(200, (("content-type", "application/xrd+xml"),), HOST_META)
        if not (path == ROOT or path.startswith(ROOT + "/")):
            raise RestconfError.of("protocol", "invalid-value", f"no resource {path}", status=404)
        if request.user is None:
            raise RestconfError.of(
                "protocol", "access-denied", "authentication required", status=401
            )
        if path.rstrip("/") == ROOT:
            _only(method, "GET, HEAD")
            root = {"data": {}, "operations": {}, "yang-library-version": YANG_LIBRARY_VERSION}
            return self._document({"ietf-restconf:restconf": root}, xml, "restconf")
        if path == f"{ROOT}/yang-library-version":
            _only(method, "GET, HEAD")
            version = {"ietf-restconf:yang-library-version": YANG_LIBRARY_VERSION}
            return self._document(version, xml, "yang-library-version")
        if path.rstrip("/") == f"{ROOT}/operations":
            _only(method, "GET, HEAD")
            return self._document({"ietf-restconf:operations": {}}, xml, "operations")
        if path.startswith(f"{ROOT}/operations/"):
            raise RestconfError.of(
                "protocol", "invalid-value", "this agent's modules define no operations", status=404
            )
        if path.rstrip("/") == DATA:
            return self._datastore_resource(request, xml)
        if not path.startswith(DATA + "/"):
            raise RestconfError.of("protocol", "invalid-value", f"no resource {path}", status=404)
        resource = path[len(DATA) + 1 :]
        if resource.rstrip("/") == YANG_LIBRARY:
            _only(method, "GET, HEAD")
            return self._document({YANG_LIBRARY: self._yang_library()}, xml, "modules-state")
        if method == "OPTIONS":
            return Response(200, (("allow", DATA_METHODS),))
        target = self._targets.get(resource)
        if target is None:
            target = parse_target(resource, self._namespaces, self._info)
            if len(self._targets) < 1024:
                self._targets[resource] = target
        if method in ("GET", "HEAD"):
            response = self._cached_get(request, target, xml)
            return Response(response.status, response.headers) if method == "HEAD" else response
        if method in ("PUT", "PATCH", "POST", "DELETE"):
            return self._write(request, target)
        raise RestconfError(
            405,
            *RestconfError.of(
                "protocol", "operation-not-supported", f"{method} not allowed"
            ).errors,
            allow=DATA_METHODS,
        )

    def _datastore_resource(self, request: Request, xml: bool) -> Response:
        if request.method in ("GET", "HEAD"):
            query = parse_query(request.query)
            doc = self._read_doc(request.user or "", query.content)
            body = self._render_all(doc, query, xml)
            headers = (("content-type", XML if xml else JSON),)
            return Response(200, headers, b"" if request.method == "HEAD" else body)
        if request.method == "POST":
            return self._write(request, None)
        raise RestconfError(
            405,
            *RestconfError.of(
                "protocol", "operation-not-supported", f"{request.method} not allowed here"
            ).errors,
            allow="GET, HEAD, POST",
        )

    # ---- reading ---------------------------------------------------------------------------

    def _info(self, names: tuple[str, ...]) -> NodeInfo | None:
        return self._schema.node_info(list(names))

    def _read_doc(self, user: str, content: Content) -> dict[str, Any]:
        """The datastore as RFC 7951 JSON, as `user` may read it."""
        rules = self._access.rules() if self._access is not None else None
        hidden = rules is not None and not rules.reads_everything(user)
        if content is Content.CONFIG:
            wrapper = self._datastore.config(DatastoreName.RUNNING)
        elif hidden:
            wrapper = self._datastore.operational()
        else:
            doc = self._operational_json()
            return _nonconfig(doc, self._info) if content is Content.NONCONFIG else doc
        if rules is not None and hidden:
            prune(wrapper, rules, user, self._modules, self._keys_of)
        doc = self._schema.xml_to_json(serialize(wrapper)) if len(wrapper) else {}
        return _nonconfig(doc, self._info) if content is Content.NONCONFIG else doc

    def _operational_json(self) -> dict[str, Any]:
        """Operational as JSON, converted once per state of the datastore's shared tree."""
        view = self._datastore.operational_view()
        cached = self._cache
        if cached is not None and cached[0] is view:
            return cached[1]
        doc = self._schema.xml_to_json(serialize(view)) if len(view) else {}
        self._cache = (view, doc)
        return doc

    def _keys_of(self, names: tuple[str, ...]) -> tuple[str, ...]:
        info = self._info(names)
        return info.keys if info is not None else ()

    def _cached_get(self, request: Request, target: Target, xml: bool) -> Response:
        """`_get`, answered from memory while the operational tree is the same and the user
        may read all of it (a read that NACM prunes is made afresh)."""
        rules = self._access.rules() if self._access is not None else None
        if rules is not None and not rules.reads_everything(request.user or ""):
            return self._get(request, target, xml)
        view = self._datastore.operational_view()
        if self._answers is None or self._answers[0] is not view:
            self._answers = (view, {})
        key = (request.path, tuple(sorted((k, tuple(v)) for k, v in request.query.items())), xml)
        answers = self._answers[1]
        response = answers.get(key)
        if response is None:
            response = self._get(request, target, xml)
            if len(answers) < 256:
                answers[key] = response
        return response

    def _get(self, request: Request, target: Target, xml: bool) -> Response:
        query = parse_query(request.query)
        doc = self._read_doc(request.user or "", query.content)
        value = tree.find(doc, target.segments, self._info)
        if value is None:
            raise RestconfError.of(
                "application",
                "invalid-value",
                f"no data at {location(target.segments)}",
                path="/" + location(target.segments),
                status=404,
            )
        if target.segments[-1].keys and target.info.kind == "list":
            value = [value]
        if query.fields is not None:
            value = select_fields(value, query.fields)
        if query.depth is not None:
            value = limit_depth(value, query.depth)
        name = f"{target.segments[-1].module}:{target.segments[-1].name}"
        if not xml:
            return Response(200, (("content-type", JSON),), tree.dumps({name: value}))
        return Response(200, (("content-type", XML),), self._xml_of(target, value))

    def _xml_of(self, target: Target, value: Any) -> bytes:
        segments = target.segments
        doc = tree.rooted(segments, value, self._info)
        config = tree.to_config(doc, self._schema.json_to_xml)
        parent = (
            tree.locate(config, segments[:-1], self._namespaces, self._info)
            if len(segments) > 1
            else config
        )
        last = segments[-1]
        tag = f"{{{self._namespaces[last.module]}}}{last.name}"
        found = list(parent.iterchildren(tag)) if parent is not None else []
        if len(found) != 1:
            raise RestconfError.of(
                "application",
                "invalid-value",
                "XML has no single root for a whole list: ask for JSON or name an entry",
                status=406,
            )
        return bytes(etree.tostring(found[0]))

    def _render_all(self, doc: dict[str, Any], query: ReadQuery, xml: bool) -> bytes:
        if query.fields is not None:
            doc = select_fields(doc, query.fields)
        if query.depth is not None:
            doc = {name: limit_depth(value, query.depth) for name, value in doc.items()}
        if not xml:
            return tree.dumps({"ietf-restconf:data": doc})
        inner = self._schema.json_to_xml(doc) if doc else ""
        return f'<data xmlns="urn:ietf:params:xml:ns:yang:ietf-restconf">{inner}</data>'.encode()

    def _document(self, doc: dict[str, Any], xml: bool, local: str) -> Response:
        if not xml:
            return Response(200, (("content-type", JSON),), tree.dumps(doc))
        (value,) = doc.values()
        element = etree.Element(
            f"{{urn:ietf:params:xml:ns:yang:ietf-restconf}}{local}",
            nsmap={None: "urn:ietf:params:xml:ns:yang:ietf-restconf"},  # type: ignore[dict-item]
        )
        if isinstance(value, str):
            element.text = value
        elif isinstance(value, dict):
            _fill(element, value)
        return Response(200, (("content-type", XML),), bytes(etree.tostring(element)))

    def _yang_library(self) -> dict[str, Any]:
        texts = self._schema.module_texts()
        modules = [
            {
                "name": name,
                "revision": revision,
                "namespace": self._namespaces.get(name, ""),
                "conformance-type": "implement" if name in IMPLEMENTED_MODULES else "import",
            }
            for name, revision in sorted(texts)
        ]
        set_id = str(abs(hash(tuple(sorted(texts)))))
        return {"module-set-id": set_id, "module": modules}

    # ---- writing ---------------------------------------------------------------------------

    def _write(self, request: Request, target: Target | None) -> Response:
        user = request.user or ""
        method = request.method
        where = "/" + location(target.segments) if target is not None else "/"
        try:
            response = self._edit(request, target)
        except RestconfError as error:
            outcome = "refused" if error.status in (401, 403) else "failed"
            self._record(user, method, where, outcome, str(error))
            raise
        self._record(user, method, where, "ok", "")
        return response

    def _record(self, user: str, method: str, where: str, outcome: str, detail: str) -> None:
        if self._audit is None:
            return
        role = "-"
        if self._access is not None:
            role = ",".join(sorted(self._access.rules().groups_of(user))) or "-"
        self._audit.record(
            user, role, f"restconf-{method.lower()}", f"running:{where}", outcome, detail
        )

    def _edit(self, request: Request, target: Target | None) -> Response:
        method = request.method
        holder = self._lock_holder() if self._lock_holder is not None else None
        if holder is not None:
            raise RestconfError.of(
                "protocol", "in-use", f"the datastore is locked by NETCONF session {holder}"
            )
        running = self._datastore.running_json()
        if method == "DELETE":
            assert target is not None
            if tree.find(running, target.segments, self._info) is None:
                raise RestconfError.of(
                    "application",
                    "data-missing",
                    f"no data at {location(target.segments)}",
                    status=404,
                )
            config, element = tree.edit_xml(target.segments, self._namespaces, self._info)
            element.set(tree.OPERATION, Operation.DELETE.value)
            self._apply(request, config)
            return Response(204)
        if method == "POST":
            parent = target.segments if target is not None else ()
        else:
            assert target is not None
            parent = target.segments[:-1]
        name, value = _body(request, self._xml_member(parent))
        if method == "POST":
            return self._post(request, target, name, value)
        assert target is not None
        last = target.segments[-1]
        if name.rpartition(":")[2] != last.name or (
            ":" in name and name.partition(":")[0] != last.module
        ):
            raise RestconfError.of(
                "protocol",
                "invalid-value",
                f"the body holds {name!r}, the URI names {last.module}:{last.name}",
            )
        value = self._check_keys(target, value)
        existed = tree.find(running, target.segments, self._info) is not None
        config = self._config_for(target.segments, value)
        found = tree.locate(config, target.segments, self._namespaces, self._info)
        if found is None:  # an empty container: libyang prints nothing of it
            config, found = tree.edit_xml(target.segments, self._namespaces, self._info)
        element = found
        if method == "PUT":
            element.set(tree.OPERATION, Operation.REPLACE.value)
        elif not existed:
            raise RestconfError.of(
                "application",
                "invalid-value",
                "PATCH of a resource that does not exist",
                status=404,
            )
        self._apply(request, config)
        return Response(204 if existed or method == "PATCH" else 201)

    def _post(self, request: Request, target: Target | None, name: str, value: Any) -> Response:
        parent = target.segments if target is not None else ()
        module = parent[-1].module if parent else None
        prefix, colon, local = name.rpartition(":")
        module = prefix if colon else module
        if module is None or module not in self._namespaces:
            raise RestconfError.of(
                "protocol", "invalid-value", f"body member {name!r} needs its module"
            )
        info = self._info((*(s.name for s in parent), local))
        if info is None or info.module != module:
            raise RestconfError.of(
                "application", "unknown-element", f"no child {name!r} here", status=400
            )
        entries = value if isinstance(value, list) else [value]
        if info.kind == "list" and not entries:
            raise RestconfError.of("protocol", "invalid-value", f"{name!r}: no entry to create")
        child = Segment(module, local)
        segments = (*parent, child)
        config = self._config_for(
            segments, entries if info.kind in ("list", "leaf-list") else value
        )
        holder = tree.locate(config, parent, self._namespaces, self._info) if parent else config
        if holder is None:
            raise RestconfError.of("application", "operation-failed", "cannot place the new data")
        tag = f"{{{self._namespaces[module]}}}{local}"
        created = list(holder.iterchildren(tag))
        if not created:
            config, element = tree.edit_xml(segments, self._namespaces, self._info)
            created = [element]
        for element in created:
            element.set(tree.OPERATION, Operation.CREATE.value)
        self._apply(request, config)
        keys: tuple[str, ...] = ()
        if info.kind == "list" and isinstance(entries[0], dict):
            keys = tuple(tree.text_of(entries[0].get(key, "")) for key in info.keys)
        new = (*parent, Segment(module, local, keys))
        return Response(201, (("location", f"{DATA}/{location(new)}"),))

    def _xml_member(self, parent: tuple[Segment, ...]) -> Callable[[bytes], tuple[str, Any]]:
        """An XML body's element, below the resource `parent`, as the JSON member."""

        def member(body: bytes) -> tuple[str, Any]:
            return xml_body.member(
                body, parent, self._namespaces, self._info, self._schema.xml_to_json
            )

        return member

    def _check_keys(self, target: Target, value: Any) -> Any:
        """A PUT/PATCH of a list entry: the body's keys must be the URI's (RFC 8040 §4.5)."""
        last = target.segments[-1]
        if target.info.kind != "list" or not last.keys:
            return value
        entries = value if isinstance(value, list) else [value]
        if len(entries) != 1 or not isinstance(entries[0], dict):
            raise RestconfError.of("protocol", "invalid-value", "the body must hold one list entry")
        entry = entries[0]
        for key, wanted in zip(target.info.keys, last.keys, strict=True):
            if key in entry and tree.text_of(entry[key]) != wanted:
                raise RestconfError.of(
                    "protocol",
                    "invalid-value",
                    f"key {key!r} is {tree.text_of(entry[key])!r} in the body, {wanted!r} in the URI",
                )
        return [entry]

    def _config_for(self, segments: tuple[Segment, ...], value: Any) -> etree._Element:
        doc = tree.rooted(segments, value, self._info)
        try:
            return tree.to_config(doc, self._schema.json_to_xml)
        except Exception as error:  # libyang's refusal of the body: name what it said
            raise RestconfError.of(
                "application", "invalid-value", f"the body is not valid data: {error}"
            ) from None

    def _apply(self, request: Request, config: etree._Element) -> None:
        user = request.user or ""
        if self._access is not None:
            rules = self._access.rules()
            current = self._datastore.config(DatastoreName.RUNNING)
            for change in edit_changes(current, config, "merge", self._modules, self._keys_of):
                if not rules.may_access(user, change.path, change.access):
                    self._access.denied_data_writes += 1
                    raise RestconfError.of(
                        "application",
                        "access-denied",
                        f"user {user!r} may not {change.access.value} "
                        + "/".join(step.name for step in change.path),
                    )
        try:
            self._datastore.edit(DatastoreName.RUNNING, config, Operation.MERGE)
        except DatastoreError as error:
            raise from_datastore(error) from None


def _only(method: str, allowed: str) -> None:
    if method not in allowed.split(", ") and method != "OPTIONS":
        raise RestconfError(
            405,
            *RestconfError.of(
                "protocol", "operation-not-supported", f"{method} not allowed"
            ).errors,
            allow=allowed,
        )


def _wants_xml(accept: str, sent: str = JSON) -> bool:
    """XML when the client asks for it before (or instead of) JSON; with no preference
    (no Accept, or only wildcards), the media type of the request's body (RFC 8040 §5.2)."""
    ranked = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    for media in ranked:
        if media in (XML, "application/xml"):
            return True
        if media in (JSON, "application/json"):
            return False
    return sent in (XML, "application/xml")


def _body(request: Request, xml_member: Callable[[bytes], tuple[str, Any]]) -> tuple[str, Any]:
    """The one top-level member of a request body (JSON, or XML through `xml_member`) and
    its value."""
    media = _media(request)
    if not request.body.strip():
        raise RestconfError.of("protocol", "malformed-message", "the request has no body")
    if media in (JSON, "application/json"):
        try:
            doc = json.loads(request.body)
        except ValueError as error:
            raise RestconfError.of("protocol", "malformed-message", f"not JSON: {error}") from None
        if not isinstance(doc, dict) or len(doc) != 1:
            raise RestconfError.of(
                "protocol", "malformed-message", "the body must be an object with one member"
            )
        ((name, value),) = doc.items()
        return str(name), value
    if media in (XML, "application/xml"):
        return xml_member(request.body)
    raise RestconfError.of(
        "protocol", "invalid-value", f"unsupported content type {media!r}", status=415
    )


def _media(request: Request) -> str:
    return request.headers.get("content-type", JSON).split(";")[0].strip().lower()


def _nonconfig(
    doc: dict[str, Any], info: Callable[[tuple[str, ...]], NodeInfo | None]
) -> dict[str, Any]:
    """Only the state (config false) nodes, with the list keys that locate them."""

    def keep(value: Any, names: tuple[str, ...]) -> Any:
        node = info(names)
        if node is None:
            return None
        if node.kind == "list":
            entries = [
                kept for entry in value if (kept := entry_state(entry, names, node)) is not None
            ]
            return entries or None
        if node.kind == "container":
            found = {
                m: v
                for m, v in ((m, keep(v, (*names, m.rpartition(":")[2]))) for m, v in value.items())
                if v is not None
            }
            return found or None
        return value if not node.config else None

    def entry_state(entry: dict[str, Any], names: tuple[str, ...], node: NodeInfo) -> Any:
        found = {
            m: v
            for m, v in ((m, keep(v, (*names, m.rpartition(":")[2]))) for m, v in entry.items())
            if v is not None and m.rpartition(":")[2] not in node.keys
        }
        if not found:
            return None
        return {**{k: entry[k] for k in node.keys if k in entry}, **found}

    result = {}
    for member, value in doc.items():
        kept = keep(value, (member.rpartition(":")[2],))
        if kept is not None:
            result[member] = kept
    return result


def _fill(element: etree._Element, value: dict[str, Any]) -> None:
    namespace = etree.QName(element).namespace
    for name, child in value.items():
        sub = etree.SubElement(element, f"{{{namespace}}}{name}")
        if isinstance(child, dict):
            _fill(sub, child)
        else:
            sub.text = str(child)
