"""The readiness gate's read-back against the Iterable sandbox over HTTP: sampled
profiles are looked up with the connection's key, and one that lacks its variant
is named (the connection's key comes from a stand-in for the connections service)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from pydantic import SecretStr

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import AssignmentSection, Campaign, Variant
from liftstack_experiments.iterable_probe import ReadBackProbe
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.connections_client import ConnectionsClient, InternalConnection
from tests.fixtures.sandbox import SandboxHandle

NOW = datetime.now(UTC)


class OneConnection:
    """The connections service's answer for the one connection of this test."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    async def get(self, connection_id: str) -> InternalConnection:
        return InternalConnection(
            connection_id=connection_id,
            workspace_id="ws",
            name="sandbox",
            region="US",
            api_key=SecretStr(self.api_key),
            status="connected",
        )


async def test_read_back_names_the_profile_without_its_variant(
    sandbox: SandboxHandle, experiments_settings: ExperimentsSettings
) -> None:
    project = sandbox.create_project(region="US", rate_limits=True)
    key = sandbox.create_key(project)
    sample = ["a@example.com", "b@example.com", "c@example.com"]
    variant = {r: assign_variant("spring", r, ["A", "B"], [1.0, 1.0]) for r in sample}
    # a and b were written; c's write failed (no lf_assignments).
    sandbox.put_users(
        project,
        [{"email": r, "dataFields": {"lf_assignments": {"spring": variant[r]}}} for r in sample[:2]]
        + [{"email": "c@example.com", "dataFields": {"firstName": "Cy"}}],
    )
    campaign = Campaign(
        id="cmp_rb",
        workspace_id="ws",
        key="spring",
        name="n",
        connection_id="conn",
        variants=[Variant(name="A", subject="a", html="a"), Variant(name="B", subject="b", html="b")],
        control="A",
        created_at=NOW,
        updated_at=NOW,
        created_by="u",
        assignment=AssignmentSection(status="completed", job_id="j", total=3, sample=sample),
    )
    settings = experiments_settings.model_copy(update={"iterable_base_url": sandbox.base_url})
    probe = ReadBackProbe(settings, cast(ConnectionsClient, OneConnection(key)))
    answer = await probe.read_back(campaign, "run-1")
    assert (answer.sampled, answer.matched, answer.mismatched, answer.error) == (3, 2, ["c@example.com"], None)

    # A bad key: the read-back says Iterable could not be read, it doesn't pass.
    refused = await ReadBackProbe(settings, cast(ConnectionsClient, OneConnection("bad-key"))).read_back(campaign, "r")
    assert refused.error is not None and refused.matched == 0
