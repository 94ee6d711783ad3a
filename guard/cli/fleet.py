"""`guard fleet shed|list|lift`: the fleet-wide emergency brake. An operator orders every replica of
the chosen clusters to refuse matching traffic for a bounded time, with a reason every refused client
reads; lists the orders; lifts one. Orders are signed with the bundle signing key and checked against
the fleet's public key before anything reaches Redis (guard.federation.shedding). Never prints a
private key or a password.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import secrets
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guard import settings as settings_module
from guard.admission.shedding import ANY_CLUSTER, MAX_DURATION, OrderInvalid, ShedOrder
from guard.cli.bundles import fleet_key
from guard.cli.redis import fail, with_gateway
from guard.config.durations import parse_duration
from guard.federation import bundles, shedding
from guard.federation.connection import Gateway
from guard.kube.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`guard fleet`: shed, list and lift emergency-brake orders."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    shed = sub.add_parser("shed", help="order the replicas of chosen clusters to refuse matching traffic",
                          description="Sign and publish an order: every replica fronting CLUSTER refuses the "
                                      "requests it names (429; 503 with --everything) until it expires or is "
                                      "lifted. Exempt system traffic is never refused.")
    shed.add_argument("--cluster", action="append", required=True, metavar="NAME",
                      help="a cluster the order applies to (repeat for several; * for every cluster)")
    what = shed.add_argument_group("what to refuse (each repeatable; given dimensions must all match)")
    what.add_argument("--tenant", action="append", default=[], metavar="NAME",
                      help="a tenant (TenantPolicy name)")
    what.add_argument("--user", action="append", default=[], metavar="NAME", help="a user name")
    what.add_argument("--verb", action="append", default=[], metavar="VERB",
                      help="a verb (get, list, watch, ...)")
    what.add_argument("--resource", action="append", default=[], metavar="RES",
                      help="a resource or resource/subresource (pods, pods/log)")
    what.add_argument("--everything", action="store_true",
                      help="everything but exempt system traffic (clients get 503)")
    shed.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                      help=f"how long the order lasts (e.g. 10m, 2h; at most {MAX_DURATION / 3600:.0f}h)")
    shed.add_argument("--reason", required=True, metavar="TEXT", help="why: every refused client reads it")
    _signing(shed)
    listing = sub.add_parser("list", help="print the shed orders in Redis",
                             description="Print every stored order: id, state, expiry, what and why.")
    _redis(listing)
    listing.add_argument("--public-key", metavar="PUB", help="also verify each order's signature")
    lift = sub.add_parser("lift", help="end a shed order on every replica",
                          description="Sign the order again as lifted; every replica stops refusing for it.")
    lift.add_argument("id", metavar="ID", help="the order id as `shed` and `list` print it")
    _signing(lift)


def _redis(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", required=True, metavar="URL", help="the fleet's Redis (redis:// or rediss://)")


def _signing(parser: argparse.ArgumentParser) -> None:
    _redis(parser)
    parser.add_argument("--signing-key", required=True, metavar="KEY",
                        help="the bundle signing key (Ed25519 PEM)")
    check = parser.add_mutually_exclusive_group(required=True)
    check.add_argument("--public-key", metavar="PUB",
                       help="the fleet's Ed25519 public key (PEM): the signature is checked against it")
    check.add_argument("--config", metavar="FILE",
                       help="guard.yaml whose redis.publicKey the fleet verifies with")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return with_gateway(args.redis, lambda gw: _list(gw, args.public_key))
    return run_shed(args) if args.action == "shed" else run_lift(args)


def _key_pair(args: argparse.Namespace) -> tuple[Ed25519PrivateKey | None, str]:
    """The signing key when it matches the fleet's public key; else None and why."""
    try:
        key = bundles.load_private_key(args.signing_key)
    except (OSError, ValueError) as e:
        return None, f"{args.signing_key}: cannot load the signing key ({type(e).__name__})"
    public, where = fleet_key(args)
    if public is None:
        return None, where
    probe = b"guard fleet order"
    try:
        public.verify(key.sign(probe), probe)
    except InvalidSignature:
        return None, (f"{args.signing_key}: does not match the fleet's public key {where}; every replica "
                      "would refuse this order, nothing was sent")
    return key, where


def run_shed(args: argparse.Namespace) -> int:
    seconds = parse_duration(args.duration)
    if not seconds or seconds <= 0 or seconds > MAX_DURATION:
        return fail(f"--for: must be a positive duration of at most {MAX_DURATION / 3600:.0f}h, such as 15m")
    now = time.time()
    order = ShedOrder(id=secrets.token_hex(4), clusters=tuple(args.cluster), reason=args.reason,
                      issued=round(now, 3), expires=round(now + seconds, 3), tenants=tuple(args.tenant),
                      users=tuple(args.user), verbs=tuple(args.verb), resources=tuple(args.resource),
                      everything=args.everything, by=_operator())
    try:
        order.check()
    except OrderInvalid as e:
        return fail(f"{e}; give --everything or at least one of --tenant, --user, --verb, --resource")
    key, why = _key_pair(args)
    if key is None:
        return fail(why)
    _warn_unknown_clusters(args)

    async def send(gateway: Gateway) -> int:
        await shedding.issue(gateway, order, key)
        print(f"shed order {order.id} in force until {_when(order.expires)}: {order.describe()}")
        return 0

    return with_gateway(args.redis, send)


def run_lift(args: argparse.Namespace) -> int:
    key, why = _key_pair(args)
    if key is None:
        return fail(why)
    public, _ = fleet_key(args)
    assert public is not None

    async def lift(gateway: Gateway) -> int:
        raw = (await shedding.stored(gateway)).get(args.id)
        if raw is None:
            return fail(f"no shed order {args.id}")
        try:
            order = shedding.verify(*shedding.decode_record(raw), public)
        except shedding.OrderRefused as e:
            return fail(f"shed order {args.id} in Redis is not validly signed ({e}); replicas refused it")
        if order.lifted:
            return fail(f"shed order {args.id} was lifted at {_when(order.lifted)}")
        if order.expires <= time.time():
            return fail(f"shed order {args.id} expired at {_when(order.expires)}")
        await shedding.issue(gateway, order.lift(round(time.time(), 3)), key)
        print(f"lifted shed order {order.id}: {order.describe()}")
        return 0

    return with_gateway(args.redis, lift)


async def _list(gateway: Gateway, public_key: str | None) -> int:
    public = bundles.load_public_key(public_key) if public_key else None
    records = await shedding.stored(gateway)
    if not records:
        print("no shed order")
    elif public is None:
        print("(signatures not checked: pass --public-key to see which orders replicas refuse)")
    now = time.time()
    for order_id, raw in sorted(records.items()):
        try:
            payload, signature = shedding.decode_record(raw)
            order = shedding.verify(payload, signature, public) if public else ShedOrder.from_payload(payload)
        except (shedding.OrderRefused, OrderInvalid) as e:
            print(f"{order_id}\tINVALID ({e})")
            continue
        state = ("lifted" if order.lifted else "expired" if order.expires <= now else "in-force")
        print(f"{order.id}\t{state}\tuntil={_when(order.expires)}\t{order.describe()}\t"
              f"by={order.by or '-'}\treason={order.reason}")
    return 0


def _warn_unknown_clusters(args: argparse.Namespace) -> None:
    """With --config: a warning (not an error: one replica's settings need not name every cluster
    of the fleet) for each --cluster its settings do not front, a likely typo."""
    if args.config is None:
        return
    try:
        known = {c.name for c in settings_module.load(args.config).clusters}
    except ConfigError:
        return  # fleet_key has read it already; nothing more to say
    for name in args.cluster:
        if name != ANY_CLUSTER and name not in known:
            print(f"warning: {args.config} fronts no cluster {name!r} (it has {', '.join(sorted(known))})",
                  file=sys.stderr)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
