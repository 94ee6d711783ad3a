"""One simulated cluster: options, the shared store, authentication, authorization and the recorder.

Every replica's application is built around the same `Simulation`, which is what makes replicas of
one cluster share their objects. It must never hold per-replica state (load, crash, sockets).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from chaos.sim.authn import Authenticator, load_token_file
from chaos.sim.bootstrap import populate, read_bootstrap
from chaos.sim.controllers import Controllers
from chaos.sim.options import SimOptions
from chaos.sim.rbac import Authorizer
from chaos.sim.recorder import Recorder
from chaos.sim.store import Store


def optional_module(name: str) -> Any | None:
    """A sibling module another engineer builds; None until it exists."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None


@dataclass
class Simulation:
    options: SimOptions
    store: Store
    authenticator: Authenticator
    authorizer: Authorizer
    recorder: Recorder = field(default_factory=Recorder)
    issuer: Any | None = None
    """chaos.sim.oidc.Issuer when that module exists: signs and verifies service-account JWTs."""
    controllers: Controllers | None = None
    """The workload controllers, listening to the store's writes."""
    files: dict[str, Any] = field(default_factory=dict)
    """Each container's in-memory file system (chaos.sim.filesystem), by pod uid and container."""

    @classmethod
    def from_options(cls, options: SimOptions) -> Simulation:
        """Build and populate; raises TokenFileError or BootstrapError naming the bad file."""
        tokens = load_token_file(options.token_file) if options.token_file else {}
        bootstrap = read_bootstrap(options.bootstrap) if options.bootstrap else []
        store = Store(window=options.watch_cache_window)
        oidc = optional_module("chaos.sim.oidc")
        issuer = oidc.Issuer() if oidc is not None else None
        control = Controllers(store)
        populate(
            store,
            bootstrap=bootstrap,
            seed_objects=options.seed_objects,
            seed_bytes=options.seed_object_bytes,
            system_pods=options.system_pods,
        )
        control.drain()
        return cls(
            options,
            store,
            Authenticator(tokens, options.anonymous, issuer),
            Authorizer(store),
            issuer=issuer,
            controllers=control,
        )
