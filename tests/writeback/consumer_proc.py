"""A writeback consumer in its own process, for the crash test (it gets SIGKILLed).

Settings come from the usual LIFTSTACK_* environment variables; the one connection's
credentials from WB_TEST_CONNECTION_ID / WB_TEST_WORKSPACE_ID / WB_TEST_API_KEY (an
environment variable, not an argument, so the key is not visible in `ps`).
"""

from __future__ import annotations

import asyncio
import os
import sys

from liftstack_shared.credentials import StaticCredentials
from liftstack_shared.logging import setup_logging
from liftstack_writeback.app import WritebackInstance
from liftstack_writeback.settings import WritebackSettings


async def main() -> None:
    settings = WritebackSettings()
    setup_logging(settings.log_level)
    credentials = StaticCredentials()
    credentials.add(
        workspace_id=os.environ["WB_TEST_WORKSPACE_ID"],
        connection_id=os.environ["WB_TEST_CONNECTION_ID"],
        api_key=os.environ["WB_TEST_API_KEY"],
    )
    instance = WritebackInstance.build(settings, credentials)
    await instance.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
