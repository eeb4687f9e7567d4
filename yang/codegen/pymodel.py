"""pyang plugin `pymodel`: writes the typed, frozen Python model of the `qkd_node` tree.

Run through `python -m yang.generate` (pyang -f pymodel). The output (`yang/model.py`) has one
frozen dataclass per container and list (augments folded in), an Enum per identity base and
per enumeration, and straight-line code to read RFC 7951 JSON and NETCONF XML and to write
RFC 7951 JSON. Only the YANG constructs the node model uses are supported; anything else
stops the generation with an error naming the node.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any, TextIO

from pyang import plugin

ROOT_MODULE = "etsi-qkd-sdn-node"
ROOT_NAME = "qkd_node"
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}
STRING_TYPES = frozenset({"string"})
DATE_AND_TIME = ("ietf-yang-types", "date-and-time")
# Consumer views: the parts of the tree a reader never looks at, left out when it parses
# through the view (`QkdNode.from_json(doc, view=View.KEY_MANAGER)`). A path is YANG names
# below qkd_node (augments without their prefix); a last step `*` is every child but the
# list keys and mandatory leaves. Written as exclusions so that a leaf added to the model is
# read by every view until a view says otherwise.
VIEWS: dict[str, tuple[str, ...]] = {
    # km/associations.py: applications (ids, SAEs, backing links, admission, relay) and the
    # VIRT links' hops.
    "KEY_MANAGER": (
        "qkdn_version",
        "qkdn_location_id",
        "qkdn_capabilities",
        "qkd_interfaces",
        "key_manager",
        "qkd_applications/qkd_app/app_status",
        "qkd_applications/qkd_app/app_type",
        "qkd_applications/qkd_app/app_priority",
        "qkd_applications/qkd_app/creation_time",
        "qkd_applications/qkd_app/expiration_time",
        "qkd_applications/qkd_app/app_statistics",
        "qkd_applications/qkd_app/app_qos",
        "qkd_applications/qkd_app/local_qkdn_id",
        "qkd_links/qkd_link/qkdl_status",
        "qkd_links/qkd_link/qkdl_enable",
        "qkd_links/qkd_link/qkdl_local/qkdi_id",
        "qkd_links/qkd_link/qkdl_remote/qkdi_id",
        "qkd_links/qkd_link/qkdl_applications",
        "qkd_links/qkd_link/phys_channel_att",
        "qkd_links/qkd_link/phys_wavelength",
        "qkd_links/qkd_link/phys_qkd_role",
        "qkd_links/qkd_link/qkdl_performance",
    ),
    # controller/nodedata.py: links (ends, status, rates, QBER, hops), applications with
    # their QoS, admission, relay buffer and consumption (app_statistics), the interfaces'
    # ids and the key manager's relay address.
    "CONTROLLER": (
        "qkdn_status",
        "qkdn_version",
        "qkdn_capabilities",
        "qkd_interfaces/qkd_interface/*",
        "key_manager/etsi014_url",
        "key_manager/etsi004_address",
        "qkd_applications/qkd_app/app_status",
        "qkd_applications/qkd_app/creation_time",
        "qkd_applications/qkd_app/expiration_time",
        "qkd_applications/qkd_app/app_qos/clients_shared_path_enable",
        "qkd_applications/qkd_app/app_qos/clients_shared_keys_required",
        "qkd_links/qkd_link/qkdl_local/qkdi_id",
        "qkd_links/qkd_link/qkdl_remote/qkdi_id",
        "qkd_links/qkd_link/qkdl_applications",
        "qkd_links/qkd_link/phys_channel_att",
        "qkd_links/qkd_link/phys_wavelength",
        "qkd_links/qkd_link/phys_qkd_role",
    ),
}


class UnsupportedYang(Exception):
    """The model uses a construct this generator does not translate."""


def pyang_plugin_init() -> None:
    plugin.register_plugin(ModelPlugin())


class ModelPlugin(plugin.PyangPlugin):  # type: ignore[misc]
    def add_output_format(self, fmts: dict[str, Any]) -> None:
        self.multiple_modules = True
        fmts["pymodel"] = self

    def emit(self, ctx: Any, modules: list[Any], fd: TextIO) -> None:
        roots = [
            child
            for module in modules
            if module.arg == ROOT_MODULE
            for child in module.i_children
            if child.arg == ROOT_NAME
        ]
        if not roots:
            raise UnsupportedYang(f"no {ROOT_MODULE}:{ROOT_NAME} among the modules")
        fd.write(Generator(ctx).render(roots[0]))


# -- the intermediate description -----------------------------------------------------------


@dataclass
class Scalar:
    """How one leaf type reads and writes."""

    py_type: str  # Python annotation of one value
    json_in: str  # expression template: {v} value, {p} path, {n} name
    xml_in: str  # expression template: {e} element, {p} path, {n} name
    json_out: str  # expression template: {x} the Python value
    literal: Any  # (yang default text) -> Python literal source
    json_fast: str = ""  # inline expression for the valid case, else json_in (which raises)
    json_all: str = ""  # a test that every item of the JSON array {v} is valid as it is

    def json_expr(self, value: str, name: str) -> str:
        slow = self.json_in.format(v=value, p="path", n=name)
        if not self.json_fast:
            return slow
        return self.json_fast.format(v=value, slow=slow)


@dataclass
class Field:
    name: str  # YANG name
    attr: str  # Python attribute
    kind: str  # leaf, leaf-list, container, list
    json_key: str
    xml_tag: str
    required: bool = False
    scalar: Scalar | None = None
    cls: str = ""  # class of a container or list entry
    default_src: str | None = None  # Python source of the YANG default
    keys: tuple[str, ...] = ()
    config: bool = True


@dataclass
class ClassDef:
    name: str
    path: str
    kind: str
    description: str
    fields: list[Field] = field(default_factory=list)


def camel(*names: str) -> str:
    words = [w for name in names for w in re.split(r"[-_.]", name) if w]
    return "".join(w[:1].upper() + w[1:].lower() for w in words)


def ident(name: str) -> str:
    attr = re.sub(r"\W", "_", name)
    return attr + "_" if keyword.iskeyword(attr) else attr


def member(name: str) -> str:
    text = re.sub(r"\W", "_", name).upper()
    return "_" + text if text[:1].isdigit() else text


def first_sentence(stmt: Any) -> str:
    desc = stmt.search_one("description")
    if desc is None:
        return ""
    text = " ".join(desc.arg.split())
    text = text.replace("\\", "/").replace('"""', "'")
    return text.split(". ")[0].rstrip(".") + "."


class Generator:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.classes: list[ClassDef] = []
        self.class_names: set[str] = set()
        self.enums: dict[str, list[str]] = {}  # name -> source lines
        self.enum_keys: dict[Any, str] = {}
        self.patterns: dict[str, str] = {}  # pattern -> constant
        self.pattern_sets: dict[tuple[str, ...], str] = {}

    # -- walking -------------------------------------------------------------------------

    def render(self, root: Any) -> str:
        root_cls = self.visit_class(root, "", None)
        return self.emit(root, root_cls)

    def class_name(self, stmt: Any, parent: str | None) -> str:
        name = camel(stmt.arg)
        if name in self.class_names and parent:
            name = parent + name
        if name in self.class_names:
            raise UnsupportedYang(f"two classes named {name}")
        self.class_names.add(name)
        return name

    def visit_class(self, stmt: Any, path: str, parent_cls: str | None) -> ClassDef:
        path = f"{path}/{stmt.arg}"
        name = self.class_name(stmt, parent_cls)
        if stmt.keyword == "container" and stmt.search_one("presence") is not None:
            raise UnsupportedYang(f"{path}: presence containers are not supported")
        cdef = ClassDef(name, path.lstrip("/"), stmt.keyword, first_sentence(stmt))
        keys = tuple(k.arg for k in getattr(stmt, "i_key", None) or ())
        module = stmt.i_module.arg
        for child in stmt.i_children:
            cdef.fields.append(self.visit_field(child, path, name, module, keys))
        self.classes.append(cdef)
        return cdef

    def visit_field(self, stmt: Any, path: str, parent_cls: str, module: str, keys: Any) -> Field:
        kw = stmt.keyword
        child_module = stmt.i_module.arg
        json_key = stmt.arg if child_module == module else f"{child_module}:{stmt.arg}"
        ns = stmt.i_module.search_one("namespace").arg
        fld = Field(
            name=stmt.arg,
            attr=ident(stmt.arg),
            kind=kw,
            json_key=json_key,
            xml_tag=f"{{{ns}}}{stmt.arg}",
            config=bool(getattr(stmt, "i_config", True)),
        )
        if kw in ("container", "list"):
            child = self.visit_class(stmt, path, parent_cls)
            fld.cls = child.name
            if kw == "list":
                fld.keys = tuple(k.arg for k in stmt.i_key)
            return fld
        if kw not in ("leaf", "leaf-list"):
            raise UnsupportedYang(f"{path}/{stmt.arg}: {kw} is not supported")
        fld.scalar = self.scalar(stmt, f"{path}/{stmt.arg}")
        mandatory = stmt.search_one("mandatory")
        fld.required = stmt.arg in keys or (mandatory is not None and mandatory.arg == "true")
        if kw == "leaf" and getattr(stmt, "i_default", None) is not None:
            fld.default_src = fld.scalar.literal(stmt.i_default_str)
        return fld

    # -- types ---------------------------------------------------------------------------

    def scalar(self, stmt: Any, path: str) -> Scalar:
        type_stmt = stmt.search_one("type")
        patterns: list[str] = []
        typedefs: list[tuple[str, str]] = []
        while True:
            patterns += [p.arg for p in type_stmt.search("pattern")]
            for unsupported in ("length", "range"):
                if type_stmt.search_one(unsupported) is not None:
                    raise UnsupportedYang(f"{path}: {unsupported} restrictions are not supported")
            typedef = getattr(type_stmt, "i_typedef", None)
            if typedef is None:
                break
            typedefs.append((typedef.i_module.arg, typedef.arg))
            type_stmt = typedef.search_one("type")
        base = type_stmt.arg
        if base in STRING_TYPES:
            consts = self.pattern_set(tuple(patterns))
            reader = "date_and_time_json" if DATE_AND_TIME in typedefs else "string_json"
            # A value that matched once is remembered (bounded): ids recur in every tree.
            checks = "".join(
                f" and ({{v}} in {self.patterns[p]}_SEEN"
                f" or _s.matches({self.patterns[p]}, {self.patterns[p]}_SEEN, {{v}}))"
                for p in patterns
            )
            fast = (
                ""
                if reader != "string_json"
                else f"{{v}} if type({{v}}) is str{checks} else {{slow}}"
            )
            # In C: every item a str (so hashable), every item seen matching each pattern.
            every = (
                ""
                if reader != "string_json"
                else "_STRINGS.issuperset(map(type, {v}))"
                + "".join(f" and {self.patterns[p]}_SEEN.issuperset({{v}})" for p in patterns)
            )
            xml_checks = " and ".join(
                f"({'(t := {e}.text or ' + repr('') + ')' if i == 0 else 't'}"
                f" in {self.patterns[p]}_SEEN or _s.matches({self.patterns[p]},"
                f" {self.patterns[p]}_SEEN, t))"
                for i, p in enumerate(patterns)
            )
            xml_in = f"_s.{reader}({{e}}.text or '', {{p}}, {{n}}, {consts})"
            if reader == "string_json":
                xml_in = (
                    f"(t if {xml_checks} else _s.string_json(t, {{p}}, {{n}}, {consts}))"
                    if patterns
                    else "({e}.text or '')"
                )
            return Scalar(
                "str",
                f"_s.{reader}({{v}}, {{p}}, {{n}}, {consts})",
                xml_in,
                "{x}",
                lambda text: repr(text),
                fast,
                every,
            )
        if base in INT_RANGES:
            low, high = INT_RANGES[base]
            return Scalar(
                "int",
                f"_s.int_json({{v}}, {{p}}, {{n}}, {low}, {high})",
                # Inline for plain ASCII digits in range; anything else (sign, spaces, junk)
                # goes to int_xml, which reads it or raises.
                f"(n if (u := {{e}}.text) and len(u) <= {len(str(high))} and u.isascii()"
                " and u.isdigit()"
                f" and {low} <= (n := int(u)) <= {high}"
                f" else _s.int_xml({{e}}, {{p}}, {{n}}, {low}, {high}))",
                "{x}",
                lambda text: str(int(text)),
                f"{{v}} if type({{v}}) is int and {low} <= {{v}} <= {high} else {{slow}}",
            )
        if base == "boolean":
            return Scalar(
                "bool",
                "_s.bool_json({v}, {p}, {n})",
                "(True if (u := {e}.text) == 'true' else False if u == 'false'"
                " else _s.bool_xml({e}, {p}, {n}))",
                "{x}",
                lambda text: str(text == "true"),
                "{v} if type({v}) is bool else {slow}",
            )
        if base == "decimal64":
            digits = int(type_stmt.search_one("fraction-digits").arg)
            return Scalar(
                "Decimal",
                f"_s.decimal_json({{v}}, {{p}}, {{n}}, {digits})",
                f"_s.decimal_json(_s.text({{e}}), {{p}}, {{n}}, {digits})",  # remembered texts
                "_s.decimal_out({x})",
                lambda text: f"Decimal({text!r})",
            )
        if base == "identityref":
            bases = type_stmt.search("base")
            if len(bases) != 1:
                raise UnsupportedYang(f"{path}: identityref with {len(bases)} bases")
            name = self.identity_enum(bases[0].i_identity)
            return self.enum_scalar(name, xml_table=f"_{name}_XML", xml_reader="identity_xml")
        if base == "enumeration":
            key = typedefs[0] if typedefs else path
            name = self.enumeration_enum(type_stmt, key, path)
            return self.enum_scalar(name, xml_table=f"_{name}_JSON", xml_reader=None)
        raise UnsupportedYang(f"{path}: type {base} is not supported")

    def enum_scalar(self, name: str, xml_table: str, xml_reader: str | None) -> Scalar:
        xml_in = (
            f"_s.{xml_reader}({xml_table}, {{e}}, {{p}}, {{n}})"
            if xml_reader
            else f"_s.enum_json({xml_table}, _s.text({{e}}), {{p}}, {{n}})"
        )
        return Scalar(
            name,
            f"_s.enum_json(_{name}_JSON, {{v}}, {{p}}, {{n}})",
            xml_in,
            f"_{name}_OUT[{{x}}]",
            lambda text: f"{name}.{member(text.rpartition(':')[2])}",
            f"(_{name}_JSON.get({{v}}) if type({{v}}) is str else None) or {{slow}}",
        )

    def keys_differ(self, attr: str, fld: Field) -> str:
        """A set comprehension ruling out duplicate keys inline (the check names the pair).
        An enum key is compared by identity (members are singletons; Enum.__hash__ is slow)."""
        if len(fld.keys) != 1:
            return ""
        entry = next(c for c in self.classes if c.name == fld.cls)
        key = next(f for f in entry.fields if f.name == fld.keys[0])
        plain = key.scalar is not None and key.scalar.py_type in ("str", "int", "bool", "Decimal")
        item = f"x.{key.attr}" if plain else f"id(x.{key.attr})"
        return f" and len({{{item} for x in {attr}}}) != len({attr})"

    def pattern_set(self, patterns: tuple[str, ...]) -> str:
        if patterns not in self.pattern_sets:
            consts = []
            for pattern in patterns:
                if pattern not in self.patterns:
                    self.patterns[pattern] = f"_P{len(self.patterns)}"
                consts.append(self.patterns[pattern])
            self.pattern_sets[patterns] = "(" + "".join(c + ", " for c in consts).rstrip(" ") + ")"
        return self.pattern_sets[patterns]

    def derived(self, base: Any) -> list[Any]:
        found = []
        for module in sorted(self.ctx.modules.values(), key=lambda m: m.arg):
            for identity in module.i_identities.values():
                if self.derives_from(identity, base):
                    found.append(identity)
        return found

    def derives_from(self, identity: Any, base: Any) -> bool:
        for stmt in identity.search("base"):
            parent = stmt.i_identity
            if parent is base or self.derives_from(parent, base):
                return True
        return False

    def identity_enum(self, base: Any) -> str:
        if base in self.enum_keys:
            return self.enum_keys[base]
        name = camel(base.arg)
        self.enum_keys[base] = name
        members = self.derived(base)
        lines = [
            f"class {name}(enum.Enum):",
            f'    """Identities derived from {base.i_module.arg}:{base.arg}."""',
            "",
        ]
        lines += [f"    {member(i.arg)} = {i.arg!r}" for i in members]
        lines += ["", ""]
        lines.append(f"_{name}_JSON: dict[str, {name}] = {{")
        lines += [f"    {i.i_module.arg + ':' + i.arg!r}: {name}.{member(i.arg)}," for i in members]
        lines += ["}", f"_{name}_XML: dict[tuple[str, str], {name}] = {{"]
        for i in members:
            ns = i.i_module.search_one("namespace").arg
            lines.append(f"    ({ns!r}, {i.arg!r}): {name}.{member(i.arg)},")
        lines += ["}", f"_{name}_OUT = {{member: key for key, member in _{name}_JSON.items()}}"]
        self.enums[name] = lines
        return name

    def enumeration_enum(self, type_stmt: Any, key: Any, path: str) -> str:
        if key in self.enum_keys:
            return self.enum_keys[key]
        if isinstance(key, tuple):
            name = camel(key[1])
        else:
            parts = path.strip("/").split("/")
            name = camel(*parts[-2:])
        self.enum_keys[key] = name
        values = [e.arg for e in type_stmt.search("enum")]
        lines = [
            f"class {name}(enum.Enum):",
            f'    """The enumeration of {path.lstrip("/")}."""',
            "",
        ]
        lines += [f"    {member(v)} = {v!r}" for v in values]
        lines += ["", ""]
        lines.append(
            f"_{name}_JSON: dict[str, {name}] = {{member.value: member for member in {name}}}"
        )
        lines.append(f"_{name}_OUT = {{member: member.value for member in {name}}}")
        self.enums[name] = lines
        return name

    # -- output --------------------------------------------------------------------------

    def emit(self, root: Any, root_cls: ClassDef) -> str:
        skipped = {view: self.resolve_view(view, paths, root_cls) for view, paths in VIEWS.items()}
        out = [HEADER]
        for pattern, const in self.patterns.items():
            out.append(f"{const} = re.compile({pattern!r})")
            out.append(f"{const}_SEEN: set[str] = set()  # values known to match {const}")
        out += ["", ""]
        out += view_enum(list(VIEWS))
        for lines in self.enums.values():
            out += [*lines, "", ""]
        for cdef in self.classes:
            out += self.emit_class(cdef, cdef is root_cls, root)
        for cdef in self.classes:
            out += self.builder(cdef)
        for cdef in self.classes:
            if self.defaultable(cdef):
                out.append(f"_EMPTY_{cdef.name} = {cdef.name}()  # an absent container (immutable)")
        out += ["", ""]
        for cdef in self.classes:
            out += self.emit_json_in(cdef, "", frozenset())
            out += self.emit_xml_in(cdef, "", frozenset())
            out += self.emit_json_out(cdef)
        for cdef in self.classes:
            if self.nested(cdef):
                out += self.emit_json_in(cdef, "", frozenset(), reusing=True)
        for view, skips in skipped.items():
            for cdef in self.classes:
                if self.differs(cdef, skips):
                    out += self.emit_json_in(cdef, view, skips.get(cdef.name, frozenset()), skips)
                    out += self.emit_xml_in(cdef, view, skips.get(cdef.name, frozenset()), skips)
        out += self.dispatch(root_cls, skipped)
        while out[-1] == "":
            out.pop()
        return "\n".join(out) + "\n"

    # -- views ---------------------------------------------------------------------------

    def resolve_view(
        self, view: str, paths: tuple[str, ...], root_cls: ClassDef
    ) -> dict[str, frozenset[str]]:
        """Class name -> the attributes the view leaves out (an unknown path stops generation)."""
        by_name = {cdef.name: cdef for cdef in self.classes}
        skips: dict[str, set[str]] = {}
        for path in paths:
            cdef, steps = root_cls, path.split("/")
            for step in steps[:-1]:
                fld = next((f for f in cdef.fields if f.name == step and f.cls), None)
                if fld is None:
                    raise UnsupportedYang(f"view {view}: {path}: no container or list {step!r}")
                cdef = by_name[fld.cls]
            last = steps[-1]
            if last == "*":
                names = [f.attr for f in cdef.fields if not f.required]
            else:
                found = next((f for f in cdef.fields if f.name == last), None)
                if found is None:
                    raise UnsupportedYang(f"view {view}: {path}: the model has no {last!r} there")
                if found.required:
                    raise UnsupportedYang(f"view {view}: {path}: a key or mandatory leaf is read")
                names = [found.attr]
            skips.setdefault(cdef.name, set()).update(names)
        return {name: frozenset(attrs) for name, attrs in skips.items()}

    def differs(self, cdef: ClassDef, skips: dict[str, frozenset[str]]) -> bool:
        """The view reads `cdef` (or something below it) differently from the full parse."""
        if skips.get(cdef.name):
            return True
        by_name = {c.name: c for c in self.classes}
        return any(
            f.cls and f.attr not in skips.get(cdef.name, ()) and self.differs(by_name[f.cls], skips)
            for f in cdef.fields
        )

    def reader(self, cls: str, fmt: str, view: str, skips: dict[str, frozenset[str]] | None) -> str:
        """The function that reads a `cls` in `view` (the full one where the view reads all)."""
        by_name = {c.name: c for c in self.classes}
        if view and skips is not None and self.differs(by_name[cls], skips):
            return f"_{cls}_from_{fmt}_{view}"
        return f"_{cls}_from_{fmt}"

    def dispatch(
        self, root_cls: ClassDef, skipped: dict[str, dict[str, frozenset[str]]]
    ) -> list[str]:
        top = f"{ROOT_MODULE}:{ROOT_NAME}"
        lines = [f"_TOP_MEMBERS = frozenset({{{top!r}}})"]
        for fmt, source in (("json", "object"), ("xml", "etree._Element")):
            callable_type = f"Callable[[{source}, str, bool], {root_cls.name}]"
            lines.append(f"_FROM_{fmt.upper()}: dict[View, {callable_type}] = {{")
            lines.append(f"    View.FULL: _{root_cls.name}_from_{fmt},")
            for view, skips in skipped.items():
                lines.append(f"    View.{view}: {self.reader(root_cls.name, fmt, view, skips)},")
            lines.append("}")
        return lines

    @staticmethod
    def skipped_value(fld: Field) -> str:
        if fld.kind == "container":
            return f"_EMPTY_{fld.cls}"
        return "()" if fld.kind in ("list", "leaf-list") else "None"

    def defaultable(self, cdef: ClassDef) -> bool:
        return cdef.kind == "container" and all(
            self.annotation(f)[1] is not None for f in cdef.fields
        )

    @staticmethod
    def annotation(fld: Field) -> tuple[str, str | None]:
        """(annotation, default source or None when required)."""
        if fld.kind == "container":
            return fld.cls, f"{fld.cls}()"
        if fld.kind == "list":
            return f"tuple[{fld.cls}, ...]", "()"
        assert fld.scalar is not None
        if fld.kind == "leaf-list":
            return f"tuple[{fld.scalar.py_type}, ...]", "()"
        if fld.required:
            return fld.scalar.py_type, None
        return f"{fld.scalar.py_type} | None", "None"

    def emit_class(self, cdef: ClassDef, is_root: bool, root: Any) -> list[str]:
        what = "list entry" if cdef.kind == "list" else "container"
        doc = f"`{cdef.path}` ({what}). {cdef.description}".strip()
        lines = [
            "@dataclass(frozen=True, slots=True)",
            f"class {cdef.name}:",
            f'    """{doc}"""',
            "",
        ]
        ordered = [f for f in cdef.fields if f.required] + [
            f for f in cdef.fields if not f.required
        ]
        for fld in ordered:
            annotation, default = self.annotation(fld)
            suffix = "" if default is None else f" = {default}"
            state = "" if fld.config else "  # config false"
            lines.append(f"    {fld.attr}: {annotation}{suffix}{state}")
        for fld in cdef.fields:
            if fld.default_src is None:
                continue
            assert fld.scalar is not None
            lines += [
                "",
                "    @property",
                f"    def {fld.attr}_or_default(self) -> {fld.scalar.py_type}:",
                f'        """`{fld.name}`, or the model\'s default {fld.default_src} when unset."""',
                f"        return {fld.default_src} if self.{fld.attr} is None else self.{fld.attr}",
            ]
        if is_root:
            lines += root_methods(cdef, root)
        return [*lines, "", ""]

    def emit_json_in(
        self,
        cdef: ClassDef,
        view: str,
        skip: frozenset[str],
        skips: dict[str, frozenset[str]] | None = None,
        reusing: bool = False,
    ) -> list[str]:
        """The JSON reader of `cdef` (in `view`). `reusing`: the full reader given also the
        earlier document's value `pv` and its tree `pm`: a container or list entry equal to
        the earlier one is taken from `pm` (entries matched by their single key, else by
        place)."""
        known = ", ".join(repr(f.json_key) for f in cdef.fields)
        const = f"_{cdef.name}_MEMBERS"
        suffix = f"_{view}" if view else "_reusing" if reusing else ""
        head = [f"{const} = frozenset({{{known}}})", "", ""] if not view and not reusing else []
        what = f"  # view {view}: leaves out {', '.join(sorted(skip))}" if skip else ""
        earlier = f", pv: object, pm: {cdef.name}" if reusing else ""
        lines = [
            *head,
            f"def _{cdef.name}_from_json{suffix}(value: object, path: str, ignore_unknown: bool{earlier}) -> {cdef.name}:{what}",
            "    o = value if type(value) is dict else _s.obj(value, path)",
            f"    if not ignore_unknown and not {const}.issuperset(o):",
            f"        _s.check_members(o, {const}, path, ignore_unknown)",
        ]
        if reusing:
            lines.append("    p: dict[str, Any] = pv if type(pv) is dict else _NOTHING")
        by_name = {c.name: c for c in self.classes}
        for fld in cdef.fields:
            key, name, attr = repr(fld.json_key), repr(fld.json_key), "f_" + fld.attr
            sub = repr("/" + fld.json_key)
            if fld.attr in skip:
                lines.append(f"    {attr} = {self.skipped_value(fld)}")
                continue
            lines.append(f"    v = o.get({key}, _ABSENT)")
            if fld.kind == "container":
                reader = self.reader(fld.cls, "json", view, skips)
                call = f"{reader}(v, path + {sub}, ignore_unknown)"
                if reusing:
                    if self.nested(by_name[fld.cls]):
                        call = f"_{fld.cls}_from_json_reusing(v, path + {sub}, ignore_unknown, w, pm.{fld.attr})"
                    lines.append(f"    w = p.get({key}, _ABSENT)")
                    call = f"pm.{fld.attr} if v == w else {call}"
                lines.append(f"    {attr} = _EMPTY_{fld.cls} if v is _ABSENT else {call}")
            elif fld.kind == "list":
                reader = self.reader(fld.cls, "json", view, skips)
                items = f"v if type(v) is list else _s.array(v, path, {name})"
                if reusing:
                    entry = by_name[fld.cls]
                    single = (
                        repr(next(f.json_key for f in entry.fields if f.name == fld.keys[0]))
                        if len(fld.keys) == 1
                        else "None"
                    )
                    read = [
                        f"        {attr} = _s.reuse_entries({reader}, {items}, p.get({key}),"
                        f" pm.{fld.attr}, path + {sub}, ignore_unknown, {single})"
                    ]
                else:
                    read = self.read_entries(attr, reader, items, "v", fld.json_key)
                lines += [
                    "    if v is _ABSENT:",
                    f"        {attr}: tuple[{fld.cls}, ...] = ()",
                    "    else:",
                    *read,
                    f"    if len({attr}) > 1{self.keys_differ(attr, fld)}:",
                    f"        _s.unique_keys({attr}, {fld.keys!r}, path, {name})",
                ]
            else:
                assert fld.scalar is not None
                if fld.kind == "leaf-list":
                    item = fld.scalar.json_expr("x", name)
                    every = (
                        f"tuple(v) if type(v) is list and {fld.scalar.json_all.format(v='v')} else "
                        if fld.scalar.json_all
                        else ""
                    )
                    lines.append(
                        f"    {attr} = () if v is _ABSENT else {every}"
                        f"tuple([{item} for x in (v if type(v) is list else _s.array(v, path, {name}))])"
                    )
                elif fld.required:
                    lines += [
                        "    if v is _ABSENT:",
                        f"        raise _s.missing(path, {name})",
                        f"    {attr} = {fld.scalar.json_expr('v', name)}",
                    ]
                else:
                    lines.append(
                        f"    {attr} = None if v is _ABSENT else {fld.scalar.json_expr('v', name)}"
                    )
        lines += self.construct(cdef)
        return lines

    def emit_xml_in(
        self,
        cdef: ClassDef,
        view: str,
        skip: frozenset[str],
        skips: dict[str, frozenset[str]] | None = None,
    ) -> list[str]:
        # A tag the view leaves out maps to "": known (not refused), not read.
        tags = ", ".join(
            f"{f.xml_tag!r}: {'' if f.attr in skip else f.attr!r}" for f in cdef.fields
        )
        many = ", ".join(repr(f.attr) for f in cdef.fields if f.kind in ("list", "leaf-list"))
        suffix = f"_{view}" if view else ""
        what = f"  # view {view}: leaves out {', '.join(sorted(skip))}" if skip else ""
        head = (
            [
                f"_{cdef.name}_MANY = frozenset({{{many}}})"
                if many
                else f"_{cdef.name}_MANY: frozenset[str] = frozenset()",
            ]
            if not view
            else []
        )
        lines = [
            f"_{cdef.name}_TAGS{suffix}: dict[str, str] = {{{tags}}}",
            *head,
            "",
            "",
            f"def _{cdef.name}_from_xml{suffix}(element: etree._Element, path: str, ignore_unknown: bool) -> {cdef.name}:{what}",
            "    one: dict[str, etree._Element] = {}",
            "    many: dict[str, list[etree._Element]] = {}",
            "    for child in element:  # inline: one call less per element",
            f"        name = _{cdef.name}_TAGS{suffix}.get(child.tag)",
            "        if not name:",
            "            if name is None and not ignore_unknown:",
            "                raise _s.xml_unknown(child, path)",
            f"        elif name in _{cdef.name}_MANY:",
            "            many.setdefault(name, []).append(child)",
            "        elif name in one:",
            "            raise _s.xml_duplicate(path, name)",
            "        else:",
            "            one[name] = child",
        ]
        for fld in cdef.fields:
            name, attr = repr(fld.name), "f_" + fld.attr
            if fld.attr in skip:
                lines.append(f"    {attr} = {self.skipped_value(fld)}")
            elif fld.kind == "container":
                reader = self.reader(fld.cls, "xml", view, skips)
                lines += [
                    f"    e = one.get({fld.attr!r})",
                    f"    {attr} = _EMPTY_{fld.cls} if e is None else "
                    f"{reader}(e, path + {'/' + fld.name!r}, ignore_unknown)",
                ]
            elif fld.kind == "list":
                reader = self.reader(fld.cls, "xml", view, skips)
                lines += [
                    f"    x = many.get({fld.attr!r})",
                    "    if x is None:",
                    f"        {attr}: tuple[{fld.cls}, ...] = ()",
                    "    else:",
                    *self.read_entries(attr, reader, "x", "x", fld.name),
                    f"    if len({attr}) > 1{self.keys_differ(attr, fld)}:",
                    f"        _s.unique_keys({attr}, {fld.keys!r}, path, {name})",
                ]
            else:
                assert fld.scalar is not None
                conv = fld.scalar.xml_in.format(e="{e}", p="path", n=name)
                if fld.kind == "leaf-list":
                    lines.append(
                        f"    {attr} = tuple([{conv.format(e='x')} for x in many.get({fld.attr!r}, ())])"
                    )
                else:
                    lines.append(f"    e = one.get({fld.attr!r})")
                    if fld.required:
                        lines += ["    if e is None:", f"        raise _s.missing(path, {name})"]
                        lines.append(f"    {attr} = {conv.format(e='e')}")
                    else:
                        lines.append(f"    {attr} = None if e is None else {conv.format(e='e')}")
        lines += self.construct(cdef)
        return lines

    @staticmethod
    def nested(cdef: ClassDef) -> bool:
        """Whether `cdef` holds containers or lists (parts a re-parse may take over)."""
        return any(f.kind in ("container", "list") for f in cdef.fields)

    @staticmethod
    def read_entries(attr: str, reader: str, items: str, raw: str, name: str) -> list[str]:
        """A list's entries read by map() (no comprehension, no path per entry); on an error
        the entries are read again one by one with their index in the path, to name it."""
        return [
            "        try:",
            f"            {attr} = tuple(map({reader}, {items}, _repeat(path + {'/' + name!r}),"
            " _repeat(ignore_unknown)))",
            "        except ModelError:",
            f"            _s.locate({reader}, {raw}, path + {'/' + name!r}, ignore_unknown)",
            "            raise",
        ]

    @staticmethod
    def construct(cdef: ClassDef) -> list[str]:
        """Fill a builder (same slots, not frozen: plain attribute stores), then make it the
        frozen class. A frozen dataclass's __init__ goes through object.__setattr__ per field
        and a slot descriptor's __set__ is a call per field: both several times slower."""
        lines = [f"    made = _new(_{cdef.name}_B)"]
        lines += [f"    made.{f.attr} = f_{f.attr}" for f in cdef.fields]
        lines += [
            f"    made.__class__ = {cdef.name}  # type: ignore[assignment]",
            "    return made  # type: ignore[return-value]",
        ]
        return [*lines, "", ""]

    def builder(self, cdef: ClassDef) -> list[str]:
        lines = [
            f"class _{cdef.name}_B:",
            f'    """Builds a {cdef.name}: its slots, not frozen; it becomes a {cdef.name} when full."""',
            "",
            f"    __slots__ = {cdef.name}.__slots__",
        ]
        for fld in cdef.fields:
            lines.append(f"    {fld.attr}: {self.annotation(fld)[0]}")
        return [*lines, "", ""]

    def emit_json_out(self, cdef: ClassDef) -> list[str]:
        lines = [
            f"def _{cdef.name}_to_json(o: {cdef.name}) -> dict[str, Any]:",
            "    d: dict[str, Any] = {}",
        ]
        for fld in cdef.fields:
            key, attr = repr(fld.json_key), fld.attr
            if fld.kind == "container":
                lines += [
                    f"    c = _{fld.cls}_to_json(o.{attr})",
                    "    if c:",
                    f"        d[{key}] = c",
                ]
            elif fld.kind == "list":
                lines += [
                    f"    if o.{attr}:",
                    f"        d[{key}] = [_{fld.cls}_to_json(x) for x in o.{attr}]",
                ]
            else:
                assert fld.scalar is not None
                if fld.kind == "leaf-list":
                    item = fld.scalar.json_out.format(x="x")
                    lines += [f"    if o.{attr}:", f"        d[{key}] = [{item} for x in o.{attr}]"]
                elif fld.required:
                    lines.append(f"    d[{key}] = {fld.scalar.json_out.format(x='o.' + attr)}")
                else:
                    lines += [
                        f"    if o.{attr} is not None:",
                        f"        d[{key}] = {fld.scalar.json_out.format(x='o.' + attr)}",
                    ]
        lines += ["    return d", "", ""]
        return lines


def root_methods(cdef: ClassDef, root: Any) -> list[str]:
    module = root.i_module.arg
    ns = root.i_module.search_one("namespace").arg
    top = f"{module}:{root.arg}"
    tag = f"{{{ns}}}{root.arg}"
    return [
        "",
        "    @classmethod",
        "    def from_json(",
        "        cls,",
        "        doc: object,",
        "        *,",
        "        ignore_unknown: bool = False,",
        "        view: View = View.FULL,",
        f"        reuse: tuple[object, {cdef.name}] | None = None,",
        "    ) -> " + cdef.name + ":",
        f'        """The tree of an RFC 7951 document `{{"{top}": {{...}}}}` (see View for `view`).',
        "",
        "        `reuse`: an earlier document and its tree (full view, same `ignore_unknown`); the",
        "        parts equal to the earlier ones are taken from its tree, not parsed again. For",
        "        documents validated against the schema (a datastore's), where equal means the",
        '        same typed values."""',
        '        top = doc if type(doc) is dict else _s.obj(doc, "/")',
        "        if not ignore_unknown and not _TOP_MEMBERS.issuperset(top):",
        '            _s.check_members(top, _TOP_MEMBERS, "/", ignore_unknown)',
        f"        if {top!r} not in top:",
        f'            raise _s.missing("", {top!r})',
        "        if reuse is not None and view is View.FULL:",
        "            earlier = reuse[0]",
        f"            pv = earlier.get({top!r}, _ABSENT) if type(earlier) is dict else _ABSENT",
        "            try:",
        f"                return _{cdef.name}_from_json_reusing(top[{top!r}], {'/' + top!r}, ignore_unknown, pv, reuse[1])",
        "            except (ModelError, TypeError):",
        "                pass  # the full parse below names the error as it always does",
        f"        return _FROM_JSON[view](top[{top!r}], {'/' + top!r}, ignore_unknown)",
        "",
        "    @classmethod",
        "    def from_json_text(",
        "        cls, text: str | bytes, *, ignore_unknown: bool = False, view: View = View.FULL",
        "    ) -> " + cdef.name + ":",
        '        """The tree of an RFC 7951 JSON text."""',
        "        return cls.from_json(_s.json_document(text), ignore_unknown=ignore_unknown, view=view)",
        "",
        "    @classmethod",
        "    def from_xml(",
        "        cls, xml: str | bytes, *, ignore_unknown: bool = False, view: View = View.FULL",
        "    ) -> " + cdef.name + ":",
        f'        """The `{root.arg}` of NETCONF XML: the element itself or inside <rpc-reply>, <data>'
        ' or <config>."""',
        f"        element = _s.find_root(xml, {tag!r}, {'/' + root.arg!r})",
        f"        return _FROM_XML[view](element, {'/' + root.arg!r}, ignore_unknown)",
        "",
        "    def to_json(self) -> dict[str, Any]:",
        '        """The RFC 7951 document of this tree (unset leaves and empty containers left out)."""',
        f"        return {{{top!r}: _{cdef.name}_to_json(self)}}",
    ]


def view_enum(views: list[str]) -> list[str]:
    lines = [
        "class View(enum.Enum):",
        '    """What a parse reads: FULL the whole tree; a consumer\'s view leaves out what that',
        "    consumer never reads (those parts come back empty: such a tree is for reading the",
        '    view\'s parts only, never for writing back). Every part read keeps all its checks."""',
        "",
        "    FULL = 'full'",
    ]
    lines += [f"    {view} = {view.lower()!r}" for view in views]
    return [*lines, "", ""]


HEADER = '''"""Typed model of the qkd_node tree (etsi-qkd-sdn-node with the qkdsdn-node augments).

Generated by `python -m yang.generate` (pyang plugin yang/codegen/pymodel.py): do not edit.
Leaves with a YANG default are None when unset; `<leaf>_or_default` gives the effective value.
A `View` reads only what one consumer uses (the views are declared in the generator).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat as _repeat
from typing import Any

from lxml import etree

from yang import model_support as _s
from yang.model_support import ModelError as ModelError

_ABSENT: Any = object()
_NOTHING: dict[str, Any] = {}  # no earlier value to reuse (never changed)
_STRINGS = frozenset({str})
_new = object.__new__
'''
