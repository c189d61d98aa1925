"""focusing.core.sparseflex."""
