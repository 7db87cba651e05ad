"""Fixture plugins shared by every test package."""

pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.sandbox",
    "tests.fixtures.secrets",
    "pytester",
]
