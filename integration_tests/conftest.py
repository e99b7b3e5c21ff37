"""The sandbox, S3 server and bucket fixtures; everything else the tests share is in integration_tests.support."""

import pytest

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.support import S3Server

BUCKET = "heap-bucket"


@pytest.fixture
def sandbox():
    with HeapSandbox() as running:
        yield running


@pytest.fixture(scope="module")
def s3():
    """moto's standalone S3-compatible server on 127.0.0.1, one per test module."""
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3):
    """An empty bucket, removed with everything in it after the test."""
    s3.client().create_bucket(Bucket=BUCKET)
    yield BUCKET
    client = s3.client()
    for key in s3.objects(BUCKET):
        client.delete_object(Bucket=BUCKET, Key=key)
    client.delete_bucket(Bucket=BUCKET)
