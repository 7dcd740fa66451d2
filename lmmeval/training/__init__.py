"""Three-stage training of LMME3DHF (paper section 4.2) under DeepSpeed."""

from .config import SaliencyLossWeights, TrainConfig, load_sampling, load_train_config, parse_overrides
from .loop import run_stage

__all__ = ["SaliencyLossWeights", "TrainConfig", "load_sampling", "load_train_config", "parse_overrides", "run_stage"]
