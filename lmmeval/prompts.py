"""Every question the model is asked and every answer it is trained to give.

Training targets and inference prompts both come from here, so they cannot drift
apart. Each answer is a fixed stem ("The quality of the human face in this video is")
followed by what the model has to say; the level probabilities are read at the
position right after the stem (Q-Align style).
"""

from __future__ import annotations

from collections.abc import Mapping

from .labels import DIMENSIONS, DISTORTIONS, LEVELS, NO_DISTORTION

# The quality and authenticity questions of the authors' Gen3DHF release (its ms-swift label files), verbatim.
QUALITY_QUESTION = (
    "Please rate the quality of the human face in this video, considering factors such as resolution, "
    "clarity, smoothness, and overall visual quality."
)
AUTHENTICITY_QUESTION = (
    "Please rate the authenticity of the human face in this video, considering factors such as natural "
    "facial movements, consistency, texture realism, and any signs of digital manipulation or artificial "
    "generation."
)
# The distortion and description questions are the project's own (the release has no such labels).
DISTORTION_QUESTION = (
    "Which distortions does the human face in this video show? "
    "Choose all that apply from: " + "; ".join(DISTORTIONS) + "."
)
DESCRIBE_QUESTION = (
    "Describe the quality and authenticity of the human face in this video, "
    "and where any distortions are."
)

QUALITY_ANSWER_STEM = "The quality of the human face in this video is"
AUTHENTICITY_ANSWER_STEM = "The authenticity of the human face in this video is"
DISTORTION_ANSWER_STEM = "The distortions in this video are:"

# The questions asked about every sample, in sequence order within a sample.
TASKS: tuple[str, ...] = ("quality", "authenticity", "distortions")
LEVEL_TASKS: tuple[str, ...] = ("quality", "authenticity")  # the two answered with a level word

QUESTIONS = {"quality": QUALITY_QUESTION, "authenticity": AUTHENTICITY_QUESTION,
             "distortions": DISTORTION_QUESTION, "describe": DESCRIBE_QUESTION}
# What the prompt ends with: the answer up to the word the model has to supply ("describe": free text).
ANSWER_STEMS = {"quality": QUALITY_ANSWER_STEM, "authenticity": AUTHENTICITY_ANSWER_STEM,
                "distortions": DISTORTION_ANSWER_STEM, "describe": ""}


def level_suffix(level: str) -> str:
    """What follows a level stem: ' good.'"""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    return f" {level}."


def distortion_suffix(categories: list[str]) -> str:
    """What follows the distortion stem: the categories in DISTORTIONS order, '; '-separated."""
    unknown = [c for c in categories if c not in DISTORTIONS]
    if unknown:
        raise ValueError(f"unknown distortion categories {unknown}; expected names from DISTORTIONS")
    ordered = [c for c in DISTORTIONS if c in categories] or [NO_DISTORTION]
    return f" {'; '.join(ordered)}."


def answer_suffixes(levels: Mapping[str, str], categories: list[str] | None) -> dict[str, str | None]:
    """A sample's training targets: what the model should say after each task's stem (None for the
    distortion question when the categories are not labelled: it is then not trained on)."""
    return {**{dim: level_suffix(levels[dim]) for dim in DIMENSIONS},
            "distortions": distortion_suffix(categories) if categories is not None else None}


def level_answer(dimension: str, level: str) -> str:
    """'The quality of the human face in this video is good.'"""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    return ANSWER_STEMS[dimension] + level_suffix(level)


def distortion_answer(categories: list[str]) -> str:
    """'The distortions in this video are: Eye Distortions; Hair Distortions.'"""
    return DISTORTION_ANSWER_STEM + distortion_suffix(categories)


def parse_distortion_answer(text: str) -> list[str]:
    """Inverse of ``distortion_answer`` for generated text: the DISTORTIONS names it mentions.

    Matching is by exact category name (case-insensitive), so free generation that
    strays from the format yields the categories it does name, in DISTORTIONS order.
    """
    lowered = text.lower()
    found = [c for c in DISTORTIONS[:-1] if c.lower() in lowered]
    return found or [NO_DISTORTION]


def question_prompt(processor, task: str) -> str:
    """The chat prompt of one task (through the processor's chat template), ending with its answer
    stem: right where the level word, the category list or the free description begins."""
    if task not in QUESTIONS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(QUESTIONS)}")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTIONS[task]}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + ANSWER_STEMS[task]
