"""Phrase bank for the simulated annotators' free-text distortion descriptions.

The real study asked annotators for "a short, concise description" of every marked
distortion, typed or dictated (paper section 3.2), so the raw text is varied,
terse and sometimes misspelt. ``describe`` imitates that: one phrase per noticed
distortion category, drawn from several wordings (many naming a side or place),
joined the way people type, with optional filler words and injected typos. The
category parser ``lmmeval.annotations.description_to_categories`` has to recover
the categories from this text, exactly as it must from real annotations.
"""

from __future__ import annotations

import numpy as np

from ..labels import DISTORTIONS, NO_DISTORTION

EYE, MOUTH, HAIR, FEATURE, HEAD, OVERLAP, BLUR, ACCESSORY = DISTORTIONS[:8]

# "{side}" is filled with "left" or "right".
PHRASES: dict[str, tuple[str, ...]] = {
    EYE: (
        "the {side} eye is misshapen",
        "the eyes sit at different heights",
        "pupils point in different directions",
        "{side} eyelid looks warped",
        "iris of the {side} eye is deformed",
        "eyeballs bulge out unnaturally",
        "the {side} eye is smeared near the corner",
        "eyes look glassy and dead",
        "the eye sockets are hollow",
    ),
    MOUTH: (
        "the mouth is twisted on the {side} side",
        "{side} corner of the mouth is stretched",
        "extra teeth inside the mouth",
        "upper lip is warped",
        "the smile looks unnatural",
        "lips look like rubber",
        "tongue is a strange blob",
        "teeth are uneven and crooked",
    ),
    HAIR: (
        "hair clumps around the {side} ear",
        "strands of hair float in the air",
        "the fringe looks fake and flat",
        "hair on the {side} side is patchy",
        "beard is blotchy",
        "hairline is jagged above the forehead",
        "the hair looks like plastic",
        "bald patch on the {side} side of the scalp",
    ),
    FEATURE: (
        "the nose looks crooked",
        "{side} eyebrow is doubled",
        "{side} cheek has a strange bump",
        "chin is stretched downward",
        "the {side} ear is malformed",
        "forehead is dented",
        "nostrils are asymmetric",
        "the jaw is too wide on the {side}",
    ),
    HEAD: (
        "the skull looks dented on the {side} side",
        "head proportions are off",
        "the cranium is too tall",
        "the back of the head is cut off",
        "neck is stretched and too long",
        "skull shape is wrong on the {side} side",
        "the top of the head is squashed",
    ),
    OVERLAP: (
        "visible seam along the {side} jaw",
        "overlapping layers near the {side} temple",
        "ghosting around the {side} ear",
        "the face merges into the background",
        "background bleeds through the skin",
        "stitching line across the forehead",
        "two textures overlap on the {side} cheek",
        "double contour along the {side} side of the face",
    ),
    BLUR: (
        "very noisy around the {side} cheek",
        "colors look washed out",
        "blur around the {side} eye",
        "the whole thing is out of focus",
        "pixelated edges",
        "way too dark, underexposed",
        "grainy texture all over",
        "image is blurry",
        "overexposed on the {side} side",
    ),
    ACCESSORY: (
        "glasses are warped on the {side} side",
        "necklace is broken up",
        "the shirt collar is deformed",
        "{side} earring floats next to the ear",
        "the hat is glitched",
        "the scarf has holes in it",
        "hoodie looks shapeless",
        "earrings look like blobs",
    ),
    NO_DISTORTION: (
        "looks totally fine",
        "no visible issues",
        "nothing wrong with it",
        "no distortions that i can see",
        "all good",
        "looks natural to me",
        "clean, no problems",
        "no blur or artifacts",
        "nothing stands out",
    ),
}

_SIDES = ("left", "right")
_JOINERS = (", ", " and ", "; ", ", also ", ". ", " plus ")
_FILLERS = ("i think ", "maybe ", "kind of ", "looks like ", "pretty sure ", "hmm, ", "overall ")
# Neighbouring keys on a QWERTY keyboard, for "fat finger" substitutions.
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_QWERTY_ROWS):
    for _c, _ch in enumerate(_row):
        _near = [_row[k] for k in (_c - 1, _c + 1) if 0 <= k < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_QWERTY_ROWS):
                _near += [_QWERTY_ROWS[_other][k] for k in (_c - 1, _c, _c + 1) if 0 <= k < len(_QWERTY_ROWS[_other])]
        _NEIGHBOURS[_ch] = "".join(_near)


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _typo(word: str, rng: np.random.Generator) -> str:
    """One typing slip: swapped, dropped, doubled or fat-fingered letter."""
    i = int(rng.integers(len(word)))
    kind = int(rng.integers(4))
    if kind == 0:  # swap with the next letter (or the previous one at the end)
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower(), "")
    if not near:
        return word
    return word[:i] + near[int(rng.integers(len(near)))] + word[i + 1:]


def _add_typos(text: str, rng: np.random.Generator, typo_rate: float) -> str:
    out = []
    for token in text.split(" "):
        # Only letters-only words of 4+ letters: short words rarely get mistyped, and
        # punctuation attached to a word stays where it is.
        core = token.rstrip(".,;")
        if len(core) >= 4 and core.isalpha() and rng.random() < typo_rate:
            token = _typo(core, rng) + token[len(core):]
        out.append(token)
    return " ".join(out)


def describe(categories: list[str], rng: np.random.Generator, typo_rate: float = 0.08) -> str:
    """A short free-text description of ``categories`` as an annotator would type it.

    ``[]`` or ``["No Distortion"]`` give a "looks fine" style remark. Each category
    contributes one phrase, in random order; ``typo_rate`` is the chance that a word
    of four or more letters gets one typo.
    """
    if isinstance(categories, str):
        raise ValueError("categories must be a list of category names, got a single string")
    if not 0.0 <= typo_rate <= 1.0:
        raise ValueError(f"typo_rate must be in [0, 1], got {typo_rate!r}")
    unknown = [c for c in categories if c not in DISTORTIONS]
    if unknown:
        raise ValueError(f"unknown distortion categories {unknown}; expected names from DISTORTIONS")
    cats = list(dict.fromkeys(categories))
    if NO_DISTORTION in cats and len(cats) > 1:
        raise ValueError(f"{NO_DISTORTION!r} cannot be combined with other categories: {cats}")
    if not cats:
        cats = [NO_DISTORTION]

    order = [cats[i] for i in rng.permutation(len(cats))]
    phrases = [_pick(PHRASES[c], rng).format(side=_pick(_SIDES, rng)) for c in order]
    text = phrases[0]
    for phrase in phrases[1:]:
        text += _pick(_JOINERS, rng) + phrase
    if rng.random() < 0.25:
        text = _pick(_FILLERS, rng) + text
    style = rng.random()
    if style < 0.15:  # hurried: no punctuation at all
        text = " ".join(text.replace(",", " ").replace(";", " ").replace(".", " ").split())
    elif style < 0.6:  # tidy: capitalised sentence with a full stop
        text = text[0].upper() + text[1:] + "."
    return _add_typos(text, rng, typo_rate)
