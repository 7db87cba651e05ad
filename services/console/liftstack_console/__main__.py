"""`liftstack-console`: serve the web console."""

from __future__ import annotations

from liftstack_console.app import create_app
from liftstack_console.settings import ConsoleSettings
from liftstack_shared.http import serve


def main() -> None:
    settings = ConsoleSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
