"""focusing.core.sparse."""
