"""Runs the connector from Python with PyAirbyte, fed by source-faker, against the local Heap sandbox.

Run with scripts/pyairbyte_demo.sh, which installs PyAirbyte in a venv of its own.
"""

from __future__ import annotations

import os
import sys

import airbyte as ab

from integration_tests.heap_sandbox import HeapSandbox

COUNT = 200


def main() -> None:
    """Loads source-faker's users into the sandbox as Heap user properties and checks what arrived."""
    with HeapSandbox() as sandbox:
        source = ab.get_source(
            "source-faker",
            config={"count": COUNT, "seed": 1},
            local_executable=os.environ.get("SOURCE_FAKER", "source-faker"),
        )
        source.select_streams(["users"])
        destination = ab.get_destination(
            "destination-heap-analytics",
            config={
                "app_id": "11",
                "base_url": sandbox.url,
                "api": {
                    "api_type": "add_user_properties",
                    "identity_column": "email",
                    "property_columns": "name,age,occupation,address.city",
                },
            },
            local_executable="destination-heap-analytics",
        )
        destination.write(source, cache=False)
        users = sandbox.items("users")
    identities = {user["identity"] for user in users}
    print(f"Heap received {len(users)} user updates for {len(identities)} identities; the first:")
    print(users[0] if users else "(none)")
    if len(identities) != COUNT or not all("name" in user["properties"] for user in users):
        sys.exit(f"expected {COUNT} users with properties, got {len(identities)}")


if __name__ == "__main__":
    main()
