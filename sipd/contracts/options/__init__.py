"""The typed options of each preprocessor family, one module per family.

Every options model has defaults for every field (a recipe names only what it
changes), a description per field (`sipctl preprocess list` shows it),
`PATH_OPTIONS` (fields naming files: the daemon checks them against the allowed
roots before a job runs) and `output_bands()` (the band names when the options
alone fix them, else []).
"""
