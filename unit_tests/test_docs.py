"""Every example in docs/heap-analytics.md holds: configs parse, and records map to the items shown."""

import json
import re
from pathlib import Path

import pytest

from destination_heap_analytics.config import HeapConfig
from destination_heap_analytics.mapping import HeapItem, IdempotencyKey, RecordMapper

DOC = (Path(__file__).resolve().parent.parent / "docs" / "heap-analytics.md").read_text()
BLOCKS = re.findall(r"```json (config|record|heap)\n(.*?)```", DOC, re.DOTALL)
EMITTED_AT = 1666325394622


def examples():
    """(config, record, item) for each record block, with the config block before it."""
    config = None
    found = []
    for index, (kind, text) in enumerate(BLOCKS):
        if kind == "config":
            config = json.loads(text)
        elif kind == "record":
            assert BLOCKS[index + 1][0] == "heap", "a record example must be followed by its Heap item"
            found.append((config, json.loads(text), json.loads(BLOCKS[index + 1][1])))
    return found


def test_the_page_has_examples_for_every_api_type():
    types = {config["api"]["api_type"] for config, _, _ in examples()}
    assert types == {"track", "add_user_properties", "add_account_properties"}


@pytest.mark.parametrize("text", [text for kind, text in BLOCKS if kind == "config"])
def test_every_config_example_is_valid(text):
    HeapConfig.parse(json.loads(text))


@pytest.mark.parametrize(("config", "record", "expected"), examples())
def test_every_record_example_maps_to_the_item_shown(config, record, expected):
    heap_config = HeapConfig.parse(config)
    item = RecordMapper(heap_config, IdempotencyKey("users"))(record, EMITTED_AT, 1)
    assert isinstance(item, HeapItem)
    body = dict(item.body)
    if heap_config.api.api_type == "track":
        assert body.pop("idempotency_key")
    assert body == expected
