"""The order journal: the store protocol, its SQLite implementation and schema, the in-memory store.

It knows nothing of actors: the journal actor (``ult_actors.actors.journal``) opens a
store through a ``StoreOpener`` and hands it to the other actors.
"""

from ult_actors.journal.memory import MemoryStore, memory_store_opener
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store, sqlite_store_opener
from ult_actors.journal.store import OrderStore, StoreOpener

__all__ = [
    "MemoryStore",
    "OrderStore",
    "SqliteStore",
    "StoreOpener",
    "memory_store_opener",
    "open_sqlite_store",
    "sqlite_store_opener",
]
