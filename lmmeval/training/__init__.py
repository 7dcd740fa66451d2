"""Three-stage training of LMME3DHF (paper section 4.2) under DeepSpeed: one recipe
(``recipe.StageRecipe``) running one stage object per stage (``stages.STAGES``)."""

from .config import SaliencyLossWeights, TrainConfig, load_sampling, load_train_config, parse_overrides
from .recipe import StageRecipe, run_stage

__all__ = ["SaliencyLossWeights", "StageRecipe", "TrainConfig", "load_sampling", "load_train_config",
           "parse_overrides", "run_stage"]
