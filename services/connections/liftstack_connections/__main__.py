"""`python -m liftstack_connections` serves the API;
`python -m liftstack_connections rotate-keys` re-encrypts every stored secret with the
newest master key (see rotation.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from liftstack_connections.settings import ConnectionsSettings
from liftstack_shared.http import serve
from liftstack_shared.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liftstack-connections")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the HTTP API (default)")
    sub.add_parser(
        "rotate-keys",
        help="re-encrypt every stored secret with the newest master key (LIFTSTACK_MASTER_KEYS, newest first)",
    )
    args = parser.parse_args(argv)
    settings = ConnectionsSettings()
    if args.command == "rotate-keys":
        from liftstack_connections.rotation import rotate_all

        setup_logging(settings.log_level, settings.log_json)
        report = asyncio.run(rotate_all(settings))
        print(report.summary())
        return 0 if report.ok else 1
    from liftstack_connections.app import create_app

    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
