"""The package's version (``pyproject.toml`` repeats it), for the face and for what names the
code that made a record, without importing the face."""

__version__ = "0.2.0"
