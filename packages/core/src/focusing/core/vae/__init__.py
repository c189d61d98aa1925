"""focusing.core.vae."""
