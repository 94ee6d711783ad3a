"""`guard kubeconfig`: write a kubeconfig that points at guard, with guard's CA and the user's credential
embedded, to stdout or atomically to a file with mode 0600. Secrets never appear in an error message.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from guard.config.files import write_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="guard's URL, e.g. https://127.0.0.1:7443")
    parser.add_argument("--ca", type=Path, help="CA file that signed guard's serving certificate")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="the user's bearer token")
    who.add_argument("--token-file", type=Path, help="file holding the user's bearer token")
    who.add_argument("--client-cert", type=Path, help="the user's client certificate (needs --client-key)")
    parser.add_argument("--client-key", type=Path, help="the key of --client-cert")
    parser.add_argument("--cluster-name", default="guard", help="cluster and context name (default: guard)")
    parser.add_argument("--user-name", default="guard-user", help="user entry name (default: guard-user)")
    parser.add_argument("-o", "--output", type=Path, help="write here (mode 0600) instead of stdout")


def build(args: argparse.Namespace) -> dict[str, Any]:
    """The kubeconfig document for `args`; ValueError (one line) on bad input."""
    split = urlsplit(args.server)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError(f"bad --server {args.server!r}: want https://HOST[:PORT]")
    cluster: dict[str, Any] = {"server": args.server.rstrip("/")}
    if args.ca:
        cluster["certificate-authority-data"] = _b64(_pem_certs(args.ca, "--ca"))
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": args.cluster_name, "cluster": cluster}],
        "users": [{"name": args.user_name, "user": _user(args)}],
        "contexts": [{"name": args.cluster_name,
                      "context": {"cluster": args.cluster_name, "user": args.user_name}}],
        "current-context": args.cluster_name,
    }


def _user(args: argparse.Namespace) -> dict[str, str]:
    if args.client_cert or args.client_key:
        if not (args.client_cert and args.client_key):
            raise ValueError("--client-cert and --client-key must be given together")
        key = _file(args.client_key, "--client-key")
        try:
            load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"--client-key {args.client_key}: not an unencrypted PEM private key") from e
        return {"client-certificate-data": _b64(_pem_certs(args.client_cert, "--client-cert")),
                "client-key-data": _b64(key)}
    token = args.token if args.token is not None else _file(args.token_file, "--token-file").decode().strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError("the token is empty or contains whitespace")
    return {"token": token}


def _file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"{option} {path}: {e.strerror}") from e


def _pem_certs(path: Path, option: str) -> bytes:
    data = _file(path, option)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{option} {path}: not a PEM certificate") from e
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run(args: argparse.Namespace) -> int:
    try:
        text = yaml.safe_dump(build(args), sort_keys=False)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomic(args.output, text.encode(), mode=0o600)
    except (ValueError, OSError) as e:
        print(f"guard kubeconfig: {e}", file=sys.stderr)
        return 1
    return 0
