r"""Can a user trust a checkpoint's output? Two measurements, rerunnable:

1. **Render protocol.** One synthetic study (the same heads) rendered twice: at the protocol the
   demo checkpoint was trained on (112x112, 8 fps, 2 s) and at the paper's (512x512, 60 fps, 4 s).
   A head has the same latent scores in both (checked), so both studies simulate the same ratings;
   each protocol is still scored against its own study's MOS. Per protocol: SRCC of the predicted
   scores with that MOS and the share of inputs flagged out of distribution; between the two: the
   SRCC of one head's two scores and the mean shift.
2. **Real photographs.** A real photograph of a face (lmmeval/assets/real_photo/face.jpg) clean, blurred,
   noisy, over-exposed and pixelated: the scores, levels, distortions and out-of-distribution flags.

    python -m research.trust --out docs/results/trust [--model CKPT] [--n 24] [--seed 2] [--work runs/trust]
    python -m research.trust --out docs/results/trust_grain --protocol 512 4 2 --grain-size 112

Writes ``trust.json`` (every score, the command and the commit), ``trust.md`` and, with matplotlib,
``trust.png`` (one head's score at one protocol against the other). The studies are rendered into
``--work`` once and reused when the command is run again with the same settings. Seed 2 is the
demo checkpoint's test seed: neither its training study (seed 0) nor stage 0's corpus (1 and 3).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from lmmeval.eval.evaluate import render_agreement
from lmmeval.labels import DIMENSIONS
from lmmeval.provenance import git_commit

TRAINING_PROTOCOL = {"size": 112, "fps": 8, "seconds": 2.0}  # the demo checkpoint's renders
PAPER_PROTOCOL = {"size": 512, "fps": 60, "seconds": 4.0}  # Gen3DHF's
PHOTO = Path(__file__).resolve().parents[1] / "assets" / "real_photo" / "face.jpg"


def render_study(work: Path, n: int, seed: int, protocol: dict, workers: int) -> Path:
    """The raw study of ``n`` heads with ``seed`` at ``protocol`` (reused if already rendered so)."""
    from lmmeval.synth import SynthConfig, synthesize

    config = SynthConfig(n=n, seed=seed, workers=workers, **protocol)
    grain = f"_grain{config.grain_size}" if config.grain_size else ""
    out = work / f"raw_{protocol['size']}px_{protocol['fps']}fps_{protocol['seconds']:g}s{grain}_n{n}_seed{seed}"
    done = out / "synth_config.json"
    if done.is_file() and (out / "ratings.csv").is_file():  # written last: the study is complete
        stored = json.loads(done.read_text())["config"]
        wanted = {k: v for k, v in dataclasses.asdict(config).items() if k != "workers"}
        # A key the stored study predates had its default value then.
        stored = {k: stored.get(k, getattr(SynthConfig, k, None)) for k in wanted}
        if stored != wanted:
            raise ValueError(f"{out} holds another study ({stored}, not {wanted}); remove it or pick another --work")
        return out
    return synthesize(out, config, progress=True, overwrite=True)  # an incomplete study of an earlier run


def photo_variants(photo: Path = PHOTO) -> dict:
    """The photograph and four degradations of it, as PIL images."""
    from PIL import Image, ImageFilter

    image = Image.open(photo).convert("RGB")
    x = np.asarray(image).astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 25, x.shape)
    return {
        "clean": image,
        "blurred (Gaussian, sigma 3 px)": image.filter(ImageFilter.GaussianBlur(3)),
        "noisy (Gaussian, sigma 25)": Image.fromarray(np.clip(x + noise, 0, 255).astype(np.uint8)),
        "over-exposed (x1.8)": Image.fromarray(np.clip(x * 1.8, 0, 255).astype(np.uint8)),
        "pixelated (24 px blocks)": image.resize((24, 24), Image.BILINEAR).resize(image.size, Image.NEAREST),
    }


def _study_scores(assessor, raw: Path) -> dict:
    """{video id: Assessment} for every video of a raw study."""
    videos = sorted((raw / "videos").glob("*.mp4"))
    results = assessor.assess([str(v) for v in videos], saliency=False, distortions=False)
    return {v.stem: r for v, r in zip(videos, results)}


def _heads(raw: Path) -> dict:
    """What makes a study's heads (content, distortions, internal resolution, detail, latent scores),
    per video: equal for two renders of one study. (Studies rendered before `lmmeval synth` drew the
    latent scores ahead of the frames' grain differ in the grainy heads' latent scores: render again.)"""
    from lmmeval.data.manifest import read_jsonl

    return {t["video"]: (t["content_seed"], [(d["type"], d["severity"], d["centre"]) for d in t["distortions"]],
                         t["render_scale"], t["detail"], t["latent"]) for _, t in read_jsonl(raw / "truth.jsonl")}


def measure(assessor, raws: dict[str, Path]) -> dict:
    from scipy.stats import spearmanr

    from lmmeval.data.mos import compute_mos

    a, b = list(raws)
    if _heads(raws[a]) != _heads(raws[b]):  # before scoring: two studies of other heads compare nothing
        raise ValueError(f"{raws[a]} and {raws[b]} do not hold the same heads: render both with the "
                         "same n and seed, by the same version of `lmmeval synth` (remove an older study from --work)")
    per_protocol, scores = {}, {}
    for name, raw in raws.items():
        mos = compute_mos(raw / "ratings.csv")
        results = _study_scores(assessor, raw)
        ids = sorted(results)
        scores[name] = {i: {d: getattr(results[i], d) for d in DIMENSIONS} for i in ids}
        flagged = [results[i].out_of_distribution for i in ids]
        per_protocol[name] = {
            "srcc": {d: float(spearmanr([getattr(results[i], d) for i in ids], [mos[(i, d)] for i in ids])[0])
                     for d in DIMENSIONS},
            "out_of_distribution": None if None in flagged else float(np.mean(flagged)),
            "mos": {i: {d: mos[(i, d)] for d in DIMENSIONS} for i in ids},
        }
    ids = sorted(set(scores[a]) & set(scores[b]))
    return {"protocols": per_protocol, "between": render_agreement(scores[a], scores[b]), "scores": scores, "ids": ids}


def measure_photos(assessor, photo: Path = PHOTO) -> list[dict]:
    rows = []
    for name, image in photo_variants(photo).items():
        r = assessor.assess(image, saliency=False)
        rows.append({"variant": name, "quality": r.quality, "authenticity": r.authenticity,
                     "quality_level": r.quality_level, "authenticity_level": r.authenticity_level,
                     "distortions": r.distortions, "ood_score": r.ood_score,
                     "out_of_distribution": r.out_of_distribution,
                     "entropy": {d: u["entropy"] for d, u in r.uncertainty.items()}})
    return rows


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "trust.json").write_text(json.dumps(report, indent=1))
    names = list(report["protocols"])
    flag = lambda v: "n/a (no statistics)" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    lines = [
        "# Can the output be trusted? Render protocol and real photographs",
        "",
        f"Model: `{report['model']}`. Command: `{report['command']}`. Commit: `{report['commit']}`.",
        "",
        f"## One study, two render protocols ({len(report['ids'])} heads, seed {report['seed']})",
        "",
        "| protocol | SRCC quality | SRCC authenticity | flagged out of distribution |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        p = report["protocols"][name]
        lines.append(f"| {name} | {p['srcc']['quality']:.3f} | {p['srcc']['authenticity']:.3f} | "
                     f"{flag(p['out_of_distribution'])} |")
    between = report["between"]
    lines += ["", "Between the two renders of each head: SRCC "
              f"{between['quality']['srcc']:.3f} (quality) / {between['authenticity']['srcc']:.3f} (authenticity); "
              f"mean shift ({names[1]} minus {names[0]}) {between['quality']['mean_shift']:+.1f} / "
              f"{between['authenticity']['mean_shift']:+.1f} MOS points.",
              "", "## A real photograph of a face", "",
              "| input | quality | level | authenticity | level | distortions | ood_score | flagged |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["photos"]:
        score = "n/a" if r["ood_score"] is None else f"{r['ood_score']:.1f}"
        lines.append(f"| {r['variant']} | {r['quality']:.1f} | {r['quality_level']} | {r['authenticity']:.1f} | "
                     f"{r['authenticity_level']} | {', '.join(d.split()[0] for d in r['distortions']) or '-'} | "
                     f"{score} | {r['out_of_distribution']} |")
    if report.get("threshold") is not None:
        lines += ["", f"The checkpoint's threshold: ood_score > {report['threshold']:.2f} is flagged "
                  "(about 1 for a typical training video; `lmmeval.model.ood`)."]
    (out / "trust.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), constrained_layout=True)
    for ax, dim in zip(axes, DIMENSIONS):
        x = [report["scores"][names[0]][i][dim] for i in report["ids"]]
        y = [report["scores"][names[1]][i][dim] for i in report["ids"]]
        ax.scatter(x, y, s=14)
        lo, hi = min(x + y) - 2, max(x + y) + 2
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set(xlabel=f"{dim}, {names[0]}", ylabel=f"{dim}, {names[1]}",
               title=f"{dim}: SRCC {report['between'][dim]['srcc']:.2f}")
    fig.savefig(out / "trust.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: the embedded demo checkpoint)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--n", type=int, default=24, help="heads in the study (default 24)")
    parser.add_argument("--seed", type=int, default=2, help="the study's seed (default 2: unseen by the demo model)")
    parser.add_argument("--work", default="runs/trust", help="where the studies are rendered (default runs/trust)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--protocol", nargs=3, metavar=("SIZE", "FPS", "SECONDS"),
                        default=[PAPER_PROTOCOL["size"], PAPER_PROTOCOL["fps"], PAPER_PROTOCOL["seconds"]],
                        help="the second render's protocol (default: the paper's, 512 60 4)")
    parser.add_argument("--grain-size", type=int, metavar="PX",
                        help="the second render's grain on a PX x PX grid (lmmeval synth --grain-size): does "
                             "the grain's amplitude after the model's resize explain the gap?")
    args = parser.parse_args(argv)
    from lmmeval.inference.assessor import Assessor

    try:
        size, fps, seconds = int(args.protocol[0]), int(args.protocol[1]), float(args.protocol[2])
    except ValueError:
        parser.error(f"--protocol takes SIZE FPS SECONDS (integers, integer, number), got {' '.join(args.protocol)}")
    other = {"size": size, "fps": fps, "seconds": seconds}
    if args.grain_size is not None:
        other["grain_size"] = args.grain_size
    work = Path(args.work)
    raws = {}
    for protocol in (TRAINING_PROTOCOL, other):
        name = f"{protocol['size']} px, {protocol['fps']} fps, {protocol['seconds']:g} s"
        if protocol.get("grain_size"):
            name += f", grain on {protocol['grain_size']} px"
        try:
            raws[name] = render_study(work, args.n, args.seed, protocol, args.workers)
        except ValueError as e:
            parser.error(str(e))
    assessor = Assessor.from_pretrained(args.model, device=args.device)
    report = {"model": args.model or "embedded demo checkpoint", "seed": args.seed,
              "command": "python -m research.trust " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": git_commit(), **measure(assessor, raws), "photos": measure_photos(assessor),
              "threshold": assessor.parts.ood.threshold if assessor.parts.ood is not None else None}
    write_report(report, Path(args.out))
    print((Path(args.out) / "trust.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
