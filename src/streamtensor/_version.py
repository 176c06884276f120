"""The package version: a leaf module, so code that stamps generated files never imports the package root."""

__version__ = "0.1.0"
GENERATOR = f"streamtensor {__version__}"  # the tool stamp every generated file starts with
