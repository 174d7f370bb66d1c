"""sipctl: the command-line client of sipd."""
