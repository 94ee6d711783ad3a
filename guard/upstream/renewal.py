"""guard's own token when a kubeconfig's exec plugin or auth-provider issues it (EKS, GKE, AKS,
OIDC): the current one, and a background loop that renews it before it expires.

The plugin runs in a thread, never on the event loop: an `aws eks get-token` takes a second. A
failed renewal keeps the token in hand (it may still be valid) and is retried soon, with a warning
naming the kubeconfig; it never takes requests down. Tokens never appear in a log line or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from guard.kube.errors import ConfigError
from guard.upstream.kubeconfig import PluginToken

log = logging.getLogger(__name__)
MARGIN = 60.0
"""Seconds before a token's expiry that guard renews it."""
WITHOUT_EXPIRY = 300.0
"""Seconds between renewals when the plugin names no expiry (auth-providers)."""
RETRY = 15.0
"""Seconds before a failed renewal is tried again."""


class TokenSource:
    """The token guard sends now, and how to get the next one."""

    def __init__(self, first: PluginToken, renew: Callable[[], PluginToken], *, where: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._current = first
        self._renew = renew
        self._where = where
        self._clock = clock
        self.renewals = 0
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"TokenSource({self._where}, renewals={self.renewals})"

    @property
    def token(self) -> str | None:
        return self._current.token

    def due_in(self) -> float:
        """Seconds until the token should be renewed."""
        expires = self._current.expires
        if expires is None:
            return WITHOUT_EXPIRY
        return max(0.0, expires - MARGIN - self._clock())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_fresh())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def renew(self) -> bool:
        """Run the plugin once (in a thread); True when a new token is in hand."""
        try:
            self._current = await asyncio.to_thread(self._renew)
        except ConfigError as e:
            log.warning("renewing guard's token from %s failed (%s); keeping the current one",
                        self._where, "; ".join(e.problems))
            return False
        self.renewals += 1
        return True

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.due_in())
            if not await self.renew():
                await asyncio.sleep(RETRY)
