"""Input and output of media files (``media``: the one place that touches codecs)."""
