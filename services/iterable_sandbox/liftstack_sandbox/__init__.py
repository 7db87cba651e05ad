"""liftstack Iterable sandbox: a stateful fake of the Iterable API (see app.py)."""
