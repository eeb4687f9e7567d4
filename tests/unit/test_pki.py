"""Lab PKI: layout, modes, names and usages, idempotence, an operator's own CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.roles import Identity, Role, identity_of_certificate, parse_identity_uri
from lab.pki import (
    CertPaths,
    common_name_of,
    create_ca,
    create_lab_pki,
    issue_certificate,
    load_ca,
)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_layout_names_usages_and_modes(tmp_path: Path) -> None:
    pki = create_lab_pki(tmp_path, ["n1", "n2"], ["app1"])
    pki_dir = tmp_path / "pki"
    assert pki.ca == CertPaths(pki_dir / "ca.pem", pki_dir / "ca.key")
    assert pki.kms["n1"] == CertPaths(pki_dir / "km-n1.pem", pki_dir / "km-n1.key")
    assert pki.saes["app1"] == CertPaths(pki_dir / "sae-app1.pem", pki_dir / "sae-app1.key")
    assert pki.controller == CertPaths(pki_dir / "controller.pem", pki_dir / "controller.key")
    for key in pki_dir.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    ca = load(pki.ca.cert)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey) and ca_key.curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    km = load(pki.kms["n2"].cert)
    assert common_name_of(km) == "n2" and km.issuer == ca.subject
    assert usages(km) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = km.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    sae = load(pki.saes["app1"].cert)
    assert common_name_of(sae) == "app1"
    assert usages(sae) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert common_name_of(load(pki.controller.cert)) == "controller"
    sae.verify_directly_issued_by(ca)
    km.verify_directly_issued_by(ca)


def test_idempotent_and_completes_missing_or_foreign_files(tmp_path: Path) -> None:
    first = create_lab_pki(tmp_path, ["n1"], ["app1"])
    before = {p: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    create_lab_pki(tmp_path, ["n1"], ["app1"])
    assert {p: p.read_bytes() for p in (tmp_path / "pki").iterdir()} == before
    first.saes["app1"].cert.unlink()
    other = create_lab_pki(tmp_path / "other", ["n1"], [])
    first.kms["n1"].cert.write_bytes(other.kms["n1"].cert.read_bytes())  # another CA's
    second = create_lab_pki(tmp_path, ["n1"], ["app1", "app2"])
    ca = load(second.ca.cert)
    assert second.ca.cert.read_bytes() == before[first.ca.cert]
    for paths in (second.saes["app1"], second.saes["app2"], second.kms["n1"]):
        assert load(paths.cert).issuer == ca.subject
    assert second.kms["n1"].cert.read_bytes() != other.kms["n1"].cert.read_bytes()


def test_operator_ca_rsa(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "op").mkdir()
    cert_path, key_path = tmp_path / "op" / "ca.pem", tmp_path / "op" / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki = create_lab_pki(tmp_path / "state", ["n1"], ["app1"], ca=load_ca(cert_path, key_path))
    assert not pki.ca.key.exists()  # the operator's CA key stays where it is
    assert pki.ca.cert.read_bytes() == cert_path.read_bytes()
    leaf = load(pki.saes["app1"].cert)
    assert leaf.issuer == name
    assert leaf.not_valid_after_utc <= cert.not_valid_after_utc
    key.public_key().verify(
        leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256()
    )
    assert "Operator CA" in repr(load_ca(cert_path, key_path))
    assert "PRIVATE" not in repr(load_ca(cert_path, key_path))


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    ca = create_ca(CertPaths(tmp_path / "ca.pem", tmp_path / "ca.key"))
    other = create_ca(CertPaths(tmp_path / "o.pem", tmp_path / "o.key"))
    with pytest.raises(ValueError, match="not the private key"):
        load_ca(tmp_path / "ca.pem", tmp_path / "o.key")
    paths = CertPaths(tmp_path / "x.pem", tmp_path / "x.key")
    x = Identity(Role.SAE, "x")
    with pytest.raises(ValueError, match="usage"):
        issue_certificate(ca, x, paths, client=False)
    with pytest.raises(ValueError, match="identity name"):
        issue_certificate(ca, Identity(Role.SAE, ""), paths)
    with pytest.raises(ValueError, match="identity name"):
        create_lab_pki(tmp_path, ["../evil"], [])
    assert other.cert.subject == ca.cert.subject  # same default name, different keys
    issue_certificate(ca, x, paths)
    reused = paths.cert.read_bytes()
    issue_certificate(other, x, paths, reuse=True)  # signed by another key: reissued
    assert paths.cert.read_bytes() != reused
    issue_certificate(ca, x, paths, reuse=True)
    reused = paths.cert.read_bytes()
    issue_certificate(ca, Identity(Role.KM, "x"), paths, reuse=True)  # same CN, other role
    assert identity_of_certificate(load(paths.cert)) == Identity(Role.KM, "x")
    assert paths.cert.read_bytes() != reused


def test_every_certificate_names_its_role_and_name(tmp_path: Path) -> None:
    pki = create_lab_pki(tmp_path, ["n1"], ["app1"])
    pki_dir = tmp_path / "pki"
    assert pki.agents["n1"] == CertPaths(pki_dir / "agent-n1.pem", pki_dir / "agent-n1.key")
    assert pki.operator == CertPaths(pki_dir / "operator.pem", pki_dir / "operator.key")
    expected = {
        pki.kms["n1"].cert: "urn:qkdsdn:km:n1",
        pki.agents["n1"].cert: "urn:qkdsdn:agent:n1",
        pki.saes["app1"].cert: "urn:qkdsdn:sae:app1",
        pki.controller.cert: "urn:qkdsdn:controller:controller",
        pki.operator.cert: "urn:qkdsdn:operator:lab",
    }
    for path, uri in expected.items():
        cert = load(path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
        identity = identity_of_certificate(cert)
        assert identity is not None and identity.uri == uri
        assert common_name_of(cert) == identity.name
    agent = load(pki.agents["n1"].cert)
    assert usages(agent) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert usages(load(pki.operator.cert)) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_a_certificate_without_exactly_one_role_has_no_identity() -> None:
    assert parse_identity_uri("urn:qkdsdn:km:qnode1") == Identity(Role.KM, "qnode1")
    assert parse_identity_uri("urn:qkdsdn:admin:root") is None  # unknown role
    assert parse_identity_uri("urn:qkdsdn:km") is None
    assert parse_identity_uri("urn:qkdsdn:km:a:b") is None  # ':' is no name character
    assert parse_identity_uri("spiffe://qkdsdn/km/qnode1") is None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qnode1")])

    def cert_with(uris: list[str]) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime(2020, 1, 1))
            .not_valid_after(dt.datetime(2040, 1, 1))
        )
        if uris:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=False,
            )
        return builder.sign(key, hashes.SHA256())

    assert identity_of_certificate(cert_with([])) is None  # a CN alone names no role
    assert identity_of_certificate(cert_with(["urn:qkdsdn:km:qnode1"])) == Identity(
        Role.KM, "qnode1"
    )
    two = ["urn:qkdsdn:km:qnode1", "urn:qkdsdn:sae:qnode1"]
    assert identity_of_certificate(cert_with(two)) is None
    assert identity_of_certificate(cert_with(["https://example.org", "urn:qkdsdn:sae:a"])) == (
        Identity(Role.SAE, "a")
    )
