"""soundatlas: navigable 3-D maps of large sound-sample libraries."""

__version__ = "0.1.0"
