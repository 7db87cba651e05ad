"""liftstack's own shared library.

Everything two or more services need lives here exactly once: settings, the Kafka
topic catalogue and message contracts, Kafka and MongoDB plumbing, auth, logging,
HTTP helpers and (in `liftstack_shared.iterable`) the Iterable API client.
"""
