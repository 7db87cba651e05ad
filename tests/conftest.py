"""Fixture plugins shared by every test package."""

pytest_plugins = [
    "tests.fixtures.identity",
    "tests.fixtures.infra",
    "tests.fixtures.sandbox",
    "tests.console.livestack",
    "tests.fixtures.secrets",
    "pytester",
]
