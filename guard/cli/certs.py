"""`guard certs init DIR`: a CA, a serving certificate and client certificates for trying guard out.

Client certificates carry CN = user and one O per group, which is how the api-server (and guard)
read a certificate user. Files are written atomically (temp file + rename), keys with mode 0600, and an
existing CA is never overwritten without `--force`, since that would silently invalidate every
certificate it signed. This module must never print a private key.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from guard.config.files import write_atomic

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (P-256: small, fast, accepted by kubectl and Python's ssl)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(common_name: str = "guard-ca", *, days: int = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False)
    cert = (_builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert, key)


def _leaf(ca: KeyPair, subject: x509.Name, usage: x509.ObjectIdentifier, days: int,
          sans: list[x509.GeneralName] | None = None) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(subject, ca.cert.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_server_cert(ca: KeyPair, hosts: Sequence[str] = (), *, days: int = 365) -> KeyPair:
    """A serving certificate for localhost, 127.0.0.1, ::1 and each of `hosts`."""
    names = list(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1] if hosts else "guard")])
    return _leaf(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, days, [_san(h) for h in names])


def make_client_cert(ca: KeyPair, user: str, groups: Sequence[str] = (), *, days: int = 365) -> KeyPair:
    """A client certificate: CN = user, one O per group."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    subject = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    return _leaf(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def write_pair(directory: Path, stem: str, pair: KeyPair) -> None:
    write_atomic(directory / f"{stem}.key", pair.key_pem(), mode=0o600)
    write_atomic(directory / f"{stem}.crt", pair.cert_pem())


def parse_user(spec: str) -> tuple[str, list[str]]:
    """`NAME[:GROUP,GROUP...]`, split at the first ':' so groups like system:masters work; the name is
    also a file stem, so it may contain neither ':' nor '/'."""
    name, _, groups = spec.partition(":")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad --user {spec!r}: want NAME[:GROUP,GROUP...] with no '/' in NAME")
    return name, [g for g in groups.split(",") if g]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    init = sub.add_parser("init", help="write ca.crt/ca.key, server.crt/server.key and client certificates")
    init.add_argument("dir", type=Path, metavar="DIR", help="where the keys and certificates are written")
    init.add_argument("--host", action="append", default=[], metavar="NAME",
                      help="extra DNS name or IP for the serving certificate (repeatable)")
    init.add_argument("--user", action="append", default=[], metavar="NAME[:GROUP,GROUP...]",
                      help="write NAME.crt/NAME.key with CN=NAME and O=each group (repeatable)")
    init.add_argument("--days", type=int, default=365, help="validity of the leaf certificates")
    init.add_argument("--force", action="store_true", help="replace an existing CA in DIR")


def run(args: argparse.Namespace) -> int:
    try:
        users = [parse_user(u) for u in args.user]
        if args.days <= 0:
            raise ValueError(f"bad --days {args.days}: must be positive")
        for host in args.host:
            if not host or "/" in host or " " in host:
                raise ValueError(f"bad --host {host!r}")
        directory: Path = args.dir
        if (directory / "ca.crt").exists() and not args.force:
            raise ValueError(f"{directory / 'ca.crt'} exists; pass --force to replace the CA")
        directory.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as e:
        print(f"guard certs init: {e}", file=sys.stderr)
        return 1
    ca = make_ca()
    write_pair(directory, "ca", ca)
    write_pair(directory, "server", make_server_cert(ca, args.host, days=args.days))
    for name, groups in users:
        write_pair(directory, name, make_client_cert(ca, name, groups, days=args.days))
    print(f"wrote CA, server and {len(users)} client certificate(s) to {directory}")
    return 0
