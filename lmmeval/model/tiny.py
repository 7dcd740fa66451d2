"""A tiny, randomly initialised Qwen2.5-VL base model, built entirely offline.

This is the test/demo stand-in for ``Qwen/Qwen2.5-VL-7B-Instruct``. It has the identical
architecture (``Qwen2_5_VLConfig`` with a windowed-attention ViT including full-attention
blocks, 2x2 patch merger MLP, 3D multimodal RoPE, untied LM head), the same byte-level BPE
tokenizer design with every Qwen2.5-VL special token, the real chat template, and the real
processor classes (``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor`` /
``Qwen2_5_VLProcessor`` with patch 14, merge 2, temporal patch 2 and CLIP normalisation).
It is written with ``save_pretrained`` and read back with exactly the calls used for the real
checkpoint (``Qwen2_5_VLForConditionalGeneration.from_pretrained(dir)`` and
``AutoProcessor.from_pretrained(dir)``), so every test and the demo exercise the production
code path on a 2-core CPU in seconds. Only the sizes differ (see ``TINY_PRESET``); the
weights are random, so its outputs carry no meaning until it is fine-tuned.

Usage::

    from lmmeval.model import build_tiny_base
    path = build_tiny_base("runs/tiny_base", seed=0)   # ~6 MB directory
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..labels import DISTORTIONS, LEVELS

# Qwen2.5-VL-7B-Instruct sizes are quoted in the comments for comparison.
TINY_PRESET: dict[str, Any] = {
    # --- language model (Qwen2 decoder) ---------------------------------------------
    # Width of the LLM (7B: 3584). 128 keeps the LM head and embeddings tiny while
    # still splitting into 4 heads of head_dim 32.
    "hidden_size": 128,
    # Decoder layers (7B: 28). Two layers give a "first" and a "last" hidden state
    # distinct from the embeddings, which is all the regression/saliency heads need.
    "num_hidden_layers": 2,
    # Query heads (7B: 28) and grouped key/value heads (7B: 4): GQA is kept (ratio 2).
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    # SwiGLU width (7B: 18944, ~5.3x); 2x here.
    "intermediate_size": 256,
    # Multimodal RoPE split of head_dim/2 = 16 rotary frequencies into (time, height,
    # width) sections, the 7B's [16, 24, 24] of 64 scaled by 1/4.
    "mrope_section": [4, 6, 6],
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 128000,
    # --- vocabulary -----------------------------------------------------------------
    # Byte-level BPE trained on the built-in corpus: 256 byte symbols + 1792 merges
    # (7B: 151643 regular tokens). The 22 Qwen2.5-VL added tokens follow directly after,
    # in the real order, so ``<|endoftext|>`` is id 2048 here (151643 in the 7B).
    "bpe_vocab_size": 2048,
    # Embedding / LM-head rows (7B: 152064): padded past the 2048 + 22 used ids to a
    # multiple of 64, as in the real model.
    "vocab_size": 2112,
    # --- vision tower (ViT) ---------------------------------------------------------
    # Blocks (7B: 32) and which of them use full attention (7B: [7, 15, 23, 31]); the
    # others use 112-pixel windowed attention with the real window permutation (a 112x112
    # input is exactly one window; larger inputs split into several).
    "vision_depth": 4,
    "vision_fullatt_block_indexes": [1, 3],
    # ViT width (7B: 1280), heads (7B: 16 -> head_dim 80; here 16) and MLP (7B: 3420).
    "vision_hidden_size": 64,
    "vision_num_heads": 4,
    "vision_intermediate_size": 128,
    # Unchanged from the 7B: these define the token geometry the processor must match.
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "tokens_per_second": 2,
    # --- processor ------------------------------------------------------------------
    # Pixel budget per image / per video frame (7B: 3136 .. 12845056 for images). A
    # 112x112 frame stays 112x112 -> 8x8 patches -> 16 merged tokens per temporal pair;
    # larger inputs are scaled down (aspect kept) to at most 256 patches = 64 tokens.
    "min_pixels": 28 * 28 * 4,
    "max_pixels": 28 * 28 * 64,
}

# The real Qwen2.5-VL-7B-Instruct shape, for benchmarks with random weights (no download):
# same keys as TINY_PRESET; the tokenizer and processor stay the tiny ones (token ids
# below 2112 are valid rows of the 7B embedding).
QWEN25_VL_7B_SHAPE: dict[str, Any] = {
    **TINY_PRESET,
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
    "mrope_section": [16, 24, 24],
    "vocab_size": 152064,
    "vision_depth": 32,
    "vision_fullatt_block_indexes": [7, 15, 23, 31],
    "vision_hidden_size": 1280,
    "vision_num_heads": 16,
    "vision_intermediate_size": 3420,
    "min_pixels": 3136,
    "max_pixels": 12845056,
}

# Qwen2.5-VL's added tokens, in the real id order (151643 + i in the 7B, ``bpe_vocab_size
# + i`` here); the flag says whether the real tokenizer marks the token ``special``.
QWEN25VL_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (tokenizer_config.json), verbatim.
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split pattern (identical to transformers' Qwen2Tokenizer).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# CLIP normalisation, as in the real preprocessor_config.json.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ----------------------------------------------------------------------------------
# Tokenizer corpus
# ----------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------


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


def train_bpe(vocab_size: int = TINY_PRESET["bpe_vocab_size"]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE (Qwen2 pre-tokenizer regex) on ``tokenizer_corpus()``.

    Returns ``(vocab, merges)`` in canonical order: the 256 byte symbols first (GPT-2 byte
    order, as in Qwen's vocab), then one token per merge in merge order, so the ids do not
    depend on how the trainer numbered them internally.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

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
            f"{vocab_size}: enlarge tokenizer_corpus() or lower TINY_PRESET['bpe_vocab_size']"
        )
    return vocab, merges


def build_tokenizer():
    """The tiny ``Qwen2Tokenizer``: trained BPE + Qwen2.5-VL added tokens + chat template.

    Mirrors Qwen2.5-VL-7B-Instruct's tokenizer_config: eos ``<|im_end|>``, pad
    ``<|endoftext|>``, no bos/unk, the 13 vision/chat tokens as extra special tokens and the
    22 added tokens at consecutive ids right after the BPE vocabulary.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe()
    # Constructed with <|endoftext|> as its only special token, so that it takes the first
    # added id (as in the real tokenizer); the rest are added below in the real order.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_prefix_space=False,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=131072,
    )
    special = [t for t, is_special in QWEN25VL_ADDED_TOKENS[1:] if is_special]
    plain = [t for t, is_special in QWEN25VL_ADDED_TOKENS if not is_special]
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in special]}
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE

    base = len(vocab)
    for offset, (token, _) in enumerate(QWEN25VL_ADDED_TOKENS):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != base + offset:
            raise RuntimeError(f"added token {token} got id {got}, expected {base + offset}")
    return tokenizer


def build_processor(tokenizer, preset: dict[str, Any] = TINY_PRESET):
    """``Qwen2_5_VLProcessor`` with the real processor classes and the preset's pixel budget."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    p = preset
    common = dict(
        min_pixels=p["min_pixels"],
        max_pixels=p["max_pixels"],
        patch_size=p["patch_size"],
        temporal_patch_size=p["temporal_patch_size"],
        merge_size=p["spatial_merge_size"],
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    image_processor = Qwen2VLImageProcessor(**common)
    # cap_pixels_per_frame=True: qwen-vl-utils' total-video pixel budget (a no-op at these
    # sizes); set explicitly because transformers 5.2x warns on every call while it is unset.
    video_processor = Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=True)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def build_config(tokenizer, preset: dict[str, Any] = TINY_PRESET):
    """``Qwen2_5_VLConfig`` at the ``preset``'s sizes, token ids taken from ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    p = preset
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok, _ in QWEN25VL_ADDED_TOKENS}
    if max(ids.values()) >= p["vocab_size"]:
        raise RuntimeError(f"vocab_size {p['vocab_size']} does not cover token id {max(ids.values())}")
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    if sum(p["mrope_section"]) != head_dim // 2:
        raise RuntimeError(f"mrope_section {p['mrope_section']} must sum to head_dim/2 = {head_dim // 2}")
    text_config = dict(
        vocab_size=p["vocab_size"],
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        hidden_act="silu",
        max_position_embeddings=p["max_position_embeddings"],
        rms_norm_eps=p["rms_norm_eps"],
        use_sliding_window=False,
        max_window_layers=p["num_hidden_layers"],
        attention_dropout=0.0,
        rope_scaling={"type": "mrope", "mrope_section": list(p["mrope_section"]), "rope_theta": p["rope_theta"]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        initializer_range=0.02,
    )
    vision_config = dict(
        depth=p["vision_depth"],
        hidden_size=p["vision_hidden_size"],
        hidden_act="silu",
        intermediate_size=p["vision_intermediate_size"],
        num_heads=p["vision_num_heads"],
        in_channels=3,
        patch_size=p["patch_size"],
        spatial_merge_size=p["spatial_merge_size"],
        temporal_patch_size=p["temporal_patch_size"],
        tokens_per_second=p["tokens_per_second"],
        window_size=p["window_size"],
        out_hidden_size=p["hidden_size"],
        fullatt_block_indexes=list(p["vision_fullatt_block_indexes"]),
        initializer_range=0.02,
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )
    # Older Qwen2-VL code paths read these from the top level.
    config.vision_token_id = ids["<|vision_pad|>"]
    return config


def build_tiny_base(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a loadable tiny Qwen2.5-VL base model directory to ``out_dir`` and return it.

    The directory holds ``config.json``, ``generation_config.json``, ``model.safetensors``
    (float32), the tokenizer files and the processor configs, exactly as
    ``save_pretrained`` writes them for a real checkpoint. Weights are drawn from the
    model's own initialiser under ``torch.manual_seed(seed)``; the tokenizer does not
    depend on the seed. Building twice with the same seed gives identical files.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)

    previous_default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    fork_devices: list = []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous_default)
    model = model.to(torch.float32).eval()
    model.config.dtype = torch.float32

    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # As the 7B's generation_config (eos = im_end or endoftext, pad = endoftext), but greedy.
    model.generation_config = GenerationConfig(
        bos_token_id=eot,
        eos_token_id=[im_end, eot],
        pad_token_id=eot,
        do_sample=False,
    )

    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_random_model(preset: dict[str, Any], dtype=None, device=None):
    """(model, processor) of the preset's shape with random weights, built in memory on ``device``.

    For benchmarks at real 7B shape without downloading weights: the weights are
    allocated directly on the device, in ``dtype``, and left as the initialiser made them.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, preset)
    config = build_config(tokenizer, preset)
    dtype = dtype or torch.float32
    with torch.device(device or "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval(), processor


__all__ = [
    "QWEN25_VL_7B_SHAPE",
    "QWEN25VL_ADDED_TOKENS",
    "QWEN25VL_CHAT_TEMPLATE",
    "TINY_PRESET",
    "build_config",
    "build_processor",
    "build_random_model",
    "build_tiny_base",
    "build_tokenizer",
    "tokenizer_corpus",
    "train_bpe",
]
