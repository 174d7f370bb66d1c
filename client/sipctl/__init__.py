"""sipctl: the command-line client of sipd."""

__version__ = "0.1.0"
