"""The sandbox fixture; everything else the tests share is in integration_tests.support."""

import pytest

from integration_tests.heap_sandbox import HeapSandbox


@pytest.fixture
def sandbox():
    with HeapSandbox() as running:
        yield running
