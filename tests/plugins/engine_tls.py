"""Certificates for the test engines' TLS (made here with `cryptography`, never fetched): one CA,
a server certificate per engine address, one client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.runtime.engines import EngineTLS


@dataclass(frozen=True)
class ServerFiles:
    ca: Path
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if addresses:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_certificates(directory: Path, addresses: list[str]) -> tuple[EngineTLS, dict[str, ServerFiles]]:
    """Certificates as Python 3.13's strict verification wants them (key usage, key identifiers):
    a CA, a client certificate (what the provisioner presents), and per address a server
    certificate for an engine listening there."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("provisioner test CA", ca_key, None, ca=True)
    ca_path = _pem(directory / "ca.pem", ca_cert)
    issuer = (ca_cert.subject, ca_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(directory / "client-key.pem", client_key)
    client_cert = _issue("provisioner", client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    client = EngineTLS(
        str(ca_path), str(_pem(directory / "client.pem", client_cert)), str(directory / "client-key.pem")
    )
    servers = {}
    for address in addresses:
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = directory / f"server-{address}-key.pem"
        _write_key(key_path, key)
        cert = _issue(address, key, issuer, usage=ExtendedKeyUsageOID.SERVER_AUTH, addresses=(address,))
        servers[address] = ServerFiles(ca_path, _pem(directory / f"server-{address}.pem", cert), key_path)
    return client, servers
