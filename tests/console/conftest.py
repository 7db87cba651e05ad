from tests.console.browser import browser, context, page  # noqa: F401 - fixtures, used by name
