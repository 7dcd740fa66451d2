"""Data: the manifest schema, raw study -> manifest (MOS, saliency maps, descriptions), statistics."""
