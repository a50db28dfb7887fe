"""Event store backends: in-memory, SQLite and (with the ``postgres`` extra) PostgreSQL."""
