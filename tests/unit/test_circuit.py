"""The optional hops' circuit breaker: open after a failure, one trial call at a time after the cooldown."""

from logic.circuit import CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_opens_it_for_the_cooldown_then_one_trial_at_a_time():
    clock = Clock()
    breaker = CircuitBreaker(cooldown_s=10, clock=clock)
    assert breaker.allow() and breaker.allow(), "closed: every call goes"
    breaker.failed()
    assert not breaker.allow()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow(), "the cooldown is over: one trial"
    assert not breaker.allow(), "while the trial runs, the others still skip"
    breaker.failed()  # the trial failed: another cooldown
    clock.now = 19.9
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.closed and breaker.allow() and breaker.allow()
    assert breaker.failures == 2


def test_an_abandoned_trial_lets_the_next_call_try():
    clock = Clock()
    breaker = CircuitBreaker(cooldown_s=1, clock=clock)
    breaker.failed()
    clock.now = 1
    assert breaker.allow()
    breaker.abandoned()  # its caller left before a verdict
    assert breaker.allow(), "a trial that never reported must not keep the breaker open for good"
