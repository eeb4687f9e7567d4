"""The lab PKI: one CA signs every certificate of the twin, each naming its role and name.

Every certificate carries its identity as a URI SAN `urn:qkdsdn:ROLE:NAME` (common/roles.py);
checks read the role from it, never the CN alone. Layout (docs/architecture.md, State directory):
    STATE_DIR/pki/ca.pem, ca.key               lab CA (ECDSA P-256)
    STATE_DIR/pki/km-<node>.pem/.key           urn:qkdsdn:km:<node>, server + client auth
    STATE_DIR/pki/agent-<node>.pem/.key        urn:qkdsdn:agent:<node>, server auth
    STATE_DIR/pki/sae-<sae_id>.pem/.key        urn:qkdsdn:sae:<sae_id>, client auth
    STATE_DIR/pki/controller.pem/.key          urn:qkdsdn:controller:controller, client auth
    STATE_DIR/pki/operator.pem/.key            urn:qkdsdn:operator:lab, client auth (lab faults)
The CN is the name; server certificates also carry SAN IP:127.0.0.1 and DNS:localhost.
Private keys are written with mode 0600. `create_lab_pki` is idempotent: a certificate that
exists, is signed by the CA, names the same identity and is valid for another day is kept.

A twin of several domains (docs/cross-domain.md) has one CA per domain instead:
`create_domain_pki` writes pki/ca-<D>.pem/.key, controller-<D>.pem and operator-<D>.pem
(identities as above) and signs the domain's KM, agent and SAE certificates with it.

An operator who has a CA of their own passes it: `create_lab_pki(..., ca=load_ca(cert, key))`;
then `ca.pem` is a copy of that CA certificate and no CA key is written to the state directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.roles import Identity, Role, identity_of_certificate

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=1)
CONTROLLER = Identity(Role.CONTROLLER, "controller")
OPERATOR = Identity(Role.OPERATOR, "lab")


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path


@dataclass(frozen=True, repr=False)
class CertificateAuthority:
    """A CA certificate and its private key (kept out of repr)."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self.cert.subject.rfc4514_string()!r})"


@dataclass(frozen=True)
class LabPki:
    ca: CertPaths  # ca.key is absent when an operator's CA was used
    kms: Mapping[str, CertPaths]
    saes: Mapping[str, CertPaths]
    controller: CertPaths
    agents: Mapping[str, CertPaths]
    operator: CertPaths


def create_lab_pki(
    state_dir: Path,
    nodes: Iterable[str],
    saes: Iterable[str],
    *,
    ca: CertificateAuthority | None = None,
    km_hosts: Mapping[str, Sequence[str]] | None = None,
) -> LabPki:
    """Creates (or completes) the PKI under `state_dir/pki`; returns every path.

    `km_hosts` adds names or addresses a node's key manager and agent are reached at
    (node -> hosts) to their certificates' SAN, besides 127.0.0.1 and localhost."""
    km_hosts = km_hosts or {}
    pki_dir = state_dir / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_paths = CertPaths(pki_dir / "ca.pem", pki_dir / "ca.key")
    if ca is None:
        ca = _load_or_create_lab_ca(ca_paths)
    else:
        _write_atomic(ca_paths.cert, ca.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return _issue_leaves(ca, ca_paths, pki_dir, list(nodes), saes, km_hosts, "")


def domain_ca_paths(state_dir: Path, domain: str) -> CertPaths:
    """pki/ca-<domain>.pem and .key."""
    return _pair(state_dir / "pki", f"ca-{domain}")


def create_domain_pki(
    state_dir: Path,
    domain: str,
    nodes: Iterable[str],
    saes: Iterable[str],
    *,
    km_hosts: Mapping[str, Sequence[str]] | None = None,
) -> LabPki:
    """Creates (or completes) one domain's PKI: its own CA (pki/ca-<domain>.pem) signing
    its nodes' KM and agent certificates, its SAEs', its controller's (controller-<domain>)
    and the lab operator's for its agents (operator-<domain>). Idempotent like create_lab_pki."""
    pki_dir = state_dir / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_paths = domain_ca_paths(state_dir, domain)
    ca = _load_or_create_lab_ca(ca_paths, f"qkd-sdn domain {domain} CA")
    return _issue_leaves(ca, ca_paths, pki_dir, list(nodes), saes, km_hosts or {}, f"-{domain}")


def _issue_leaves(
    ca: CertificateAuthority,
    ca_paths: CertPaths,
    pki_dir: Path,
    nodes: list[str],
    saes: Iterable[str],
    km_hosts: Mapping[str, Sequence[str]],
    suffix: str,
) -> LabPki:
    """Every leaf certificate signed by `ca`; `suffix` names the controller and operator files."""
    kms = {
        node: issue_certificate(
            ca,
            Identity(Role.KM, node),
            _pair(pki_dir, f"km-{node}"),
            server=True,
            client=True,
            reuse=True,
            hosts=km_hosts.get(node, ()),
        )
        for node in nodes
    }
    agents = {
        node: issue_certificate(
            ca,
            Identity(Role.AGENT, node),
            _pair(pki_dir, f"agent-{node}"),
            server=True,
            client=False,
            reuse=True,
            hosts=km_hosts.get(node, ()),  # the node's address: its KM dials the agent there
        )
        for node in nodes
    }
    sae_paths = {
        sae: issue_certificate(
            ca, Identity(Role.SAE, sae), _pair(pki_dir, f"sae-{sae}"), client=True, reuse=True
        )
        for sae in saes
    }
    controller = issue_certificate(
        ca, CONTROLLER, _pair(pki_dir, f"controller{suffix}"), client=True, reuse=True
    )
    operator = issue_certificate(
        ca, OPERATOR, _pair(pki_dir, f"operator{suffix}"), client=True, reuse=True
    )
    return LabPki(
        ca=ca_paths,
        kms=kms,
        saes=sae_paths,
        controller=controller,
        agents=agents,
        operator=operator,
    )


def create_ca(paths: CertPaths, common_name: str = "qkd-sdn lab CA") -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(paths.key, key)
    _write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CertificateAuthority(cert, key)


def load_ca(cert_path: Path, key_path: Path, password: bytes | None = None) -> CertificateAuthority:
    """Loads an existing CA (e.g. an operator's own) from PEM files."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"{key_path}: unsupported CA key type {type(key).__name__}")
    if key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError(f"{key_path} is not the private key of {cert_path}")
    return CertificateAuthority(cert, key)


def issue_certificate(
    ca: CertificateAuthority,
    identity: Identity,
    paths: CertPaths,
    *,
    server: bool = False,
    client: bool = True,
    reuse: bool = False,
    hosts: Sequence[str] = (),
) -> CertPaths:
    """Writes an ECDSA P-256 key and a certificate for `identity` signed by `ca`: CN = the
    name, URI SAN `urn:qkdsdn:ROLE:NAME`.

    server=True adds serverAuth and SAN IP:127.0.0.1, DNS:localhost, plus `hosts` (DNS
    names or IP addresses). reuse=True keeps an existing certificate that is still valid,
    signed by `ca`, for the same identity, usages and SAN.
    """
    common_name = identity.name
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    if server:
        san += _san_entries(hosts)
    if reuse and _still_good(ca, identity, paths, server=server, client=client, san=san):
        return paths
    key = ec.generate_private_key(ec.SECP256R1())
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    if not usages:
        raise ValueError("a certificate needs server or client usage")
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_VALID_DAYS), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    algorithm = None if isinstance(ca.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(ca.key, algorithm)
    _write_key(paths.key, key)
    _write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def common_name_of(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _load_or_create_lab_ca(
    paths: CertPaths, common_name: str = "qkd-sdn lab CA"
) -> CertificateAuthority:
    if paths.cert.exists() and paths.key.exists():
        ca = load_ca(paths.cert, paths.key)
        if ca.cert.not_valid_after_utc - _now() > RENEW_BEFORE:
            return ca
    return create_ca(paths, common_name)


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """127.0.0.1, ::1 and localhost, then each host as an IP address or a DNS name, once each."""
    entries: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ]
    for host in hosts:
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not host or any(c.isspace() or c in "/:" for c in host):
                raise ValueError(
                    f"not a host name or address for a certificate: {host!r}"
                ) from None
            entry = x509.DNSName(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def _still_good(
    ca: CertificateAuthority,
    identity: Identity,
    paths: CertPaths,
    *,
    server: bool,
    client: bool,
    san: Sequence[x509.GeneralName],
) -> bool:
    if not (paths.cert.exists() and paths.key.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        key = serialization.load_pem_private_key(paths.key.read_bytes(), None)
        _verify_signature(ca, cert)
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (ValueError, InvalidSignature, x509.ExtensionNotFound):
        return False
    wanted = ({ExtendedKeyUsageOID.SERVER_AUTH} if server else set()) | (
        {ExtendedKeyUsageOID.CLIENT_AUTH} if client else set()
    )
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (
        same_key
        and common_name_of(cert) == identity.name
        and identity_of_certificate(cert) == identity
        and set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        == set(san)
        and cert.issuer == ca.cert.subject
        and usages == wanted
        and cert.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def _verify_signature(ca: CertificateAuthority, cert: x509.Certificate) -> None:
    public = ca.cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        assert cert.signature_hash_algorithm is not None
        public.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    elif isinstance(public, rsa.RSAPublicKey):
        assert cert.signature_hash_algorithm is not None
        public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    elif isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise ValueError("unsupported CA key type")


def _pair(pki_dir: Path, stem: str) -> CertPaths:
    if "/" in stem or stem.startswith("."):
        raise ValueError(f"unusable name for a certificate file: {stem!r}")
    return CertPaths(pki_dir / f"{stem}.pem", pki_dir / f"{stem}.key")


def _write_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, pem, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    tmp.replace(path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
