"""focusing.core.geometry."""
