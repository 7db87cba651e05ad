"""Audience sync: list a connection's Iterable lists and segments, and stream one
audience's members into Kafka (`audience.members`) for the assignment engine."""
