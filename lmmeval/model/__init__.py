"""The LMME3DHF model: configuration, processing, network and heads, and the factory that builds,
loads and saves it. Nothing is imported here: ``lmmeval.model.configuration`` stays free of torch."""
