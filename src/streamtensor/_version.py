"""The package version: a leaf module, so code that stamps generated files never imports the package root."""

__version__ = "0.1.0"
