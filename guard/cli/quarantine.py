"""`guard quarantine list|release`: the runaway clients quarantined fleet-wide, and ending one's
quarantine on every replica. Never prints a password.
"""

from __future__ import annotations

import argparse
import datetime

from guard.cli.redis import fail, with_gateway
from guard.federation.connection import Gateway
from guard.federation.quarantine import QuarantineBoard


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
        return with_gateway(args.redis, _list_quarantine)
    return with_gateway(args.redis, lambda gw: _release(gw, args.client))


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
        return fail(f"{client} is not quarantined")
    print(f"released {client}")
    return 0
