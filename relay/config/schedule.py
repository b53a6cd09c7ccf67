"""A send's retry schedule: how it is written in relay.toml, and how it is told back."""

from __future__ import annotations

from relay import errors
from relay.config.fields import Table, parse_duration, show
from relay.config.settings import SendPolicy

MAX_WAIT = 24 * 3600.0


def schedule_of(table: Table, base: tuple[float, ...]) -> tuple[float, ...]:
    """`schedule = ["1s", "5s", …]`, or the doubling `backoff_initial`/`backoff_max` of
    earlier relays; else `base`."""
    older = {"backoff_initial", "backoff_max"} & set(table.data)
    if "schedule" in table:
        if older:
            raise errors.ConfigError(f"{table.path('schedule')}: give either schedule or "
                                     f"{' and '.join(sorted(older))}, not both")
        return _listed(table)
    if not older:
        return base
    first = table.duration("backoff_initial", 1.0)
    most = table.duration("backoff_max", max(300.0, first))
    if most < first:
        raise errors.ConfigError(f"{table.path('backoff_max')}: must be at least "
                                 f"backoff_initial ({first:g} s), got {most:g} s")
    waits = [first]
    while waits[-1] * 2 < most:
        waits.append(waits[-1] * 2)
    return (*waits, most) if waits[-1] < most else tuple(waits)


def _listed(table: Table) -> tuple[float, ...]:
    value = table.raw("schedule")
    if not isinstance(value, list) or not value:
        raise errors.ConfigError(f"{table.path('schedule')}: must be a non-empty list of "
                                 f"durations such as [\"5s\", \"1m\", \"1h\"], got {show(value)}")
    waits = []
    for index, item in enumerate(value):
        seconds = parse_duration(item)
        if seconds is None or seconds < 0 or seconds > MAX_WAIT:
            raise errors.ConfigError(f"{table.path('schedule')}[{index}]: must be a duration "
                                     f"from 0 to 24h such as \"30s\", got {show(item)}")
        waits.append(seconds)
    return tuple(waits)


def describe(policy: SendPolicy) -> str:
    """The effective schedule in words, as `relay check-config` prints it."""
    waits = ", ".join(_short(w) for w in policy.schedule[:-1])
    last = f"then every {_short(policy.schedule[-1])}"
    bound = f"for {_short(policy.retry_for)}" if policy.retry_for else "without a time limit"
    count = (f"at most {policy.attempts} attempts" if policy.attempts
             else f"about {expected_attempts(policy)} attempts")
    return f"retries after {waits + ', ' if waits else ''}{last}, {bound} ({count})"


def expected_attempts(policy: SendPolicy) -> int:
    """How many attempts the schedule makes within `retry_for` (before jitter shortens it)."""
    elapsed, attempts = 0.0, 1
    while elapsed < policy.retry_for and (not policy.attempts or attempts < policy.attempts):
        elapsed += policy.schedule[min(attempts - 1, len(policy.schedule) - 1)]
        attempts += 1
        if attempts > 100_000:
            break
    return attempts


def _short(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
