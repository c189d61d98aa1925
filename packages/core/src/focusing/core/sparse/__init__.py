"""focusing.core.sparse: SparseTensor, coordinate hashing, sparse backends, window attention."""

from focusing.core.sparse.tensor import SparseTensor, cat, collate

__all__ = ["SparseTensor", "cat", "collate"]
