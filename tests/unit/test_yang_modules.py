"""The YANG modules: clean under `pyang --strict`, tree as the golden file, ETSI facts kept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
YANG_DIR = ROOT / "yang"
GOLDEN_TREE = ROOT / "tests" / "golden" / "etsi-qkd-sdn-node.tree"
MODULE_FILES = sorted(YANG_DIR.glob("*.yang"))


def pyang(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyang", "-p", str(YANG_DIR), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def module_text(name: str) -> str:
    return (YANG_DIR / f"{name}.yang").read_text(encoding="utf-8")


def test_all_modules_are_present() -> None:
    assert {file.stem for file in MODULE_FILES} == {
        "etsi-qkd-sdn-node",
        "etsi-qkd-node-types",
        "qkdsdn-node",
        "ietf-yang-types",
        "ietf-inet-types",
        "ietf-netconf-acm",
        "ietf-subscribed-notifications",
        "ietf-yang-push",
        "ietf-datastores",
        "ietf-yang-patch",
    }


@pytest.mark.parametrize("module", MODULE_FILES, ids=lambda file: file.stem)
def test_pyang_strict_gives_no_errors_and_no_warnings(module: Path) -> None:
    result = pyang("--strict", str(module))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_tree_matches_the_golden_file() -> None:
    result = pyang("-f", "tree", str(YANG_DIR / "etsi-qkd-sdn-node.yang"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == GOLDEN_TREE.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "namespace", "prefix", "revisions"),
    [
        (
            "etsi-qkd-sdn-node",
            "urn:etsi:qkd:yang:etsi-qkd-node",
            "etsi-qkdn",
            ("2022-01-30", "2020-09-30"),
        ),
        (
            "etsi-qkd-node-types",
            "urn:etsi:qkd:yang:etsi-qkd-node-types",
            "etsi-qkdn-types",
            ("2022-01-30", "2020-09-30"),
        ),
        ("qkdsdn-node", "urn:qkdsdn:yang:qkdsdn-node", "qkdsdn", ("2026-12-03", "2026-11-26")),
    ],
)
def test_module_header(name: str, namespace: str, prefix: str, revisions: tuple[str, ...]) -> None:
    """The revision history as published, newest first (clients match modules by it)."""
    text = module_text(name)
    assert text.startswith(f"module {name} {{\n  yang-version 1;\n")
    assert f'namespace "{namespace}";' in text
    assert f"prefix {prefix};" in text
    assert re.findall(r"^  revision (\S+) \{", text, re.MULTILINE) == list(revisions)


def test_node_module_has_no_rpcs() -> None:
    assert not re.search(r"^\s*rpc\s", module_text("etsi-qkd-sdn-node"), re.MULTILINE)


IDENTITIES = {
    "QKD-TECHNOLOGY-TYPES": (
        "qkd-technology-types",
        {"CV-QKD", "DV-QKD", "DV-QKD-COW", "DV-QKD-2Ws"},
    ),
    "QKDN-STATUS-TYPES": ("qkdn-status-types", {"NEW", "OPERATING", "DOWN", "FAILURE", "OUT"}),
    "QKD-LINK-TYPES": ("qkd-link-types", {"VIRT", "PHYS"}),
    "QKD-ROLE-TYPES": ("qkd-role-types", {"TRANSMITTER", "RECEIVER", "TRANSCEIVER"}),
    "QKD-APP-TYPES": ("qkd-app-types", {"CLIENT", "INTERNAL"}),
    "PHYS-PERF-TYPES": ("phys-perf-types", {"QBER", "SNR"}),
    "LINK-STATUS-TYPES": ("link-status-types", {"ACTIVE", "PASSIVE", "PENDING", "OFF"}),
    "IFACE-STATUS-TYPES": ("iface-status-types", {"ENABLED", "DISABLED", "FAILED"}),
    "APP-STATUS-TYPES": ("app-status-types", {"ON", "DISCONNECTED", "OUT-OF-TIME", "ZOMBIE"}),
    "SEVERITY-TYPES": ("severity-types", {"MAJOR", "MINOR"}),
}


def test_identities_and_their_typedefs() -> None:
    text = module_text("etsi-qkd-node-types")
    derived: dict[str, set[str]] = {}
    for name, base in re.findall(r"identity (\S+) \{\n\s+base (\S+);", text):
        derived.setdefault(base, set()).add(name)
    assert derived == {base: names for base, (_, names) in IDENTITIES.items()}
    for base, (typedef, _) in IDENTITIES.items():
        assert re.search(
            rf"typedef {typedef} \{{\n\s+type identityref \{{\n\s+base {base};", text
        ), typedef


def test_when_conditions_compare_identities_in_the_published_module_name_form() -> None:
    """'etsi-qkd-node-types:PHYS' is the module's name (what other validators read) and,
    as the import prefix is the same, also a declared prefix (what pyang wants)."""
    text = module_text("etsi-qkd-sdn-node")
    assert re.search(r"import etsi-qkd-node-types \{\n\s+prefix etsi-qkd-node-types;", text)
    whens = re.findall(r'when "([^"]+)";', text)
    assert len(whens) == 7
    form = r"(\.\./)+qkdl_type = 'etsi-qkd-node-types:(VIRT|PHYS)'"
    assert all(re.fullmatch(form, w) for w in whens)
    assert "../../qkdl_type = 'etsi-qkd-node-types:PHYS'" in whens  # phys_perf


@pytest.mark.parametrize(
    ("container", "state_child"),
    [("app_statistics", "statistics* [end_time]"), ("qkdl_performance", "phys_perf* [perf_type]")],
)
def test_config_false_sits_where_the_standard_puts_it(container: str, state_child: str) -> None:
    """ETSI GS QKD 015 marks the lists inside these containers config false, not the containers."""
    tree = pyang("-f", "tree", str(YANG_DIR / "etsi-qkd-sdn-node.yang")).stdout
    assert re.search(rf"\+--rw {container}\n", tree)
    assert re.search(rf"\+--ro {re.escape(state_child)}\n", tree)
