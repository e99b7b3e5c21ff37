"""Runs the connector: `python main.py spec|check|write ...`."""

from destination_heap_analytics import run

if __name__ == "__main__":
    run()
