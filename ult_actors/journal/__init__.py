"""The order journal: the store protocol, its SQLite implementation and schema, the in-memory store."""
