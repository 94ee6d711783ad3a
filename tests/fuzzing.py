"""Hypothesis settings for the property tests marked `fuzz` (`make fuzz` runs them long).

`GUARD_FUZZ_EXAMPLES` sets the examples per property: a few dozen by default, so `make test` stays
quick; `make fuzz` raises it. Import: `from tests.fuzzing import fuzz_settings`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("GUARD_FUZZ_EXAMPLES", "60"))

fuzz_settings = settings(max_examples=EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
"""Decorate each `@given` property of a `@pytest.mark.fuzz` test with this."""
