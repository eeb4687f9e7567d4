"""Value conversions and errors shared by the generated node model (`yang/model.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import Any, TypeVar

import orjson
from lxml import etree

E = TypeVar("E")
T = TypeVar("T")

UINT32_MAX = 4_294_967_295
# An RFC 7951 / NETCONF envelope a qkd_node tree may come in (any namespace).
_ENVELOPES = frozenset({"rpc-reply", "data", "config"})


class ModelError(ValueError):
    """Data does not fit the YANG model: `path` says where, the message what."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}")


def where(path: str, name: str) -> str:
    return f"{path}/{name}"


# -- JSON (RFC 7951) -------------------------------------------------------------------


def json_document(text: str | bytes) -> object:
    """The document of a JSON text (orjson: the same values as json.loads, a few times faster;
    it refuses what RFC 8259 refuses, NaN and lone surrogates too, and integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ModelError("/", f"not JSON: {exc}") from None


def obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ModelError(path, f"expected an object, not {_kind(value)}")
    return value


def check_members(
    value: Mapping[str, Any], known: frozenset[str], path: str, ignore_unknown: bool
) -> None:
    if ignore_unknown or known.issuperset(value):
        return
    extra = sorted(set(value) - known)
    raise ModelError(
        path, f"unknown member {extra[0]!r} (expected one of {', '.join(sorted(known))})"
    )


def array(value: object, path: str, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ModelError(where(path, name), f"expected an array, not {_kind(value)}")
    return value


SEEN_MAX = 16_384  # values a pattern remembers having matched


def matches(pattern: re.Pattern[str], seen: set[str], value: str) -> bool:
    """`value` fully matches `pattern`; a match is remembered in `seen` (at most SEEN_MAX)."""
    if pattern.fullmatch(value) is None:
        return False
    if len(seen) >= SEEN_MAX:
        seen.clear()
    seen.add(value)
    return True


def locate(
    read: Callable[[Any, str, bool], object], entries: object, path: str, ignore_unknown: bool
) -> None:
    """Reads a list's entries again one by one with `path[index]`: the error names the entry.

    The generated readers read a list's entries without an index in the path (the fast case);
    when one fails, this is called before the error is re-raised as it was."""
    if isinstance(entries, list):
        for index, entry in enumerate(entries):
            read(entry, f"{path}[{index}]", ignore_unknown)


def missing(path: str, name: str) -> ModelError:
    return ModelError(path or "/", f"no {name} (the model requires it)")


def string_json(value: object, path: str, name: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    if not isinstance(value, str):
        raise ModelError(where(path, name), f"expected a string, not {_kind(value)}")
    for pattern in patterns:
        if pattern.fullmatch(value) is None:
            raise ModelError(
                where(path, name), f"{value!r} does not match the pattern {pattern.pattern!r}"
            )
    return value


def date_and_time_json(
    value: object, path: str, name: str, patterns: tuple[re.Pattern[str], ...]
) -> str:
    """A yang:date-and-time in libyang's canonical form (Z is written +00:00)."""
    text = string_json(value, path, name, patterns)
    return text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text


def int_json(value: object, path: str, name: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise ModelError(where(path, name), f"expected an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise ModelError(where(path, name), f"{value} is out of range {low}..{high}")
    return value


def bool_json(value: object, path: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ModelError(where(path, name), f"expected true or false, not {_kind(value)}")
    return value


_DECIMALS: dict[tuple[str, int], Decimal] = {}  # decimal64 texts read before (bounded)


def decimal_json(value: object, path: str, name: str, digits: int) -> Decimal:
    if not isinstance(value, str):
        raise ModelError(where(path, name), f"expected a decimal string, not {_kind(value)}")
    known = _DECIMALS.get((value, digits))
    if known is not None:
        return known
    number = decimal_text(value, path, name, digits)
    if len(_DECIMALS) >= SEEN_MAX:
        _DECIMALS.clear()
    _DECIMALS[value, digits] = number
    return number


def decimal_text(text: str, path: str, name: str, digits: int) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ModelError(where(path, name), f"{text!r} is not a decimal number") from None
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int):
        raise ModelError(where(path, name), f"{text!r} is not a decimal number")
    if abs(number) > Decimal(9_223_372_036_854_775_807).scaleb(-digits):
        raise ModelError(where(path, name), f"{text!r} is out of the decimal64 range")
    if -exponent > digits and number != number.quantize(Decimal(1).scaleb(-digits)):
        raise ModelError(where(path, name), f"{text!r} has more than {digits} fraction digits")
    return number


def decimal_out(number: Decimal) -> str:
    """libyang's canonical decimal64: no trailing zeros, at least one fraction digit."""
    text = f"{number:f}"
    if "." not in text:
        return text + ".0"
    text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def enum_json(table: Mapping[str, E], value: object, path: str, name: str) -> E:
    if isinstance(value, str):
        member = table.get(value)
        if member is not None:
            return member
    expected = ", ".join(table)
    raise ModelError(where(path, name), f"unknown value {value!r} (expected one of {expected})")


# -- XML (NETCONF) ---------------------------------------------------------------------


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


_PARSER = _xml_parser()


def find_root(xml: str | bytes, tag: str, path: str) -> etree._Element:
    """The `tag` element: the document itself, or inside an <rpc-reply>/<data>/<config>."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ModelError("/", f"not XML: {exc}") from None
    if root.tag == tag:
        return root
    if etree.QName(root).localname in _ENVELOPES:
        for found in root.iter(tag):
            return found
    raise ModelError("/", f"no {etree.QName(tag).localname} in the XML document")


def text(element: etree._Element) -> str:
    return (element.text or "").strip()


def reuse_entries(
    read: Callable[[object, str, bool], T],
    values: list[Any],
    earlier_values: object,
    earlier: tuple[T, ...],
    path: str,
    ignore_unknown: bool,
    key: str | None,
) -> tuple[T, ...]:
    """A list's entries read with `read`, but an entry equal to the earlier document's entry
    with the same `key` value (no single key: at the same place) is that entry's tree."""
    if type(earlier_values) is not list or len(earlier_values) != len(earlier):
        return tuple(map(read, values, repeat(path), repeat(ignore_unknown)))
    if key is None:
        return tuple(
            earlier[i]
            if i < len(earlier) and value == earlier_values[i]
            else read(value, path, ignore_unknown)
            for i, value in enumerate(values)
        )
    by_key = {
        value.get(key): (value, made)
        for value, made in zip(earlier_values, earlier, strict=True)
        if type(value) is dict
    }
    entries = []
    for value in values:
        known = by_key.get(value.get(key)) if type(value) is dict else None
        entries.append(
            known[1]
            if known is not None and known[0] == value
            else read(value, path, ignore_unknown)
        )
    return tuple(entries)


def unique_keys(entries: tuple[Any, ...], keys: tuple[str, ...], path: str, name: str) -> None:
    if len(entries) < 2:
        return
    seen: set[tuple[Any, ...]] = set()
    for entry in entries:
        key = tuple(getattr(entry, k) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True))
            raise ModelError(where(path, name), f"two entries with {shown}")
        seen.add(key)


def xml_duplicate(path: str, name: str) -> ModelError:
    return ModelError(where(path, name), "given more than once")


def xml_unknown(element: etree._Element, path: str) -> ModelError:
    if not isinstance(element.tag, str):
        return ModelError(path, "unexpected XML node (entity or processing instruction)")
    name = etree.QName(element)
    return ModelError(
        where(path, name.localname), f"unknown element in namespace {name.namespace!r}"
    )


def int_xml(element: etree._Element, path: str, name: str, low: int, high: int) -> int:
    value = text(element)
    try:
        number = int(value)
    except ValueError:
        raise ModelError(where(path, name), f"{value!r} is not an integer") from None
    if not low <= number <= high:
        raise ModelError(where(path, name), f"{number} is out of range {low}..{high}")
    return number


def bool_xml(element: etree._Element, path: str, name: str) -> bool:
    value = text(element)
    if value == "true":
        return True
    if value == "false":
        return False
    raise ModelError(where(path, name), f"{value!r} is not true or false")


def identity_xml(
    table: Mapping[tuple[str, str], E], element: etree._Element, path: str, name: str
) -> E:
    """An identityref: `prefix:NAME` with the prefix declared for the identity's namespace.

    A prefix declared nowhere (ElementTree and other tools drop declarations used only in
    text) is read by the identity's name alone; a prefix bound to another namespace is not.
    """
    raw = element.text
    if raw:  # the usual case first: no spaces, the prefix declared
        prefix, _, local = raw.rpartition(":")
        member = table.get((element.nsmap.get(prefix or None) or "", local))
        if member is not None:
            return member
    value = text(element)
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    member = table.get((namespace or "", local))
    if member is not None:
        return member
    if namespace is None:
        for (_, name_), candidate in table.items():
            if name_ == local:
                return candidate
    expected = ", ".join(f"{{{ns}}}{ident}" for ns, ident in table)
    raise ModelError(
        where(path, name),
        f"unknown identity {value!r} (namespace {namespace!r}; expected one of {expected})",
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
