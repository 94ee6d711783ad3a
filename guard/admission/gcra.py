"""The Generic Cell Rate Algorithm: a token bucket held as one number, the theoretical arrival
time (TAT) of the next request, in float seconds of an injected clock.

Pure arithmetic: no clock reads, no I/O, no state. The caller stores the returned TAT. A TAT
further ahead than `now + tau` (the clock stepped backwards, or the TAT came from a replica
whose clock runs ahead) is clamped, so a clock step locks a client out for at most one burst.
"""

from __future__ import annotations

import math

from guard.admission.store import Take

# Float slack so that exactly-due requests are not refused by rounding: a few hundred units in
# the last place of `now` (the clock's magnitude decides how coarse float seconds are).
_ULPS = 256


def _slack(now: float, tau: float) -> float:
    return 1e-9 + math.ulp(abs(now) + tau) * _ULPS


def take(tat: float, now: float, rate: float, burst: float, cost: float = 1.0) -> tuple[float, Take]:
    """Debit `cost` tokens from a bucket of `rate`/s and `burst` at time `now`.

    Returns the new TAT (unchanged when refused) and the answer. Over any interval [t1, t2] the
    admitted cost is at most burst + rate * (t2 - t1).
    """
    emission = 1.0 / rate
    tau = burst * emission
    tat = min(max(tat, now), now + tau)
    new_tat = tat + cost * emission
    allow_at = new_tat - tau
    if allow_at > now + _slack(now, tau):
        return tat, Take(False, (tau - (tat - now)) * rate, allow_at - now, tat - now)
    return new_tat, Take(True, max(0.0, (tau - (new_tat - now)) * rate), 0.0, new_tat - now)


def peek(tat: float, now: float, rate: float, burst: float) -> Take:
    """The bucket's state at `now` without debiting: what one more token would get."""
    emission = 1.0 / rate
    tau = burst * emission
    tat = min(max(tat, now), now + tau)
    allow_at = tat + emission - tau
    wait = max(0.0, allow_at - now)
    return Take(wait <= _slack(now, tau), (tau - (tat - now)) * rate, wait, tat - now)
