"""Prompt and answer texts, shared by the data preparation, training and inference.

Everything the model is ever asked comes from this module, so that the
instruction-tuning conversations written by ``lmmeval prepare`` and the questions
asked at inference time cannot drift apart.
"""

from __future__ import annotations

from .labels import DISTORTIONS, LEVELS, NO_DISTORTION

QUALITY_QUESTION = (
    "Rate the visual quality of the human face in this video "
    "(texture, colour fidelity, structural integrity). "
    "Answer with one of: bad, poor, fair, good, excellent."
)
AUTHENTICITY_QUESTION = (
    "Rate the authenticity of the human face in this video "
    "(would it pass as a real, plausible human head?). "
    "Answer with one of: bad, poor, fair, good, excellent."
)
DISTORTION_QUESTION = (
    "Which distortions does the human face in this video show? "
    "Choose all that apply from: " + "; ".join(DISTORTIONS) + "."
)

DESCRIBE_QUESTION = (
    "Describe the quality and authenticity of the human face in this video, "
    "and where any distortions are."
)

# The answer stems end right before the level word: the level probabilities are
# read from the logits at the position after the stem (Q-Align style).
QUALITY_ANSWER_STEM = "The quality of the human face in this video is"
AUTHENTICITY_ANSWER_STEM = "The authenticity of the human face in this video is"
DISTORTION_ANSWER_STEM = "The distortions in this video are:"

QUESTIONS = {"quality": QUALITY_QUESTION, "authenticity": AUTHENTICITY_QUESTION}
ANSWER_STEMS = {"quality": QUALITY_ANSWER_STEM, "authenticity": AUTHENTICITY_ANSWER_STEM}


def level_answer(dimension: str, level: str) -> str:
    """'The quality of the human face in this video is good.'"""
    if dimension not in ANSWER_STEMS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {tuple(ANSWER_STEMS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    return f"{ANSWER_STEMS[dimension]} {level}."


def distortion_answer(categories: list[str]) -> str:
    """The distortion answer, listing categories in DISTORTIONS order, separated by '; '."""
    unknown = [c for c in categories if c not in DISTORTIONS]
    if unknown:
        raise ValueError(f"unknown distortion categories {unknown}; expected names from DISTORTIONS")
    ordered = [c for c in DISTORTIONS if c in categories] or [NO_DISTORTION]
    return f"{DISTORTION_ANSWER_STEM} {'; '.join(ordered)}."


def parse_distortion_answer(text: str) -> list[str]:
    """Inverse of ``distortion_answer`` for generated text: the DISTORTIONS names it mentions.

    Matching is by exact category name (case-insensitive), so free generation that
    strays from the format yields the categories it does name, in DISTORTIONS order.
    """
    lowered = text.lower()
    found = [c for c in DISTORTIONS[:-1] if c.lower() in lowered]
    return found or [NO_DISTORTION]


def conversation(question: str, answer: str) -> list[dict]:
    """One user/assistant exchange about the sample's video, in Qwen2.5-VL chat format."""
    return [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
