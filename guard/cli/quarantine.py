"""`guard quarantine list|release` and the Redis-backed `guard policy push|show|keygen` commands.

Each command connects to the Redis named by `--redis`, does one thing and exits: 0 on success,
1 with one clear line on stderr otherwise. `guard.cli.policy` adds the policy sub-subcommands by
calling `add_policy_commands`. Never prints a password or a private key.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from guard.federation import bundles
from guard.federation.config import RedisSettings, parse_redis
from guard.federation.connection import FederationError, Gateway
from guard.federation.quarantine import QuarantineBoard
from guard.policy.loading import load_policies, policy_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`guard quarantine`: list the quarantined clients, or release one."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="print every quarantined client")
    listing.add_argument("--redis", required=True, metavar="URL", help="the shared Redis")
    release = sub.add_parser("release", help="end a client's quarantine on every replica")
    release.add_argument("client", metavar="CLIENT", help="the client key as `list` prints it")
    release.add_argument("--redis", required=True, metavar="URL", help="the shared Redis")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _with_gateway(args.redis, _list_quarantine)
    return _with_gateway(args.redis, lambda gw: _release(gw, args.client))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _settings(url: str) -> RedisSettings | None:
    settings, problems = parse_redis(url, "--redis")
    if problems:
        _fail(problems[0])
        return None
    return RedisSettings(url=settings.url, timeout=2.0, pool_size=2)


def _with_gateway(url: str, action: Callable[[Gateway], Awaitable[int]]) -> int:
    settings = _settings(url)
    if settings is None:
        return 1

    async def go() -> int:
        gateway = Gateway(settings)
        try:
            return await action(gateway)
        except FederationError as e:
            return _fail(e.message)
        finally:
            await gateway.close()

    return asyncio.run(go())


async def _list_quarantine(gateway: Gateway) -> int:
    entries = await QuarantineBoard(gateway).entries()
    if not entries:
        print("no client is quarantined")
    for e in sorted(entries, key=lambda e: e.until):
        until = datetime.datetime.fromtimestamp(e.until, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{e.client}\ttenant={e.policy or '-'}\tlevel={e.level}\tuntil={until}")
    return 0


async def _release(gateway: Gateway, client: str) -> int:
    if not await QuarantineBoard(gateway).release(client):
        return _fail(f"{client} is not quarantined")
    print(f"released {client}")
    return 0


def add_policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add push, show and keygen to `guard policy`'s subparsers."""
    push = sub.add_parser("push", help="validate, sign and publish a policy directory to Redis")
    push.add_argument("directory", metavar="DIR")
    push.add_argument("--redis", required=True, metavar="URL")
    push.add_argument("--signing-key", required=True, metavar="KEY", help="Ed25519 private key (PEM)")
    push.set_defaults(run=run_push)
    show = sub.add_parser("show", help="print the live policy bundle's version and files")
    show.add_argument("--redis", required=True, metavar="URL")
    show.add_argument("--public-key", metavar="KEY", help="also verify the signature")
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
        return _fail(f"{args.signing_key}: cannot load the signing key ({type(e).__name__})")
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def push(gateway: Gateway) -> int:
        bundle = await bundles.publish(gateway, files, key, created=created)
        print(f"pushed policy bundle v{bundle.version} ({len(files)} files)")
        return 0

    return _with_gateway(args.redis, push)


def run_show(args: argparse.Namespace) -> int:
    async def show(gateway: Gateway) -> int:
        stored = await bundles.fetch(gateway)
        if stored is None:
            return _fail("no policy bundle has been pushed")
        bundle, verdict = _decode(stored, args.public_key)
        print(f"version {bundle.version}  created {bundle.created or '-'}  signature {verdict}")
        for name in sorted(bundle.files):
            print(f"  {name}")
        return 0 if verdict != "INVALID" else 1

    return _with_gateway(args.redis, show)


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
        return _fail(f"{private} exists; refusing to overwrite a signing key")
    try:
        bundles.keygen(private, public)
    except OSError as e:
        return _fail(f"cannot write the key pair: {e.strerror}")
    print(f"wrote {private} (keep it secret) and {public} (give it to every replica)")
    return 0
