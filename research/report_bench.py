"""How fast a report page loads in headless Chromium, and a screenshot of one.

    python -m research.report_bench                     # a synthetic 10,000-input study, 20 generators
    python -m research.report_bench --n 2000 --keep runs/bench
    python -m research.report_bench --page demo_out/report/index.html --screenshot docs/images/report_demo.png --repeat 1

Without ``--page`` it writes a synthetic study (small PNG inputs, a manifest with MOS and
categories, a results file with a few failed, out-of-distribution and low-confidence rows),
times ``write_report`` on it, then loads the page ``--repeat`` times from its file:// URL and
reports the medians of: DOMContentLoaded, the load event, the gallery's first page rendered,
and re-filtering the gallery by one group. Needs Chromium, chromedriver and Selenium
(``lmmeval.report.browser``).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmmeval.labels import DISTORTIONS, score_to_level


def synthetic_study(folder: Path, n: int, groups: int, seed: int = 0) -> tuple[Path, Path]:
    """(results file, manifest) of ``n`` small PNG inputs from ``groups`` generators."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "study" / "videos").mkdir(parents=True)
    centres = rng.uniform(25, 75, size=(groups, 2))
    probs = rng.uniform(0.05, 0.5, size=(groups, len(DISTORTIONS) - 1))
    base = np.linspace(0, 255, 96, dtype=np.float32)
    with open(folder / "results.jsonl", "w") as results, open(folder / "study" / "manifest.jsonl", "w") as manifest:
        for i in range(n):
            g = i % groups
            vid = f"g{g:02d}_{i:05d}"
            path = folder / "study" / "videos" / f"{vid}.png"
            # A face-sized picture per input: a gradient tinted by its generator, some noise.
            tint = np.array([(g * 37) % 255, (g * 91) % 255, (g * 53) % 255], dtype=np.float32)
            img = (0.6 * base[None, :, None] + 0.4 * tint[None, None, :]) * np.ones((96, 1, 1), np.float32)
            img += rng.normal(0, 12, size=(96, 96, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, compress_level=1)
            mos = np.clip(rng.normal(centres[g], 12), 0, 100)
            pred = np.clip(mos + rng.normal(0, 8, size=2), 0, 100)
            cats = [c for c, p in zip(DISTORTIONS[:-1], probs[g]) if rng.random() < p] or [DISTORTIONS[-1]]
            failed = rng.random() < 0.01
            row = {"id": f"{vid}.png", "path": str(path.resolve()),
                   "quality": None if failed else round(float(pred[0]), 4),
                   "authenticity": None if failed else round(float(pred[1]), 4),
                   "quality_level": None if failed else score_to_level(pred[0], 0, 100)[0],
                   "authenticity_level": None if failed else score_to_level(pred[1], 0, 100)[0],
                   "distortions": [] if failed else cats, "description": None,
                   "ood_score": None, "out_of_distribution": None if failed else bool(rng.random() < 0.02),
                   "notes": [], "error": "could not decode the video (synthetic)" if failed else None,
                   "runtime_s": 0.5, "low_confidence": bool(rng.random() < 0.05)}
            results.write(json.dumps(row) + "\n")
            levels = score_to_level(mos, 0, 100)
            manifest.write(json.dumps({
                "id": vid, "video": f"videos/{vid}.png", "generator": f"G{g:02d}", "fold": i % 5,
                "mos": {"quality": round(float(mos[0]), 4), "authenticity": round(float(mos[1]), 4)},
                "level": {"quality": levels[0], "authenticity": levels[1]}, "categories": cats}) + "\n")
    return folder / "results.jsonl", folder / "study" / "manifest.jsonl"


def measure(page: Path, repeat: int) -> dict:
    """Median timings (ms) of ``repeat`` loads of ``page`` in headless Chromium."""
    from lmmeval.report.browser import headless_chromium

    url = page.resolve().as_uri()
    runs = []
    with headless_chromium() as driver:
        for _ in range(repeat):
            driver.get("about:blank")
            driver.get(url)  # returns after the load event
            nav = driver.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                        "return [n.domContentLoadedEventEnd, n.loadEventEnd];")
            ready = driver.execute_script("return Number(document.body.getAttribute('data-gallery-ready'))")
            filtered = driver.execute_script(
                "const s = document.getElementById('filter-group'); if (s.options.length < 2) return null;"
                "const t = performance.now(); s.value = s.options[1].value;"
                "s.dispatchEvent(new Event('change')); return performance.now() - t;")
            runs.append({"dom_content_loaded_ms": nav[0], "load_ms": nav[1], "gallery_ready_ms": ready,
                         "filter_ms": filtered})
        items = driver.execute_script("return document.querySelectorAll('#gallery-items .item').length")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}
    return out | {"repeat": repeat, "rendered_items_after_filter": items, "console_errors": len(errors),
                  "page_bytes": page.stat().st_size}


def screenshot(page: Path, out: Path, width: int = 1280, max_height: int = 5000) -> Path:
    """The whole page (up to ``max_height`` pixels high) as a 256-colour PNG."""
    from lmmeval.report.browser import headless_chromium

    wait_for_images = ("const done = arguments[arguments.length - 1]; setTimeout(() =>"
                       " Promise.all(Array.from(document.images).filter(i => !i.complete)"
                       ".map(i => new Promise(r => { i.onload = i.onerror = r; }))).then(done), 300);")
    with headless_chromium(width, max_height) as driver:
        driver.set_script_timeout(60)
        driver.get(page.resolve().as_uri())
        # Lazy images load once the (tall) window holds them; then the page has its final height.
        driver.execute_async_script(wait_for_images)
        height = min(max_height, driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(width, height)
        driver.execute_async_script(wait_for_images)
        png = driver.get_screenshot_as_png()
    # 256 colours: the page is flat colours but for the small thumbnails (a third of the bytes).
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.report_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="synthetic inputs (default 10000)")
    parser.add_argument("--groups", type=int, default=20, help="synthetic generators (default 20)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="report resamples (default 2000)")
    parser.add_argument("--repeat", type=int, default=5, help="page loads measured (default 5; medians)")
    parser.add_argument("--keep", metavar="DIR", help="write the study and report here and keep them")
    parser.add_argument("--page", metavar="INDEX_HTML", help="measure this page instead of a synthetic one")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a screenshot of the page")
    parser.add_argument("--max-height", type=int, default=5000, metavar="PX",
                        help="the screenshot's height at most (default 5000; the page's top part)")
    parser.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    args = parser.parse_args(argv)
    from lmmeval.report.browser import missing

    if missing():
        print(f"lmmeval bench: error: {missing()}", file=sys.stderr)
        return 2
    numbers: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.page:
            page = Path(args.page)
            if not page.is_file():
                print(f"lmmeval bench: error: {page}: no such page", file=sys.stderr)
                return 2
        else:
            from lmmeval.report.write import write_report

            work = Path(args.keep) if args.keep else Path(tmp)
            if args.keep and work.exists() and any(work.iterdir()):
                print(f"lmmeval bench: error: --keep {work} is not empty", file=sys.stderr)
                return 2
            start = time.perf_counter()
            results, manifest = synthetic_study(work, args.n, args.groups)
            numbers["synthetic_study_s"] = round(time.perf_counter() - start, 1)
            start = time.perf_counter()
            write_report(work / "report", [results], manifest=manifest, bootstrap=args.bootstrap)
            numbers["write_report_s"] = round(time.perf_counter() - start, 1)
            page = work / "report" / "index.html"
            numbers |= {"inputs": args.n, "groups": args.groups}
        numbers |= measure(page, args.repeat)
        if args.screenshot:
            numbers["screenshot"] = str(screenshot(page, Path(args.screenshot), max_height=args.max_height))
    text = json.dumps(numbers, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
