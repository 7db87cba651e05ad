"""`liftstack-experiments`: serve the experiments API and run its results consumer."""

from __future__ import annotations

from liftstack_experiments.app import create_app
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.http import serve


def main() -> None:
    settings = ExperimentsSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
