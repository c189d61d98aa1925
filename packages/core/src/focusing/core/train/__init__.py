"""focusing.core.train."""
