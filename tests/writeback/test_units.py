"""Pure pieces, without infrastructure."""

from __future__ import annotations

from liftstack_shared.iterable.bulk import bulk_update_body
from liftstack_shared.messages import Assignment
from liftstack_writeback.consumers import _Partition
from liftstack_writeback.writer import _upper_bound_bytes, to_user


def test_commit_point_only_moves_past_contiguous_done_offsets() -> None:
    part = _Partition()
    for offset in (10, 11, 12, 14):  # 13 was compacted away / a control record
        part.add(offset)
    assert not part.complete(12)  # 10 and 11 still in flight
    assert part.commit_point is None
    assert part.complete(10)
    assert part.commit_point == 11
    assert not part.complete(14)
    assert part.commit_point == 11
    assert part.complete(11)
    assert part.commit_point == 15  # 11, 12 and 14 all done


def test_size_bound_is_never_below_the_real_body() -> None:
    users = [
        to_user(Assignment(email=f"ü{'x' * i}@example.com", variant='"\n' * 50), "cmp-\u2603") for i in range(200)
    ] + [to_user(Assignment(user_id="u" * 300, variant="A"), "k")]
    assert _upper_bound_bytes(users) >= len(bulk_update_body(users, True))
    assert to_user(Assignment(email="a@b.co", variant="B"), "c").to_body() == {
        "email": "a@b.co",
        "dataFields": {"lf_assignments": {"c": "B"}},
        "mergeNestedObjects": True,
    }
