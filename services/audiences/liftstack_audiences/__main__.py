"""`liftstack-audiences`: the audiences HTTP service."""

from __future__ import annotations

from liftstack_audiences.app import create_app
from liftstack_audiences.settings import AudiencesSettings
from liftstack_shared.http import serve


def main() -> None:
    settings = AudiencesSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
