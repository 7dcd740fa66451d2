"""A contact sheet of a synthetic (or real) raw study: the -45/0/45 deg snapshots of one
video per generator, with its quality/authenticity MOS and the annotators' categories; or, with
--rendered, of a `lmmeval render` output folder (each asset's <stem>_views.png, labelled by its stem).

    python data_prep/contact_sheet.py data/raw docs/images/synthetic_heads.png
    python data_prep/contact_sheet.py --rendered renders/ docs/images/rendered_heads.png
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
    parser.add_argument("raw_dir", help="a raw study folder, or with --rendered a `lmmeval render` --out folder")
    parser.add_argument("out_png")
    parser.add_argument("--per-generator", type=int, default=1, help="videos shown per generator (default 1)")
    parser.add_argument("--rendered", action="store_true", help="raw_dir holds `lmmeval render` output")
    args = parser.parse_args()
    if args.rendered:
        views = sorted(Path(args.raw_dir).glob("*_views.png"))
        if not views:
            print(f"error: no *_views.png in {args.raw_dir} (is it a `lmmeval render` --out folder?)", file=sys.stderr)
            return 2
        tiles = [_labelled(Image.open(p).convert("RGB"), [p.name[: -len("_views.png")]]) for p in views]
        return _save(_grid(tiles, cols=1), args.out_png, f"{len(tiles)} assets")
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
        cats = ", ".join(c.split()[0] for c in combine_categories(
            list({m["annotator"]: m["description"] for m in marks[video]}.values())))
        tiles.append(_labelled(row, [
            f"{generators[video]}  Q {mos[(video, 'quality')]:.0f}  A {mos[(video, 'authenticity')]:.0f}", cats[:60]]))
    return _save(_grid(tiles, cols=2), args.out_png, f"{len(tiles)} videos")


def _labelled(row: Image.Image, lines: list[str]) -> Image.Image:
    """The row of views with a white strip of text lines under it."""
    tile = Image.new("RGB", (row.width, row.height + 14 * len(lines) + 2), "white")
    tile.paste(row, (0, 0))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(lines):
        draw.text((3, row.height + 2 + 14 * i), line, fill="black")
    return tile


def _grid(tiles: list[Image.Image], cols: int) -> Image.Image:
    w, h = tiles[0].size
    sheet = Image.new("RGB", (cols * w, -(-len(tiles) // cols) * h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * w, (i // cols) * h))
    return sheet


def _save(sheet: Image.Image, out_png: str, what: str) -> int:
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    print(f"wrote {out_png} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
