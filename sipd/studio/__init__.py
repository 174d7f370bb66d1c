"""The labeling studio: the web page sipd serves and its HTTP/JSON surface (docs/studio.md)."""
