"""A contact sheet of a synthetic (or real) raw study: the -45/0/45 deg snapshots of one
video per generator, with its quality/authenticity MOS and the annotators' categories.

    python data_prep/contact_sheet.py data/raw docs/synthetic_heads.png
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lmmeval.data.descriptions import combine_categories
from lmmeval.data.mos import compute_mos
from lmmeval.data.prepare import read_generators, read_marks

VIEWS = (-45, 0, 45)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_dir")
    parser.add_argument("out_png")
    parser.add_argument("--per-generator", type=int, default=1, help="videos shown per generator (default 1)")
    args = parser.parse_args()
    raw = Path(args.raw_dir)
    generators = read_generators(raw / "generators.csv")
    marks = read_marks(raw / "marks.jsonl")
    mos = compute_mos(raw / "ratings.csv")
    chosen = []
    for gen in sorted(set(generators.values())):
        chosen += sorted(v for v, g in generators.items() if g == gen)[: args.per_generator]
    tiles = []
    for video in chosen:
        views = [np.asarray(Image.open(raw / "snapshots" / f"{video}_{v}.png").convert("RGB")) for v in VIEWS]
        row = Image.fromarray(np.concatenate(views, axis=1))
        strip = Image.new("RGB", (row.width, 30), "white")
        draw = ImageDraw.Draw(strip)
        cats = ", ".join(c.split()[0] for c in combine_categories(
            list({m["annotator"]: m["description"] for m in marks[video]}.values())))
        draw.text((3, 2), f"{generators[video]}  Q {mos[(video, 'quality')]:.0f}  A {mos[(video, 'authenticity')]:.0f}",
                  fill="black")
        draw.text((3, 16), cats[:60], fill="black")
        tile = Image.new("RGB", (row.width, row.height + 30), "white")
        tile.paste(row, (0, 0))
        tile.paste(strip, (0, row.height))
        tiles.append(tile)
    cols = 2
    w, h = tiles[0].size
    sheet = Image.new("RGB", (cols * w, -(-len(tiles) // cols) * h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * w, (i // cols) * h))
    Path(args.out_png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out_png)
    print(f"wrote {args.out_png} ({len(tiles)} videos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
