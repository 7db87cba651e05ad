"""`python -m liftstack_sandbox` / `liftstack-iterable-sandbox`: serve the sandbox.

Settings: LIFTSTACK_SANDBOX_HOST (127.0.0.1), LIFTSTACK_SANDBOX_PORT (8200),
LIFTSTACK_SANDBOX_SEED_FILE (optional JSON, see seed.py), LIFTSTACK_SANDBOX_LOG_LEVEL.
"""

from __future__ import annotations

import logging

import uvicorn

from liftstack_sandbox.app import create_app
from liftstack_sandbox.seed import load_seed_file
from liftstack_sandbox.settings import SandboxSettings
from liftstack_shared.logging import setup_logging

log = logging.getLogger("liftstack_sandbox")


def main() -> None:
    settings = SandboxSettings()
    setup_logging(settings.log_level, settings.log_json)
    app = create_app()
    if settings.seed_file:
        projects = load_seed_file(app.sandbox, settings.seed_file)
        for project in projects:
            # Never log key values: ids and hints only.
            log.info(
                "seeded project %s (%s, %s) with %d key(s)",
                project.id,
                project.name,
                project.region,
                len(project.keys),
            )
    log.info("Iterable sandbox on http://%s:%d (US: /us/api or /api, EU: /eu/api)", settings.host, settings.port)
    # access_log off: request lines could carry a legacy `api_key` query parameter.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
