"""Free-text distortion descriptions -> the nine distortion categories (paper section 3.3).

Annotators described each marked distortion in a short text, typed or dictated, so the raw
text is varied, terse and sometimes misspelt: ``description_to_categories`` reads one text,
``combine_categories`` votes over the annotators of a video.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter, defaultdict

import numpy as np

from ..labels import DISTORTIONS, NO_DISTORTION


#
# The parser is a small lexicon matcher rather than a model, so that the labels it
# produces are reproducible and inspectable. Each category has *strong* words that
# name the distorted part or artefact ("eye", "seam", "blurry") and *weak* words
# that often appear as a mere location or side remark ("face", "head", "melts",
# "smeared"). Within one clause, weak mentions only count when no strong mention
# is present: "left eye melts into the cheek" is an Eye distortion, not also a
# Facial Feature and an Overlap one. A body part right after a location
# preposition ("blur around the left eye") is treated as weak for the same reason.

EYE, MOUTH, HAIR, FEATURE, HEAD, OVERLAP, BLUR, ACCESSORY = DISTORTIONS[:8]

# category -> (strong terms, weak terms); multi-word terms are matched as phrases.
_LEXICON: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    EYE: (
        ("eye", "eyes", "eyeball", "eyeballs", "iris", "irises", "pupil", "pupils", "eyelid", "eyelids",
         "eyelash", "eyelashes", "lash", "lashes", "gaze", "sclera", "cornea", "squint", "squinting",
         "eyed", "eye socket", "eye sockets", "cross eyed", "wall eyed"),
        ("stare", "staring"),
    ),
    MOUTH: (
        ("mouth", "mouths", "lip", "lips", "teeth", "tooth", "toothy", "tongue", "gum", "gums", "smile",
         "smiles", "smiling", "grin", "grinning", "dental", "molar", "molars", "incisor", "incisors",
         "lipstick", "overbite", "underbite"),
        (),
    ),
    HAIR: (
        ("hair", "hairs", "hairy", "hairline", "hairlines", "haircut", "hairstyle", "hairdo", "bangs",
         "fringe", "ponytail", "braid", "braids", "curl", "curls", "curly", "strand", "strands", "beard",
         "beards", "moustache", "mustache", "sideburn", "sideburns", "stubble", "scalp", "bald", "balding",
         "baldness", "wig", "facial hair", "hair line", "hair bun"),
        (),
    ),
    FEATURE: (
        ("nose", "noses", "nostril", "nostrils", "nasal", "eyebrow", "eyebrows", "brow", "brows", "cheek",
         "cheeks", "cheekbone", "cheekbones", "chin", "chins", "jaw", "jaws", "jawline", "forehead",
         "ear", "ears", "earlobe", "earlobes", "dimple", "dimples", "wrinkle", "wrinkles", "mole", "moles",
         "freckle", "freckles", "philtrum", "facial features", "facial feature", "nose bridge",
         "eye brow", "eye brows", "ear lobe", "ear lobes"),
        ("face", "faces", "facial", "skin", "feature", "features", "complexion", "expression"),
    ),
    HEAD: (
        ("skull", "skulls", "cranium", "neck", "necks", "head shape", "shape of the head",
         "head structure", "structure of the head", "back of the head", "top of the head",
         "side of the head", "head proportions", "head proportion", "head geometry", "head size",
         "size of the head", "head outline", "head silhouette"),
        ("head", "heads", "lopsided", "misshapen", "proportion", "proportions", "geometry", "silhouette",
         "profile", "elongated", "squashed", "dented"),
    ),
    OVERLAP: (
        ("seam", "seams", "seamline", "overlay", "overlays", "overlap", "overlaps", "overlapping", "overlapped",
         "blend", "blends", "blending", "blended", "merge", "merges", "merging", "merged", "ghosting", "ghost",
         "ghosted", "intersect", "intersects", "intersecting", "intersection", "clipping", "layer", "layers",
         "layered", "layering", "stitching", "stitched", "stitch", "bleed", "bleeds", "bleeding",
         "transparent", "transparency", "translucent", "see through", "halo", "halos", "patchwork",
         "double contour", "double edge", "double edges", "double outline", "double image",
         "seam line", "seam lines", "seem line", "seem lines", "z fighting"),
        ("melt", "melts", "melting", "melted", "background", "double", "doubled", "duplicate", "duplicated",
         "duplication", "mismatch", "mismatched", "boundary", "border", "fused", "fusing"),
    ),
    BLUR: (
        ("blur", "blurs", "blurry", "blurred", "blurring", "blurriness", "fuzzy", "fuzziness", "hazy", "haze",
         "foggy", "unfocused", "out of focus", "not in focus", "not sharp", "unsharp", "lacks sharpness",
         "grain", "grains", "grainy", "graininess", "noise", "noisy", "speckle", "speckles", "speckled",
         "pixelated", "pixelation", "pixelized", "pixelization", "pixely", "jpeg",
         "compression", "compressed", "low resolution", "low res", "lowres", "resolution", "banding",
         "aliasing", "jaggies", "overexposed", "overexposure", "underexposed", "underexposure", "exposure",
         "blown out", "washed out", "too bright", "too dark", "glare", "saturated", "oversaturated",
         "desaturated", "saturation", "contrast", "brightness", "murky", "muddy", "low detail",
         "lacks detail", "no detail", "not clear", "unclear"),
        ("soft", "smudged", "smudge", "smeared", "smear", "smeary", "washed", "exposed", "lighting",
         "bright", "dark", "dim", "shadow", "shadows", "dull", "faded", "color", "colors", "colour",
         "colours", "pixel", "pixels"),
    ),
    ACCESSORY: (
        ("earring", "earrings", "ear ring", "ear rings", "glasses", "eyeglasses", "eye glasses",
         "spectacles", "sunglasses", "goggles", "hat", "hats", "cap", "caps", "beanie", "hood", "hoodie",
         "helmet", "headband", "headbands", "head band", "headscarf", "headwear", "headphones", "headset",
         "scarf", "scarves", "collar", "collars", "shirt", "shirts", "tshirt", "jacket", "coat", "sweater",
         "blouse", "dress", "clothes", "clothing", "cloth", "garment", "outfit", "necklace", "necklaces",
         "jewelry", "jewellery", "jewel", "pendant", "piercing", "piercings", "nose ring", "nose piercing",
         "lip ring", "lip piercing", "hair clip", "hair tie", "hair band", "hairband", "hairpin",
         "hairclip", "barrette", "bow tie", "tie", "necktie", "button", "buttons", "zipper", "strap",
         "straps", "sleeve", "sleeves", "mask", "veil", "turban", "bandana", "crown", "tiara",
         "accessory", "accessories", "apparel", "fabric", "lapel"),
        ("chain",),
    ),
}

# Words that end the scope of a negation ("no issues except the left eye").
_BREAK_WORDS = frozenset(("but", "except", "however", "although", "though", "apart", "besides", "than",
                          "whereas", "while", "yet", "only", "otherwise"))
# Words that end a clause for the strong/weak rule, and a negation with it
# ("hoodie has no shape and the mouth is twisted")...
_CLAUSE_WORDS = frozenset(("and", "also", "plus", "then"))
# ... except these, which carry a negation on ("no blur or noise" negates both).
_OR_WORDS = frozenset(("or", "nor"))
_NEGATORS = frozenset(("no", "not", "nothing", "none", "without", "never", "isn", "aren", "doesn", "don",
                       "didn", "wasn", "weren", "cannot", "neither", "zero", "nope", "isnt", "arent",
                       "doesnt", "dont", "didnt", "wasnt", "werent", "cant", "nt"))
# A category word right after one of these ("... near the left eye") is a location.
_LOCATION_WORDS = frozenset(("around", "near", "nearby", "by", "beside", "behind", "above", "below", "under",
                             "underneath", "beneath", "over", "on", "at", "in", "inside", "into", "next", "to",
                             "close", "from", "along", "between", "toward", "towards", "onto", "across",
                             "through", "within", "upon", "against", "past", "beyond"))
# Words that may stand between a location word and the body part it introduces;
# at most one determiner, so "on the left side the jaw is off" ends the location.
_DETERMINERS = frozenset(("the", "a", "an", "his", "her", "their", "its", "this", "that", "these", "those",
                          "my", "your"))
_SKIP_WORDS = _DETERMINERS | frozenset(("left", "right", "upper", "lower", "top", "bottom", "both", "whole",
                                        "entire", "inner", "outer", "front", "person", "persons", "subject",
                                        "s", "one", "other", "each", "every", "some", "far", "middle"))
# "around the left side of the eye": a place noun joined to the part by "of".
_PLACE_WORDS = frozenset(("side", "sides", "edge", "edges", "corner", "corners", "area", "region", "part",
                          "center", "centre"))
# "artifact free", "blur-free": a negation that follows the word it negates.
_POST_NEGATORS = frozenset(("free",))

# Real English words that are one typo away from a lexicon word and so must never
# be "corrected" into it ("blue" is not "blur", "wears" is not "ears"). Curated by
# enumerating every one-edit neighbour of the lexicon and keeping the real words.
_NOT_TYPOS = frozenset("""
ace ahead air akin all alo arises ark ars ash aside ask ayes bad badness ball bang bank banks bars
bash bask beam bear bears belt bind binding black blind blond blows blue board boat bold bond
bonding brain brews bring bro brown browse buddy bull bur burly byes call cars cash cask cat cats
cellar chair chat check checks china chip chips clash clashes classes clean clown coast colon
contract cost cot crow crows cups cur curb dart dash dashes daze dead deck denial denied dill dine
dips doll dollar dose drain dual dyes eats era errs evil fact fair fake faked fakes fall fare faze
felt fine flash flashes flip food fridge full fuse gain gains game gaps gate gave gin globe goat
good grasses grip grow grown grows gus hack hacks had hail hale half hall halt halts hand handing
hangs harry has hash hashed hashes hate have hay heap hears heat held hide hips hits hod hold holes
hook hoot host hosted hosting hull irish jars keyed kin label lace lair land landing lane las last
later lazy lead leads lend lie lies life like link links lisp live lives locks lone loses love mace
male mall maps mark mash mass mast maze meet meets mel mental mere met mile miles mine mines moat
mode modes moe mol mold molt month months mood more move moves mule musk nick node nodes nosy note
notes null oat oft ole order overly pace pack packet packs pair pairs peck peg pelt pine player
pocket polar pole poles pose press pull race races racket raid raids rain rash raze read reads
rental rented ridge rips robe role roles rose row rows sack sam sand sash scale scam scar scary sea
seal seas seat seats seed seek seems seen sees shade sham share sharing shift shifts shin short
shorts simile simple simples sin sine sips site ski skill skip skirt slam slash slashes slip solar
sole sort sot south spam spare spin stage staging stale stand stands star stark start starting state
stating stem store storing stray string strip strips sums surly switch switched switching tall task
tats team teams tears tented tenth thin tips toggles train trap traps url used using veal vein vine
vole walk walls wars wash wears well wide will wine wood years yes youth zips
""".split())


def _term_table() -> dict[tuple[str, ...], tuple[str | None, bool]]:
    table: dict[tuple[str, ...], tuple[str | None, bool]] = {}
    for category, (strong, weak) in _LEXICON.items():
        for terms, is_strong in ((strong, True), (weak, False)):
            for term in terms:
                key = tuple(term.split())
                if key in table and table[key] != (category, is_strong):
                    raise RuntimeError(f"lexicon term {term!r} listed twice")  # a bug in this file
                table[key] = (category, is_strong)
    return table


_TERMS = _term_table()
# Idioms whose words would otherwise mislead: "grainy all over" is not a location.
_TERMS.update({tuple(p.split()): (None, False)
               for p in ("all over", "over all", "all around", "kind of", "sort of")})
_MAX_TERM_LEN = max(len(k) for k in _TERMS)
# Every word the parser knows; these are taken as written, never "corrected".
_KNOWN = frozenset(w for k in _TERMS for w in k) | _BREAK_WORDS | _CLAUSE_WORDS | _OR_WORDS | _NEGATORS | \
    _LOCATION_WORDS | _SKIP_WORDS | _PLACE_WORDS | _POST_NEGATORS | {"of"}
# The words typos are corrected towards: the lexicon, plus the longer function words
# whose loss would change the result ("aroudn the eye" must stay a location). Short
# function words are left out: too many real words are one edit from "near" or "none".
_VOCAB = (frozenset(w for k in _TERMS for w in k) | _SKIP_WORDS | _PLACE_WORDS | {"also", "plus"}
          | {w for w in _LOCATION_WORDS | _NEGATORS | _BREAK_WORDS if len(w) >= 5} - {"while", "never"})

_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@functools.cache
def _typo_index() -> dict[str, list[tuple[str, str]]]:
    """{misspelling: [(vocab word, edit kind)]} for all one-edit misspellings of the vocabulary.

    The edit kind says what the typist did to the vocab word: "insert" means the
    misspelling has an extra letter, "delete" a missing one.
    """
    index: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for word in _VOCAB:
        n = len(word)
        variants = []
        variants += [(word[:i] + word[i + 1:], "delete") for i in range(n)]
        variants += [(word[:i] + word[i + 1] + word[i] + word[i + 2:], "transpose") for i in range(n - 1)]
        variants += [(word[:i] + c + word[i + 1:], "substitute") for i in range(n) for c in _ALPHABET if c != word[i]]
        variants += [(word[:i] + c + word[i:], "insert") for i in range(n + 1) for c in _ALPHABET]
        for variant, kind in variants:
            if variant != word and variant not in _KNOWN:
                index[variant].append((word, kind))
    return index


def _allowed_edit(token: str, word: str, kind: str) -> bool:
    """Which one-edit corrections are safe enough, by token length.

    Short tokens have many real-word neighbours ("hat"/"had", "ear"/"era"), so the
    shorter the token the fewer edit kinds are trusted.
    """
    n = len(token)
    if n <= 2:
        return False
    if n == 3:
        # "eey" -> "eye", "hai" -> "hair"; substitutions on 3 letters are hopeless.
        return kind == "transpose" or (kind == "delete" and len(word) == 4)
    if n == 4:
        if kind == "insert":  # "eyee" -> "eye": only a doubled letter on a 3-letter word
            return any(token[i] == token[i + 1] and token[:i] + token[i + 1:] == word for i in range(3))
        return True
    return len(word) >= 4


@functools.lru_cache(maxsize=65536)
def _correct(token: str) -> str:
    """The vocabulary word ``token`` most likely stands for (itself if none)."""
    if token in _KNOWN or token in _NOT_TYPOS:
        return token
    candidates = [(w, k) for w, k in _typo_index().get(token, ()) if _allowed_edit(token, w, k)]
    if not candidates:
        return token
    # Several words one edit away: swapped letters (the most common slip) win, then
    # the most similar word ("fring" is "fringe", not "ring").
    candidates.sort(key=lambda wk: (wk[1] != "transpose", -difflib.SequenceMatcher(None, token, wk[0]).ratio(), wk[0]))
    return candidates[0][0]


_TOKEN_RE = re.compile(r"[a-z]+|[.,;:!?()\[\]/&\n\"]")
_PUNCT_BREAK = frozenset(".,;:!?()[]/\n\"")


def _units(text: str) -> list[tuple[str, str | None, bool]]:
    """Tokenise, correct typos and match lexicon terms: a list of (kind, category, strong).

    Kinds: "term" (a lexicon term; category None for a neutral phrase such as "all
    over"), "break", "clause", "or", "neg", "postneg", "loc", "det", "skip", "place",
    "of", "word".
    """
    raw = _TOKEN_RE.findall(text.lower().replace("\u2019", "'").replace("'", ""))
    tokens = [_correct(t) if t.isalpha() else t for t in raw]
    units: list[tuple[str, str | None, bool]] = []
    i = 0
    while i < len(tokens):
        # Longest lexicon term starting here, so "back of the head" wins over "head".
        for n in range(min(_MAX_TERM_LEN, len(tokens) - i), 0, -1):
            key = tuple(tokens[i:i + n])
            if key in _TERMS:
                category, strong = _TERMS[key]
                units.append(("term", category, strong))
                i += n
                break
        else:
            tok = tokens[i]
            i += 1
            if tok in _PUNCT_BREAK or tok in _BREAK_WORDS:
                kind = "break"
            elif tok in _CLAUSE_WORDS or tok == "&":
                kind = "clause"
            elif tok in _OR_WORDS:
                kind = "or"
            elif tok in _NEGATORS:
                kind = "neg"
            elif tok in _POST_NEGATORS:
                kind = "postneg"
            elif tok in _LOCATION_WORDS:
                kind = "loc"
            elif tok in _DETERMINERS:
                kind = "det"
            elif tok in _SKIP_WORDS:
                kind = "skip"
            elif tok in _PLACE_WORDS:
                kind = "place"
            elif tok == "of":
                kind = "of"
            else:
                kind = "word"
            units.append((kind, None, False))
    return units


def _after_location(units: list[tuple[str, str | None, bool]], i: int) -> bool:
    """Is units[i] introduced by a location word?

    Accepts "around the left <part>" and "on the upper side of the <part>", but not
    "on the left side the <part>", which (in unpunctuated text) starts a new remark.
    """
    j, dets, ofs = i - 1, 0, 0
    while j >= 0 and i - j <= 8:
        kind = units[j][0]
        if kind == "det":
            dets += 1
        elif kind == "of":
            if not (j > 0 and units[j - 1][0] == "place"):
                return False
            ofs += 1
        elif kind == "place":
            if units[j + 1][0] != "of":
                return False
        elif kind != "skip":
            break
        j -= 1
    return j >= 0 and units[j][0] == "loc" and dets <= 1 + ofs


def description_to_categories(text: str) -> list[str]:
    """Free-text distortion description -> the DISTORTIONS it mentions (in DISTORTIONS order).

    Tolerates typos (one edit per word), plural/inflected forms and negation ("no
    blur", "nothing wrong with the eyes"). Returns ``[NO_DISTORTION]`` when no
    distortion is mentioned, including for an empty text.
    """
    if not isinstance(text, str):
        raise ValueError(f"description must be a string, got {type(text).__name__}")
    units = _units(text)

    found: set[str] = set()
    clause: list[tuple[str, bool]] = []  # (category, strong) mentions in the current clause
    negated = False

    def close_clause() -> None:
        strong = {c for c, s in clause if s}
        found.update(strong if strong else {c for c, _ in clause})
        clause.clear()

    for i, (kind, category, strong) in enumerate(units):
        if kind in ("break", "clause"):
            close_clause()
            negated = False
        elif kind == "or":
            close_clause()
        elif kind == "neg":
            negated = True
        elif kind == "term" and category is not None:
            post_negated = i + 1 < len(units) and units[i + 1][0] == "postneg"
            if not (negated or post_negated):
                # After a location word, a part of the face only says where the problem is.
                clause.append((category, strong and not _after_location(units, i)))
    close_clause()
    return [c for c in DISTORTIONS if c in found] or [NO_DISTORTION]


def combine_categories(descriptions: list[str], min_votes: int = 1) -> list[str]:
    """Categories named by at least ``min_votes`` of the descriptions (one vote each).

    Returns the categories in DISTORTIONS order, or ``[NO_DISTORTION]`` if none
    reaches the threshold. "No Distortion" itself is never voted in next to a real
    distortion: it is what remains when nothing else is agreed on.
    """
    if isinstance(descriptions, str):
        raise ValueError("descriptions must be a list of strings, got a single string")
    if isinstance(min_votes, bool) or not isinstance(min_votes, (int, np.integer)) or min_votes < 1:
        raise ValueError(f"min_votes must be a positive integer, got {min_votes!r}")
    votes: Counter[str] = Counter()
    for i, text in enumerate(descriptions):
        if not isinstance(text, str):
            raise ValueError(f"descriptions[{i}] must be a string, got {type(text).__name__}")
        votes.update(set(description_to_categories(text)) - {NO_DISTORTION})
    return [c for c in DISTORTIONS if c != NO_DISTORTION and votes[c] >= min_votes] or [NO_DISTORTION]
