"""Identifier validation and the on-disk sync state (no infrastructure needed)."""

from __future__ import annotations

import pytest

from liftstack_audiences.identifiers import parse_identifier
from liftstack_audiences.state import Counts, SyncState


@pytest.mark.parametrize(
    "line",
    [
        "ada@example.com",
        "A.B+tag@Example.CO.uk",
        "o'neil@example.com",
        "émile@exämple.fr",
        "  ada@example.com  ",
        "\ufeffada@example.com",
    ],
)
def test_valid_emails(line):
    parsed = parse_identifier(line)
    assert parsed is not None and parsed.member.email == line.strip().lstrip("\ufeff")
    assert parsed.key == "e:" + line.strip().lstrip("\ufeff").lower()


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "not-an-email",
        "missing-at.example.com",
        "two@@example.com",
        "user@",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        "a@example",
        "a@example.c",
        "a@-example.com",
        "a@exa_mple.com",
        "a@example.c0m",
        "x" * 250 + "@example.com",
    ],
)
def test_invalid_emails(line):
    assert parse_identifier(line) is None
    assert parse_identifier(line, allow_user_ids=True) is None or "@" not in line


@pytest.mark.parametrize("line", ["u-42", "u 42", "12345", "x" * 512])
def test_user_ids_only_with_prefer_user_id(line):
    assert parse_identifier(line) is None
    parsed = parse_identifier(line, allow_user_ids=True)
    assert parsed is not None and parsed.member.user_id == line and parsed.key == "u:" + line


@pytest.mark.parametrize("line", ["x" * 513, "tab\tinside", "nul\x00", "ünï", "bell\x07"])
def test_invalid_user_ids(line):
    assert parse_identifier(line, allow_user_ids=True) is None


@pytest.mark.parametrize("line", ["alice@corp", "bob@example.com", "u-42"])
def test_in_a_user_id_project_every_line_is_a_user_id(line):
    """Defect: in a userID-based project a userId containing "@" was taken for an
    email. Identity follows the project's type."""
    parsed = parse_identifier(line, True, identity="userId")
    assert parsed is not None and parsed.member.user_id == line and parsed.member.email is None
    assert parsed.key == "u:" + line
    # Hybrid projects keep Iterable's own rule: a line with "@" is an email.
    hybrid = parse_identifier("bob@example.com", True, identity="hybrid")
    assert hybrid is not None and hybrid.member.email == "bob@example.com"


def test_emails_deduplicate_case_insensitively_user_ids_exactly():
    keys = {parse_identifier(x, True).key for x in ["Ada@Example.com", "ada@example.com"]}
    assert len(keys) == 1
    keys = {parse_identifier(x, True).key for x in ["U-1", "u-1"]}
    assert len(keys) == 2


def test_state_commits_with_the_batch_and_rolls_back_without(tmp_path):
    state = SyncState.for_sync(tmp_path, "s1")
    assert state.checkpoint() is None
    state.begin()
    assert state.add("e:a") and state.add("e:b") and not state.add("e:a")
    state.commit(Counts(lines=3, members=2, duplicates=1, batches=1))
    state.begin()
    assert state.add("e:c")
    state.rollback()  # the batch with c was never acknowledged
    state.close()

    reopened = SyncState.for_sync(tmp_path, "s1")
    assert reopened.checkpoint() == Counts(lines=3, members=2, invalid=0, duplicates=1, batches=1)
    reopened.begin()
    assert not reopened.add("e:a") and reopened.add("e:c")
    reopened.delete()
    assert not list(tmp_path.iterdir())
