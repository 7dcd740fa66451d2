"""lmmeval.data.descriptions (free text -> distortion categories) and the phrase bank of the
simulated annotators (lmmeval.synth.descriptions) it must read."""

from __future__ import annotations

import numpy as np
import pytest

from lmmeval.data.descriptions import combine_categories, description_to_categories
from lmmeval.labels import DISTORTIONS, NO_DISTORTION
from lmmeval.synth.descriptions import PHRASES, describe

EYE, MOUTH, HAIR, FEATURE, HEAD, OVERLAP, BLUR, ACCESSORY = DISTORTIONS[:8]

HAND_DESCRIPTIONS = [
    ("left eye melts into the cheek", {EYE}),
    ("blurry", {BLUR}),
    ("earring glitch", {ACCESSORY}),
    ("teeth look smeared", {MOUTH}),
    ("lips are crooked", {MOUTH}),
    ("hair has holes", {HAIR}),
    ("weird hairline", {HAIR}),
    ("nose is misplaced", {FEATURE}),
    ("eyebrow duplicated", {FEATURE}),
    ("cheek bulge", {FEATURE}),
    ("skull is lopsided", {HEAD}),
    ("head shape is wrong", {HEAD}),
    ("back of the head is flat", {HEAD}),
    ("visible seam", {OVERLAP}),
    ("texture blends into the background", {OVERLAP}),
    ("overlapping layers", {OVERLAP}),
    ("overexposed", {BLUR}),
    ("grainy", {BLUR}),
    ("noisy", {BLUR}),
    ("washed out", {BLUR}),
    ("collar is glitchy", {ACCESSORY}),
    ("glasses", {ACCESSORY}),
    ("hat melts", {ACCESSORY}),
    ("looks fine", {NO_DISTORTION}),
    ("no issues", {NO_DISTORTION}),
    ("", {NO_DISTORTION}),
    ("nothing wrong", {NO_DISTORTION}),
    ("eyes and mouth are off, also blurry", {EYE, MOUTH, BLUR}),
    # typos
    ("the face is blurr", {BLUR}),
    ("eyse are uneven", {EYE}),
    ("mouht is twisted", {MOUTH}),
    ("weird harline on the left", {HAIR}),
    ("earing is floating", {ACCESSORY}),
    ("seem line along the jaw", {OVERLAP}),
    ("the back of the hed is flat", {HEAD}),
    ("Nose and ears misplaced; graniy", {FEATURE, BLUR}),
    # real words that are one edit from a lexicon word must not be "corrected"
    ("here it looks good", {NO_DISTORTION}),
    ("I guess it's ok", {NO_DISTORTION}),
    ("blue eyes look wrong", {EYE}),
    ("the eyes seem off", {EYE}),
    ("wears glasses that are bent", {ACCESSORY}),
    ("brown hair is patchy", {HAIR}),
    ("the eyebrow is too thick", {FEATURE}),
    ("none", {NO_DISTORTION}),
    # negation, locations, multi-word terms
    ("no blur or noise at all", {NO_DISTORTION}),
    ("no issues except the left eye", {EYE}),
    ("blurring near the right eye", {BLUR}),
    ("hat on the head melts", {ACCESSORY}),
    ("hair clip looks broken", {ACCESSORY}),
    ("Collar merges into the neck, teeth missing", {ACCESSORY, OVERLAP, MOUTH}),
    ("pixelated and out of focus", {BLUR}),
]


def _bank_texts():
    return {p.format(side=side).lower() for ps in PHRASES.values() for p in ps for side in ("left", "right")}


@pytest.mark.parametrize("text,expected", HAND_DESCRIPTIONS)
def test_description_to_categories_hand_phrases(text, expected):
    assert text.lower() not in _bank_texts()  # independent of the phrase bank
    got = description_to_categories(text)
    assert set(got) == expected
    assert got == [c for c in DISTORTIONS if c in expected]  # DISTORTIONS order


def test_description_to_categories_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string, got NoneType"):
        description_to_categories(None)
    with pytest.raises(ValueError, match="must be a string, got int"):
        description_to_categories(42)


def test_phrase_bank_is_rich_and_parses_cleanly():
    assert set(PHRASES) == set(DISTORTIONS)
    for category, phrases in PHRASES.items():
        assert len(set(phrases)) >= 5, category
        if category != NO_DISTORTION:
            assert sum("{side}" in p for p in phrases) >= 2, category
        for p in phrases:
            for side in ("left", "right"):
                assert description_to_categories(p.format(side=side)) == [category], p


def test_describe_basics():
    rng = np.random.default_rng(0)
    for cats in ([], [NO_DISTORTION]):
        text = describe(cats, rng, typo_rate=0.0)
        assert description_to_categories(text) == [NO_DISTORTION], text
    assert describe([EYE, BLUR], np.random.default_rng(5)) == describe([EYE, BLUR], np.random.default_rng(5))
    with pytest.raises(ValueError, match=r"unknown distortion categories \['Nose Distortions'\]"):
        describe(["Nose Distortions"], rng)
    with pytest.raises(ValueError, match="cannot be combined with other categories"):
        describe([EYE, NO_DISTORTION], rng)


def test_parser_recovers_describe_output():
    rng = np.random.default_rng(0)
    n, hits = 500, 0
    for _ in range(n):
        k = int(rng.choice([0, 1, 1, 1, 2, 2, 3]))
        cats = [DISTORTIONS[i] for i in sorted(rng.choice(8, size=k, replace=False))]
        text = describe(cats, rng)
        hits += description_to_categories(text) == (cats or [NO_DISTORTION])
    rate = hits / n
    print(f"description parser recovered {hits}/{n} = {rate:.1%} of simulated descriptions")
    assert rate >= 0.95


def test_combine_categories_voting():
    descriptions = ["left eye melts", "eye looks odd and it is blurry", "mouth is twisted"]
    assert combine_categories(descriptions) == [EYE, MOUTH, BLUR]
    assert combine_categories(descriptions, min_votes=2) == [EYE]
    assert combine_categories(descriptions, min_votes=3) == [NO_DISTORTION]
    # One vote per description, however often it repeats a category.
    assert combine_categories(["eye eye eyes, the eyeball", "looks fine"], min_votes=2) == [NO_DISTORTION]
    assert combine_categories(["looks fine", "no issues"]) == [NO_DISTORTION]
    assert combine_categories([]) == [NO_DISTORTION]
    with pytest.raises(ValueError, match="min_votes must be a positive integer, got 0"):
        combine_categories(descriptions, min_votes=0)
    with pytest.raises(ValueError, match="got a single string"):
        combine_categories("left eye melts")
