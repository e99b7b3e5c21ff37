"""Runs the guide's PyAirbyte example, as written there, against the local Heap sandbox, and checks what
Heap received. Run with scripts/pyairbyte_demo.sh, which installs PyAirbyte and source-faker apart.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "heap-analytics.md"
COUNT = 200


def guide_example() -> str:
    """The guide's one Python example."""
    (code,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    return code


def main() -> None:
    """Runs the example, then checks that every faker user reached the sandbox with its properties and that
    PyAirbyte's cache stored the STATEs the destination passed on."""
    shutil.rmtree(Path(".cache") / "heap_states", ignore_errors=True)  # a first sync: else it resumes, sending none
    names: dict[str, object] = {}
    exec(compile(guide_example(), str(GUIDE), "exec"), names)  # the guide's own example, as written
    users = names["heap"].items("users")  # type: ignore[attr-defined]
    identities = {user["identity"] for user in users}
    print(f"Heap received {len(users)} user updates for {len(identities)} identities; the first:")
    print(users[0] if users else "(none)")
    if len(identities) != COUNT or not all("name" in user["properties"] for user in users):
        sys.exit(f"expected {COUNT} users with properties, got {len(identities)}")
    stored = names["states"].get_state_provider(  # type: ignore[attr-defined]
        source_name="source-faker", destination_name="destination-heap-analytics"
    )
    print(f"PyAirbyte's cache holds the STATEs the destination passed for: {sorted(stored.known_stream_names)}")
    if set(stored.known_stream_names) != {"users"} or stored.get_stream_state("users", not_found=None) is None:
        sys.exit("PyAirbyte's cache did not store the users stream's STATE")


if __name__ == "__main__":
    main()
