"""Fixture plugins shared by every test package."""

pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.sandbox",
    "tests.console.livestack",
    "tests.fixtures.secrets",
    "pytester",
]
