"""The model store: Redis connection, the versioned artifact layout, legacy import. Driver side only."""
