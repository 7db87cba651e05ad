"""`python -m liftstack_ingest` / `liftstack-ingest`: serve the ingest service."""

from __future__ import annotations

from liftstack_ingest.app import create_app
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.http import serve


def main() -> None:
    settings = IngestSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
