"""focusing.core.sparse.backends."""
