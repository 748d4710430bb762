"""The breaker's state machine on its own, on a clock the test moves."""

from __future__ import annotations

from agents.providers.breaker import CircuitBreaker, Route

COOLDOWN = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("openai", threshold=threshold, cooldown=COOLDOWN, clock=clock)


def fail(b: CircuitBreaker, times: int) -> list[str]:
    changes = []
    for _ in range(times):
        route, _ = b.route()
        transition = b.failed(route)
        changes.append(transition.change if transition else "")
    return changes


def test_opens_on_the_nth_failure_in_a_row_not_before() -> None:
    b = breaker(Clock())

    assert fail(b, 3) == ["", "", "opened"]
    assert b.state == "open"
    assert b.route() == (Route.ELSEWHERE, None)


def test_a_success_starts_the_count_again() -> None:
    b = breaker(Clock())
    fail(b, 2)
    route, _ = b.route()
    b.succeeded(route)

    assert fail(b, 2) == ["", ""]
    assert b.state == "closed"


def test_one_probe_after_the_cooldown_and_others_stay_away_meanwhile() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += COOLDOWN - 1
    assert b.route()[0] is Route.ELSEWHERE

    clock.now += 1
    route, probing = b.route()

    assert route is Route.PROBE
    assert probing is not None and probing.change == "probing"
    assert probing.open_seconds == COOLDOWN
    # While the probe is out, every other call still goes elsewhere.
    assert [b.route()[0] for _ in range(5)] == [Route.ELSEWHERE] * 5


def test_probe_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += COOLDOWN
    route, _ = b.route()

    closed = b.succeeded(route)

    assert closed is not None and closed.change == "closed"
    assert (b.state, b.failures) == ("closed", 0)
    assert b.route() == (Route.PRIMARY, None)


def test_probe_failure_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += COOLDOWN
    route, _ = b.route()

    reopened = b.failed(route)

    assert reopened is not None and reopened.change == "reopened"
    assert reopened.failures == 4
    clock.now += COOLDOWN - 1
    assert b.route()[0] is Route.ELSEWHERE
    clock.now += 1
    assert b.route()[0] is Route.PROBE


def test_a_probe_without_verdict_lets_the_next_call_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += COOLDOWN
    route, _ = b.route()

    b.abandoned(route)  # e.g. the run's time ran out while the probe waited

    assert b.route()[0] is Route.PROBE


def test_late_answers_of_calls_sent_before_the_opening_change_nothing() -> None:
    b = breaker(Clock())
    early = [b.route()[0] for _ in range(4)]  # four calls in flight at once
    for route in early[:3]:
        b.failed(route)
    assert b.state == "open"

    assert b.succeeded(early[3]) is None
    assert b.failed(early[3]) is None
    assert b.state == "open"
