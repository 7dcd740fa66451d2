"""Build the tiny preset's BPE vocabulary: lmmeval/model/presets/tiny_bpe.json.

The tiny Qwen2.5-VL stand-in (lmmeval.model.presets) needs a byte-level BPE tokenizer of the
real design but with a small vocabulary. It is trained once, here, on a fixed English corpus
heavy on the assessor's own words (levels, dimensions, the nine distortion categories, the
question and answer phrasing), so that those words become whole tokens; the result ships as a
file and every tiny base is built from it. Rerun only to change the corpus or the vocabulary
size (a changed vocabulary changes every tiny model, the demo checkpoint included):

    python tools/build_tiny_tokenizer.py [--check]

--check exits 1 if the shipped file differs from what this script builds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from lmmeval.labels import DISTORTIONS, LEVELS
from lmmeval.model.presets import BPE_FILE, load_preset

# Qwen2's pre-tokenizer split pattern (identical to transformers' Qwen2Tokenizer).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# The corpus. Its exact text decides every token id of the tiny preset: edit with care.
_LEVELS = LEVELS
_DISTORTIONS = DISTORTIONS

_SUBJECTS = (
    "the man", "the woman", "a child", "the old teacher", "my friend", "our neighbour",
    "the young artist", "a doctor", "the student", "the engineer", "his sister", "her brother",
    "the farmer", "a musician", "the pilot", "the writer", "the team", "every visitor",
    "the model", "this person", "the girl", "the boy", "a stranger", "the family",
)
_VERBS = (
    "looks at", "paints", "watches", "opens", "carries", "finds", "reads", "builds", "cleans",
    "describes", "remembers", "repairs", "draws", "measures", "compares", "explains", "moves",
    "checks", "records", "shows", "loves", "sees", "holds", "wants", "makes", "takes",
)
_OBJECTS = (
    "a red apple", "the old window", "a small garden", "the long letter", "a new camera",
    "the blue door", "the map of the city", "a wooden table", "the bright lamp", "a cup of tea",
    "the heavy box", "a simple picture", "the green field", "the last page", "a quiet room",
    "the white wall", "a short film", "the morning news", "an open book", "the yellow car",
    "a warm coat", "the river bank", "a tall tree", "the kitchen floor", "a sharp pencil",
)
_PLACES = (
    "in the morning", "at night", "after school", "near the station", "in the park",
    "on the weekend", "before dinner", "at the market", "in the studio", "under the bridge",
    "during the summer", "in winter", "at home", "by the sea", "in the small village",
)
_ADJECTIVES = (
    "sharp", "blurry", "bright", "dark", "natural", "smooth", "noisy", "clean", "realistic",
    "strange", "stable", "soft", "detailed", "distorted", "plausible", "clear", "grainy",
    "consistent", "broken", "symmetric", "lifelike", "artificial", "correct", "wrong",
)
_FACE_PARTS = (
    "eyes", "mouth", "teeth", "lips", "nose", "ears", "hair", "forehead", "chin", "cheeks",
    "skin", "eyebrows", "neck", "head", "jaw", "glasses", "hat", "collar", "shirt", "earrings",
)
_MEDIA = ("video", "image", "picture", "frame", "clip", "render", "sequence", "photo")
# Several hundred everyday English words, so the generic part of the vocabulary is not
# only made of the assessor's own phrases.
_COMMON_WORDS = """
about above across action activity actually address admit adult afraid after afternoon again
against agency agent agree ahead almost alone along already although always amount animal
another answer anyone anything appear apply approach area argue around arrive article artist
attack attention audience author available avoid away baby back ball bank base beautiful
because become before begin behaviour behind believe benefit best better between beyond big
bird black blood board body book born both box break bring brother budget build building
business call camera campaign cancer candidate capital card care career carry case catch cause
cell center central century certain chair challenge chance change character charge check child
choice church citizen city civil claim class clear clearly close coach cold collection college
colour come common community company compare computer concern condition conference consider
contain continue control cost could country couple course court cover create crime cultural
culture current customer daughter dead deal death debate decade decide decision deep defense
degree democratic describe design despite detail determine develop development difference
difficult dinner direction director discover discuss disease doctor door down draw dream drive
drop during early easy economic economy edge education effect effort eight either election
else employee energy enjoy enough enter entire environment especially establish evening event
ever every everybody everyone everything evidence exactly example executive exist expect
experience expert explain factor fail fall family father fear federal feel feeling field fight
figure fill film final finally financial find fine finger finish fire firm first fish five
floor follow food foot force foreign forget form former forward four free friend front full
fund future game garden general generation girl give glass goal government great green ground
group grow growth guess hand hang happen happy hard have health hear heart heat heavy help here
herself high himself history hold home hope hospital hotel hour house however huge hundred
husband idea identify imagine impact important improve include including increase indeed
indicate individual industry information inside instead institution interest interesting
international interview into investment involve issue itself join just keep kill kind kitchen
know knowledge land language large last late later laugh lawyer lead leader learn least leave
left legal less letter level life light like likely line list listen little live local long
look lose loss lot love machine magazine main maintain major majority make manage management
manager many market marriage material matter maybe mean measure media medical meet meeting
member memory mention message method middle might military million mind minute miss mission
modern moment money month more morning most mother motion mouth move movement movie much music
must myself name nation national natural nature near nearly necessary need network never news
newspaper next nice night none north note nothing notice number occur offer office officer
official often once only onto open operation opportunity option order organization other
others outside over owner page pain painting paper parent part participant particular
particularly partner party pass past patient pattern peace people perform performance perhaps
period person personal phone physical pick piece place plan plant play player point police
policy political politics poor popular population position positive possible power practice
prepare present president pressure pretty prevent price private probably problem process
produce product production professional professor program project property protect prove
provide public pull purpose push question quickly quite race radio raise range rather reach
read ready real reality realize really reason receive recent recently recognize record reduce
reflect region relate relationship religious remain remember remove report represent republican
require research resource respond response responsibility rest result return reveal rich right
rise risk road rock role room rule safe same save scene school science scientist score season
seat second section security seek seem sell send senior sense series serious serve service
seven several shake share shoot short shot should shoulder show side sign significant similar
simple simply since sing single sister site situation size skill skin small smile social
society soldier some somebody someone something sometimes song soon sort sound source south
southern space speak special specific speech spend sport spring staff stage stand standard star
start state statement station stay step still stock stop store story strategy street strong
structure student study stuff style subject success successful such suddenly suffer suggest
summer support sure surface system table take talk task teach teacher technology television
tell tend term test than thank that their them themselves then theory there these they thing
think third those though thought thousand threat three through throughout throw thus today
together tonight total tough toward town trade traditional training travel treat treatment tree
trial trip trouble true truth turn type under understand unit until upon usually value various
very victim view violence visit voice vote wait walk wall want watch water weapon wear week
weight well west western whatever wheel when where whether which while white whole whom whose
wide wife will wind window wish within without wonder word work worker world worry would write
writer wrong yard yeah year yellow young yourself
""".split()

_GENERIC = (
    "The sun rises in the east and sets in the west.",
    "It was a cold day, so we stayed inside and read books.",
    "Please write your name at the top of the page.",
    "Numbers such as 1, 2, 3, 10, 42 and 100 appear in many tables.",
    "She said that the meeting would start at 9 o'clock.",
    "They don't know where the keys are, but they'll find them.",
    "We're going to the city tomorrow; I've packed everything.",
    "What time is it? It's half past four.",
    "Water boils at 100 degrees and freezes at 0 degrees.",
    "The quick brown fox jumps over the lazy dog.",
    "Answer the question with a single word.",
    "You are a helpful assistant.",
    "system\nYou are a helpful assistant.",
    "user\nHello! Please rate this video.",
    "assistant\nHello, I am the assistant; the user asked and the system answered.",
    "The user sends a message, the assistant replies and the system keeps the rules.",
    "Thank you very much for your help!",
    "Can you describe what happens next?",
    "Yes, no, maybe: choose one option.",
    "This is a test of the system, not a real message.",
    "A score of 3.5 out of 5 is above the average.",
    "The results were computed over 2000 videos and 24 people.",
)


def tokenizer_corpus() -> list[str]:
    """The fixed English corpus the tiny BPE is trained on (independent of the seed).

    Heavy on the assessor's own vocabulary (levels, dimensions, the nine distortion
    categories, question/answer phrasing) so those words become whole tokens, plus a few
    hundred generic sentences so ordinary text tokenizes sensibly.
    """
    rng = random.Random(20250101)
    lines: list[str] = []
    dims = ("quality", "authenticity")
    for dim in dims:
        for level in _LEVELS:
            for medium in _MEDIA:
                lines.append(f"The {dim} of the human face in this {medium} is {level}.")
            lines.append(f"I would rate the {dim} of this face as {level}.")
            lines.append(f"Overall, the {dim} is {level}, and the face looks {rng.choice(_ADJECTIVES)}.")
        lines.append(
            f"Rate the {dim} of the human face in this video. "
            "Answer with one of: bad, poor, fair, good, excellent."
        )
        lines.append(f"How would you rate the {dim} of the human face in this image?")
    lines.append(
        "Rate the visual quality of the human face in this video "
        "(texture, colour fidelity, structural integrity)."
    )
    lines.append(
        "Rate the authenticity of the human face in this video "
        "(would it pass as a real, plausible human head?)."
    )
    lines.append(
        "Which distortions does the human face in this video show? Choose all that apply from: "
        + "; ".join(_DISTORTIONS) + "."
    )
    for name in _DISTORTIONS:
        for _ in range(4):
            other = rng.choice(_DISTORTIONS)
            lines.append(f"The distortions in this video are: {name}.")
            lines.append(f"The distortions in this video are: {name}; {other}.")
        lines.append(f"Which distortions are in this video? {name}.")
    for _ in range(160):
        part = rng.choice(_FACE_PARTS)
        adj = rng.choice(_ADJECTIVES)
        medium = rng.choice(_MEDIA)
        level = rng.choice(_LEVELS)
        lines.append(
            rng.choice(
                (
                    f"The {part} in this {medium} look {adj}, so the quality is {level}.",
                    f"In this {medium} the {part} of the human face are {adj}.",
                    f"Which {part} are {adj} in the {medium}? The {part} of the face.",
                    f"The human face has {adj} {part}; the authenticity is {level}.",
                    f"Look at the {part}: they are {adj} and the {medium} is {level}.",
                )
            )
        )
    for _ in range(260):
        lines.append(
            f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
            f"{rng.choice(_OBJECTS)} {rng.choice(_PLACES)}."
        )
    words = list(_COMMON_WORDS)
    for start in range(0, len(words), 9):
        chunk = words[start : start + 9]
        lines.append(" ".join(chunk).capitalize() + ".")
    for _ in range(120):
        lines.append(" ".join(rng.sample(words, 10)).capitalize() + ".")
    lines.extend(_GENERIC)
    # Chat-format role names start a line after <|im_start|> (no leading space).
    for _ in range(12):
        lines.extend(["system\nYou are a helpful assistant.", "user\nRate it.", "assistant\nIt is good."])
    # The question phrasing itself, a few times over.
    for _ in range(4):
        lines.append(
            "Rate the visual quality of the human face in this video "
            "(texture, colour fidelity, structural integrity)."
        )
    # The level words and category names once more on their own, with a leading space as
    # they appear after "is" in the answers.
    for level in _LEVELS:
        lines.extend([f"It is {level}.", f"{level.capitalize()} is {level}."] * 3)
    return lines



def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / Qwen byte -> printable-character table (the byte-level BPE alphabet order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def train_bpe(vocab_size: int | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE (Qwen2 pre-tokenizer regex) on ``tokenizer_corpus()``.

    Returns ``(vocab, merges)`` in canonical order: the 256 byte symbols first (GPT-2 byte
    order, as in Qwen's vocab), then one token per merge in merge order, so the ids do not
    depend on how the trainer numbered them internally.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    vocab_size = vocab_size or load_preset("tiny")["bpe_vocab_size"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    merges_raw = json.loads(tok.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges_raw]

    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    if len(vocab) != vocab_size:
        raise RuntimeError(
            f"the tiny BPE corpus supports only {len(vocab)} tokens, fewer than the requested "
            f"{vocab_size}: enlarge tokenizer_corpus() or lower bpe_vocab_size in presets/tiny.yaml"
        )
    return vocab, merges



def bpe_json() -> str:
    """The shipped file's exact text: the vocabulary and the merges of ``train_bpe``."""
    vocab, merges = train_bpe()
    return json.dumps({"vocab": vocab, "merges": [list(m) for m in merges]}, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args()
    text = bpe_json()
    if args.check:
        same = BPE_FILE.read_text(encoding="utf-8") == text
        print(f"{BPE_FILE}: {'matches' if same else 'DIFFERS from'} what this script builds")
        return 0 if same else 1
    BPE_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {BPE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
