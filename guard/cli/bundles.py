"""`guard policy push|show|keygen`: sign and publish a policy directory as the fleet's bundle, show
the live one, make a signing key pair. Never prints a private key.

push checks the signature it made against the fleet's public key (`--public-key`, or `redis.publicKey`
of `--config guard.yaml`) before anything reaches Redis: a bundle signed with the wrong key would
replace the live bundle in Redis and be refused by every replica, leaving the fleet on stale
policies and the next restart with none from Redis.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guard import settings as settings_module
from guard.cli import placement
from guard.cli.redis import fail, with_gateway
from guard.federation import bundles
from guard.federation.connection import Gateway
from guard.kube.errors import ConfigError
from guard.policy.loading import load_policies, policy_files


def add_policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add push, show and keygen to `guard policy`'s subparsers."""
    push = sub.add_parser("push", help="validate, sign and publish a policy directory to Redis",
                          description="Validate every policy file of DIR, sign the set with the fleet's "
                                      "key and make it the live bundle every replica applies.")
    push.add_argument("directory", metavar="DIR", help="a directory of TenantPolicy files")
    push.add_argument("--redis", required=True, metavar="URL", help="the fleet's Redis (redis:// or rediss://)")
    push.add_argument("--signing-key", required=True, metavar="KEY", help="Ed25519 private key (PEM)")
    check = push.add_mutually_exclusive_group(required=True)
    check.add_argument("--public-key", metavar="PUB",
                       help="the fleet's Ed25519 public key (PEM): the signature is checked against it")
    check.add_argument("--config", metavar="FILE",
                       help="guard.yaml whose redis.publicKey the fleet verifies bundles with")
    push.set_defaults(run=run_push)
    show = sub.add_parser("show", help="print the live policy bundle, or the effective policies of a cluster",
                          description="With --redis: the live bundle's version, when it was made and its "
                                      "files. With --cluster NAME DIR: the policies of DIR as cluster NAME "
                                      "enforces them, placement and overrides resolved (its labels from "
                                      "--config).")
    show.add_argument("directory", nargs="?", metavar="DIR",
                      help="with --cluster: a directory (or file) of TenantPolicy files")
    show.add_argument("--redis", metavar="URL", help="the fleet's Redis (redis:// or rediss://)")
    show.add_argument("--public-key", metavar="KEY", help="also verify the signature")
    show.add_argument("--cluster", metavar="NAME", help="print the effective policies of this cluster")
    show.add_argument("--config", metavar="FILE",
                      help="with --cluster: guard.yaml that gives the cluster's labels")
    show.set_defaults(run=run_show)
    keygen = sub.add_parser("keygen", help="write an Ed25519 key pair for signing bundles")
    keygen.add_argument("prefix", metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub")
    keygen.set_defaults(run=run_keygen)


def read_policy_dir(directory: str) -> tuple[dict[str, str], list[str]]:
    """The policy files of `directory` by name, and every validation problem."""
    _, problems = load_policies([directory])
    files, missing = policy_files([directory])
    problems += [p for p in missing if p not in problems]
    if not files and not problems:
        problems.append(f"{directory}: no policy files (*.yaml, *.yml)")
    return {path.name: path.read_text(encoding="utf-8") for path in files}, problems


def run_push(args: argparse.Namespace) -> int:
    files, problems = read_policy_dir(args.directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    try:
        key = bundles.load_private_key(args.signing_key)
    except (OSError, ValueError) as e:
        return fail(f"{args.signing_key}: cannot load the signing key ({type(e).__name__})")
    public, where = fleet_key(args)
    if public is None:
        return fail(where)
    probe = bundles.Bundle(0, files)
    try:
        bundles.verify(probe.payload(), bundles.sign(probe, key), public)
    except bundles.BundleRefused:
        return fail(f"{args.signing_key}: does not match the fleet's public key {where}; "
                    "every replica would refuse this bundle, nothing was pushed")
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def push(gateway: Gateway) -> int:
        bundle = await bundles.publish(gateway, files, key, created=created)
        print(f"pushed policy bundle v{bundle.version} ({len(files)} files)")
        return 0

    return with_gateway(args.redis, push)


def fleet_key(args: argparse.Namespace) -> tuple[Ed25519PublicKey | None, str]:
    """The fleet's public key and where it came from, or None and one line saying why not."""
    path: str | None = args.public_key
    if path is None:
        try:
            redis = settings_module.load(args.config).redis
        except ConfigError as e:
            return None, e.problems[0]
        path = redis.public_key if redis is not None else None
        if path is None:
            return None, f"{args.config}: redis.publicKey is not set; pass --public-key"
    try:
        return bundles.load_public_key(path), path
    except (OSError, ValueError) as e:
        return None, f"{path}: cannot load the public key ({type(e).__name__})"


def run_show(args: argparse.Namespace) -> int:
    if args.cluster is not None:
        if args.directory is None:
            return fail("--cluster needs DIR, the policies to resolve")
        return placement.run_show_cluster(args.cluster, args.config, [args.directory])
    if args.redis is None:
        return fail("give --redis URL (the live bundle) or --cluster NAME DIR (a cluster's effective "
                    "policies)")

    async def show(gateway: Gateway) -> int:
        stored = await bundles.fetch(gateway)
        if stored is None:
            return fail("no policy bundle has been pushed")
        bundle, verdict = _decode(stored, args.public_key)
        print(f"version {bundle.version}  created {bundle.created or '-'}  signature {verdict}")
        for name in sorted(bundle.files):
            print(f"  {name}")
        return 0 if verdict != "INVALID" else 1

    return with_gateway(args.redis, show)


def _decode(stored: tuple[bytes, bytes], public_key: str | None) -> tuple[bundles.Bundle, str]:
    payload, signature = stored
    if public_key:
        try:
            return bundles.verify(payload, signature, bundles.load_public_key(public_key)), "valid"
        except bundles.BundleRefused:
            pass
    data = json.loads(payload)
    bundle = bundles.Bundle(int(data["version"]), dict(data["files"]), str(data.get("created", "")))
    return bundle, "INVALID" if public_key else "not checked"


def run_keygen(args: argparse.Namespace) -> int:
    private, public = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    if private.exists():
        return fail(f"{private} exists; refusing to overwrite a signing key")
    try:
        bundles.keygen(private, public)
    except OSError as e:
        return fail(f"cannot write the key pair: {e.strerror}")
    print(f"wrote {private} (keep it secret) and {public} (give it to every replica)")
    return 0
