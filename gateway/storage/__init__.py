"""SQLite files the gateway writes: how they are opened (WAL) and the one write-behind writer
thread that the ledger, `router.db` and `learning.db` share. Each store keeps its schema."""
