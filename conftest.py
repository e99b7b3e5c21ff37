"""Hypothesis for the whole suite: no timing checks, since tests run four at a time on as few as two cores and
how long one example takes measures the machine's load, not the code (the examples drawn are unchanged)."""

from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
