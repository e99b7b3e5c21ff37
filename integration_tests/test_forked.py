"""A run forked from the test zygote behaves as a fresh `python main.py`: same output, exit codes, errors."""

from __future__ import annotations

import json
import signal
import time

import pytest

from integration_tests.forked import ForkedProcess
from integration_tests.support import catalog, config_for, run_connector, stream_messages


def both(monkeypatch, *args, **kwargs):
    """The same run forked, then spawned (whichever way the suite starts runs)."""
    monkeypatch.delenv("HEAP_TESTS_SPAWN", raising=False)
    forked = run_connector(*args, **kwargs)
    monkeypatch.setenv("HEAP_TESTS_SPAWN", "1")
    spawned = run_connector(*args, **kwargs)
    return forked, spawned


def test_a_forked_write_says_what_a_spawned_one_says(sandbox, monkeypatch):
    forked, spawned = both(monkeypatch, "write", config_for(sandbox), stream_messages(2_500))
    assert forked.returncode == spawned.returncode == 0
    assert forked.states == spawned.states and len(forked.states) == 3
    assert {key: value for key, value in forked.summary.items() if key != "seconds_paced"} == {
        key: value for key, value in spawned.summary.items() if key != "seconds_paced"
    }


def timeless(messages):
    """Messages without the times they were emitted at."""
    return [
        {**message, "trace": {**message["trace"], "emitted_at": 0}} if "trace" in message else message
        for message in messages
    ]


@pytest.mark.parametrize(
    "args",
    [("check", {"app_id": "11"}), ("write", {"app_id": "11", "api": {"api_type": "nope"}}), ("bogus", None)],
    ids=["check without a reachable heap", "a bad config", "an unknown command"],
)
def test_a_forked_failure_ends_as_a_spawned_one_does(monkeypatch, args):
    command, config = args
    if config is not None and command == "check":
        config = {**config, "base_url": "http://127.0.0.1:9"}
    forked, spawned = both(monkeypatch, command, config, timeout=60)
    assert forked.returncode == spawned.returncode
    assert timeless(forked.messages) == timeless(spawned.messages)
    assert forked.stderr == spawned.stderr and (forked.messages or forked.stderr)


def test_a_forked_run_is_killed_like_a_process(sandbox, tmp_path):
    """A write whose source stays open runs until killed; its exit code says SIGKILL ended it."""
    (tmp_path / "config.json").write_text(json.dumps(config_for(sandbox)))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog()))
    process = ForkedProcess(
        ["write", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")]
    )
    time.sleep(1)
    assert process.returncode is None
    process.kill()
    assert process.wait() == -signal.SIGKILL
    process.stdin.close()
