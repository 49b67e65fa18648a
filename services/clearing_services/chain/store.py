"""The embedded chain's database: py-evm's key-value store kept in RocksDB on disk.

Why: the embedded chain must survive a restart with every balance, contract and
recorded batch intact, or a restarted settlement agent would find a chain that
has never seen the batches it settled. py-evm writes a block's header, receipts
and canonical head inside ``atomic_batch``; here that batch is one RocksDB write
batch, so a kill -9 leaves either the whole block or none of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

WRITE_BUFFER_BYTES = 16 * 1024 * 1024


class RocksChainDB(BaseAtomicDB):
    """py-evm's ``AtomicDatabaseAPI`` over a RocksDB directory (raw bytes keys)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        self._db = Rdict(str(path), options)
        self._sync = WriteOptions()
        self._sync.sync = True  # a block acknowledged to a client is on disk

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        if self._db.get(key) is None:
            raise KeyError(key)
        self._db.delete(key)

    def _exists(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """Changes stay in a diff until the block is complete, then land in one write."""
        batch = AtomicDBWriteBatch(self)
        yield batch
        diff = batch._diff()
        batch._track_diff = None  # type: ignore[assignment]
        writes = WriteBatch(raw_mode=True)
        for key, value in diff.pending_items():
            writes.put(key, value)
        for key in diff.deleted_keys():
            writes.delete(key)
        self._db.write(writes, self._sync)

    def close(self) -> None:
        self._db.close()
