"""`python -m liftstack_templates` (or `liftstack-templates`) serves the HTTP API."""

from __future__ import annotations

import sys

from liftstack_shared.http import serve
from liftstack_templates.app import create_app
from liftstack_templates.settings import TemplatesSettings


def main() -> int:
    settings = TemplatesSettings()
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
