"""Focusing core: the plugin registry and the data types every other package builds on."""

__version__ = "0.1.0"
