"""Client certificate → account rules (cert_to_name): matching and the agent.yaml checks."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents import config as agent_config
from agents.access.cert_names import (
    CertNameError,
    CertNames,
    CertRule,
    fingerprint_of,
    parse_fingerprint,
)
from agents.access.users import hash_password
from lab.configs import write_process_configs
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan


def _cert(cn: str, *sans: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_the_first_matching_rule_names_the_user_by_fingerprint_san_or_cn() -> None:
    laptop = _cert(
        "ops-laptop", x509.DNSName("ops.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.7"))
    )
    robot = _cert("robot", x509.UniformResourceIdentifier("urn:qkdsdn:operator:robot"))
    stranger = _cert("stranger")
    names = CertNames(
        [
            CertRule("by-ip", san="10.0.0.7"),
            CertRule("by-dns", san="ops.example"),  # later: the IP rule matched first
            CertRule("by-uri", san="urn:qkdsdn:operator:robot"),
            CertRule("by-cn", cn="stranger"),
            CertRule("by-print", fingerprint=parse_fingerprint(fingerprint_of(stranger))),
        ]
    )
    assert names.user_of(laptop) == "by-ip"
    assert names.user_of(robot) == "by-uri"
    assert names.user_of(stranger) == "by-cn"
    assert CertNames(names.rules[4:]).user_of(stranger) == "by-print"
    assert names.user_of(_cert("nobody")) is None
    assert names.user_of(None) is None and names.user_of(b"not a certificate") is None
    assert CertNames([CertRule("x", cn="robot")]).user_of(laptop) is None


def test_fingerprints_are_read_with_or_without_colons_and_refused_when_malformed() -> None:
    der = _cert("x")
    printed = fingerprint_of(der)
    plain = printed.removeprefix("sha256:").replace(":", "").lower()
    assert parse_fingerprint(printed) == parse_fingerprint(plain) == bytes.fromhex(plain)
    for bad in ("sha256:AB", plain[:-2], plain + "00", "zz" * 32, plain[:2] + ":" + plain[2:]):
        with pytest.raises(CertNameError, match="64 hex digits"):
            parse_fingerprint(bad)
    with pytest.raises(CertNameError, match="one of fingerprint, san and cn"):
        CertRule("x", san="a", cn="b")
    with pytest.raises(CertNameError, match="one of fingerprint, san and cn"):
        CertRule("x")


def _write(tmp_path: Path, rules: object) -> Path:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    create_lab_pki(tmp_path, ["a", "b"], [])
    path = write_process_configs(plan)["agent-a"]
    data = yaml.safe_load(path.read_text())
    data["netconf"]["cert_to_name"] = rules
    path.write_text(yaml.safe_dump(data))
    return path


def test_agent_yaml_maps_certificates_to_its_accounts(tmp_path: Path) -> None:
    printed = fingerprint_of(_cert("x"))
    path = _write(
        tmp_path,
        [
            {"san": "urn:qkdsdn:operator:lab", "user": "qkdsdn"},
            {"fingerprint": printed, "user": "qkdsdn"},
        ],
    )
    rules = agent_config.load(path, env={}).netconf.cert_to_name
    assert rules == (
        CertRule("qkdsdn", san="urn:qkdsdn:operator:lab"),
        CertRule("qkdsdn", fingerprint=parse_fingerprint(printed)),
    )


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ([{"cn": "x", "user": "ghost"}], r"cert_to_name\[0\].user.*'ghost' is not an account"),
        ([{"cn": "x", "san": "y", "user": "qkdsdn"}], "one of fingerprint, san and cn"),
        ([{"fingerprint": "abc", "user": "qkdsdn"}], r"cert_to_name\[0\].fingerprint"),
        ([{"cn": "x", "user": "qkdsdn", "colour": "red"}], "colour"),
        ({"cn": "x"}, "must be a list"),
    ],
)
def test_bad_certificate_rules_are_named(tmp_path: Path, rules: object, named: str) -> None:
    with pytest.raises(agent_config.ConfigError, match=named):
        agent_config.load(_write(tmp_path, rules), env={})


def test_the_lab_maps_its_operator_certificate_to_the_admin_account(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    create_lab_pki(tmp_path, ["a", "b"], [])
    plan = dataclasses.replace(
        plan,
        credentials=dataclasses.replace(
            plan.credentials,
            admin_username="admin",
            admin_password_hash=hash_password("admin-secret", n=2**10),
        ),
    )
    agent = agent_config.load(write_process_configs(plan)["agent-a"], env={})
    assert agent.netconf.cert_to_name == (CertRule("admin", san="urn:qkdsdn:operator:lab"),)
