"""The project's synthetic Gen3DHF-style benchmark: rendered heads and a simulated study."""

from .generators import GENERATORS, GeneratorProfile
from .synthesize import SynthConfig, synthesize

__all__ = ["GENERATORS", "GeneratorProfile", "SynthConfig", "synthesize"]
