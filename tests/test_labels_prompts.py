import numpy as np
import pytest

from lmmeval.labels import DISTORTIONS, LEVELS, score_to_level
from lmmeval.prompts import (
    DISTORTION_ANSWER_STEM,
    distortion_answer,
    level_answer,
    parse_distortion_answer,
)


def test_label_sets_are_the_papers():
    assert LEVELS == ("bad", "poor", "fair", "good", "excellent")
    assert DISTORTIONS == (
        "Eye Distortions", "Mouth Distortions", "Hair Distortions", "Facial Feature Distortions",
        "Head Structure Distortions", "Overlap or Blending Issues", "Blurring / Exposure / Grain",
        "Accessories or Cloth Distortions", "No Distortion",
    )


def test_score_to_level_hand_worked_bins():
    # [0, 100] -> edges 20, 40, 60, 80; an edge value belongs to the lower bin (Eq. 4: m + ... < s <= ...),
    # the minimum itself to the first bin.
    scores = [0, 10, 20, 20.001, 40, 59.99, 60, 60.01, 80, 99, 100]
    expected = ["bad", "bad", "bad", "poor", "poor", "fair", "fair", "good", "good", "excellent", "excellent"]
    assert score_to_level(scores, 0, 100) == expected


def test_score_to_level_defaults_to_data_range():
    # min 30, max 80 -> edges 40, 50, 60, 70.
    assert score_to_level([30, 45, 50, 55, 80]) == ["bad", "poor", "poor", "fair", "excellent"]
    # Every level is used when scores are spread evenly over the range.
    assert set(score_to_level(np.linspace(0, 1, 50))) == set(LEVELS)


def test_score_to_level_clamps_outside_explicit_range_and_rejects_bad_input():
    assert score_to_level([-5, 105], 0, 100) == ["bad", "excellent"]
    with pytest.raises(ValueError, match="NaN"):
        score_to_level([1.0, float("nan")])
    with pytest.raises(ValueError, match="hi > lo"):
        score_to_level([3.0, 3.0])
    assert score_to_level([]) == []


def test_answers_round_trip():
    assert level_answer("quality", "good") == "The quality of the human face in this video is good."
    assert level_answer("authenticity", "bad").startswith("The authenticity")
    with pytest.raises(ValueError, match="unknown level 'great'"):
        level_answer("quality", "great")
    text = distortion_answer(["Mouth Distortions", "Eye Distortions"])
    assert text == f"{DISTORTION_ANSWER_STEM} Eye Distortions; Mouth Distortions."  # DISTORTIONS order
    assert parse_distortion_answer(text) == ["Eye Distortions", "Mouth Distortions"]
    assert parse_distortion_answer(distortion_answer([])) == ["No Distortion"]
    with pytest.raises(ValueError, match="unknown distortion"):
        distortion_answer(["Nose Distortions"])


def test_level_questions_are_the_released_ones_verbatim():
    """The user turns of the authors' Gen3DHF label files (main/datasets/numerical/*.json), after
    their '<video>' placeholder, and the answer stems those files use."""
    from lmmeval.prompts import ANSWER_STEMS, QUESTIONS

    assert QUESTIONS["quality"] == ("Please rate the quality of the human face in this video, considering factors "
                                    "such as resolution, clarity, smoothness, and overall visual quality.")
    assert QUESTIONS["authenticity"] == (
        "Please rate the authenticity of the human face in this video, considering factors such as natural facial "
        "movements, consistency, texture realism, and any signs of digital manipulation or artificial generation.")
    assert ANSWER_STEMS["quality"] == "The quality of the human face in this video is"
    assert ANSWER_STEMS["authenticity"] == "The authenticity of the human face in this video is"
