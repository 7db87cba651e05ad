"""`liftstack-writeback` / `python -m liftstack_writeback`: the writeback service."""

from __future__ import annotations

from liftstack_shared.http import serve
from liftstack_writeback.app import create_app
from liftstack_writeback.settings import WritebackSettings


def main() -> None:
    settings = WritebackSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
