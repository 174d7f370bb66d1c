"""sipd: a local daemon for pixel-level image classification from a few drawn examples."""

__version__ = "0.1.0"
