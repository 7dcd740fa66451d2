"""`lmmeval evaluate`: a checkpoint on a manifest's held-out fold, in the paper's metrics.

- scores: SRCC / PLCC / KRCC per dimension; PLCC both raw and after a 4-parameter
  logistic fit (labelled ``plcc`` and ``plcc_fitted``); pairwise accuracy;
- text levels: accuracy of the predicted level;
- distortions: exact-set accuracy (headline) and per-category precision / recall;
- saliency: AUC-Judd, NSS, CC, SIM, KLD per annotated view (the predicted map of
  the temporal group holding that view's frame, against the view's map).

Writes ``report.json``, ``report.md`` and, where matplotlib is installed (``lmmeval[plots]``),
PNG plots into the output folder.

The evaluated videos are compared with the checkpoint's record of its training data
(``lmmeval.data.training_record``): videos rendered with the same `lmmeval synth` seed as a study it
was trained on show the same heads, byte-identical files are the same videos, and scores on them
are no held-out result. Such an overlap is printed as a warning and written into both reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..data import training_record
from ..data.manifest import Record, held_out, load_manifest
from ..data.saliency_maps import load_saliency_png, points_to_fixation_map
from ..inference.assessor import Assessor
from ..labels import DIMENSIONS, DISTORTIONS, SCORE_RANGE
from ..model.factory import DEMO_CHECKPOINT
from ..provenance import git_commit
from .metrics import auc_judd, cc, correlations, kld, nss, sim


def pairwise_accuracy(pred, mos) -> float:
    """Share of pairs with distinct MOS whose predictions are ordered the same way (ties count half)."""
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    dp = np.sign(pred[:, None] - pred[None, :])
    dm = np.sign(mos[:, None] - mos[None, :])
    pairs = np.triu(dm != 0, k=1)
    if not pairs.any():
        raise ValueError("pairwise accuracy needs at least two distinct MOS values")
    agree = (dp == dm) + 0.5 * (dp == 0)
    return float(agree[pairs].mean())


def score_report(pred, mos) -> dict:
    """SRCC / PLCC / KRCC / pairwise accuracy, and PLCC after a logistic-4 fit. A prediction
    that cannot be scored (constant, or a fit that does not converge) is reported, not hidden:
    the undefined numbers are None and ``note`` says why."""
    out = {"srcc": None, "plcc": None, "krcc": None, "plcc_fitted": None, "pairwise_accuracy": None}
    try:
        out |= correlations(pred, mos)
        out["pairwise_accuracy"] = pairwise_accuracy(pred, mos)
        out["plcc_fitted"] = correlations(pred, mos, fit="logistic4")["plcc_fitted"]
    except (ValueError, RuntimeError) as err:
        out["note"] = str(err)
    return out


def evaluate(assessor: Assessor, records: list[Record], batch_size: int = 4, progress: bool = True) -> dict:
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = assessor.assess_batches([str(r.video_path) for r in records], batch_size)
    preds = [r for batch in tqdm(batches, total=-(-len(records) // batch_size), desc="evaluating", unit="batch",
                                 disable=not progress) for r in batch]
    report: dict = {"n": len(records)}
    for dim in DIMENSIONS:
        p = [getattr(r, dim) for r in preds]
        m = [rec.mos[dim] for rec in records]
        report[dim] = score_report(p, m)
        report[dim]["level_accuracy"] = float(np.mean([getattr(r, f"{dim}_level") == rec.level[dim]
                                                        for r, rec in zip(preds, records)]))
    report["distortions"] = _distortion_report([r.distortions for r in preds], [rec.categories for rec in records])
    report["saliency"] = _saliency_report(preds, records)
    report["predictions"] = [{"id": rec.id, **{d: getattr(r, d) for d in DIMENSIONS}, "distortions": r.distortions}
                             for r, rec in zip(preds, records)]
    return report


def render_agreement(first: dict[str, dict[str, float]], second: dict[str, dict[str, float]]) -> dict:
    """How alike two renders of the same heads are scored. ``first`` and ``second``: {video id:
    {dimension: score}}; the ids both hold are compared. Per dimension: the SRCC between a head's
    two scores (None, with ``note``, where undefined, e.g. a constant score) and the mean shift,
    second minus first, in MOS points."""
    from .metrics import srcc

    ids = sorted(first.keys() & second.keys())
    if len(ids) < 2:
        raise ValueError(f"comparing two renders needs at least two heads in both, got {len(ids)}")
    out: dict = {"n": len(ids)}
    for dim in DIMENSIONS:
        a, b = [first[i][dim] for i in ids], [second[i][dim] for i in ids]
        out[dim] = {"srcc": None, "mean_shift": float(np.mean(np.subtract(b, a)))}
        try:
            out[dim]["srcc"] = srcc(a, b)
        except ValueError as err:
            out[dim]["note"] = str(err)
    return out


def scores_by_id(report: dict) -> dict[str, dict[str, float]]:
    """{video id: {dimension: score}} from an ``evaluate`` report's predictions."""
    return {p["id"]: {d: p[d] for d in DIMENSIONS} for p in report["predictions"]}


def _distortion_report(pred: list[list[str]], true: list[list[str] | None]) -> dict:
    """Exact-set accuracy and per-category precision / recall over the records whose categories are
    labelled (``true`` None: not labelled, counted in ``not_labelled``)."""
    labelled = [(p, t) for p, t in zip(pred, true) if t is not None]
    unlabelled = len(true) - len(labelled)
    if not labelled:
        return {"exact_set_accuracy": None, "per_category": {}, "not_labelled": unlabelled}
    pred, true = [p for p, _ in labelled], [t for _, t in labelled]
    per = {}
    for c in DISTORTIONS:
        tp = sum(c in p and c in t for p, t in zip(pred, true))
        fp = sum(c in p and c not in t for p, t in zip(pred, true))
        fn = sum(c not in p and c in t for p, t in zip(pred, true))
        per[c] = {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
                  "support": tp + fn}
    return {"exact_set_accuracy": float(np.mean([sorted(p) == sorted(t) for p, t in zip(pred, true)])),
            "per_category": per, "not_labelled": unlabelled}


def _saliency_report(preds, records) -> dict:
    scores: dict[str, list[float]] = {k: [] for k in ("auc_judd", "nss", "cc", "sim", "kld")}
    constant = 0
    for r, rec in zip(preds, records):
        frames = np.asarray(r.frame_indices)
        for view in rec.views.values():
            if not view.fixations:
                continue  # no marks, no fixation-based metric
            gt = load_saliency_png(view.saliency_path)
            pred = r.saliency[int(np.abs(frames - view.frame).argmin())] if r.saliency.ndim == 3 else r.saliency
            fix = points_to_fixation_map(view.fixations, *gt.shape)
            if pred.max() == pred.min():
                constant += 1  # the metrics are undefined for a flat map: counted, not averaged in
                continue
            scores["auc_judd"].append(auc_judd(pred, fix))
            scores["nss"].append(nss(pred, fix))
            scores["cc"].append(cc(pred, gt))
            scores["sim"].append(sim(pred, gt))
            scores["kld"].append(kld(pred, gt))
    out = {k: float(np.mean(v)) if v else None for k, v in scores.items()}
    out["views"] = len(scores["cc"])
    out["constant_predictions"] = constant
    return out


def write_report(report: dict, out_dir: Path, records: list[Record], title: str, command: str | None = None,
                 commit: str | None = None) -> dict:
    """report.json, report.md and the plots. ``command`` (the command line that made the report)
    and ``commit`` (the code it ran, default: the checkout now) are recorded so the numbers can be
    traced and rerun. Returns the report as written, with its ``provenance``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    commit = commit or git_commit()
    report = report | {"provenance": {"command": command, "commit": commit}}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    made_by = f"Made by `{command}` at commit `{commit}`." if command else f"Commit `{commit}`."
    lines = [f"# {title}", "", f"{report['n']} videos. {made_by}", ""]
    if "training_overlap" in report:
        lines += [_overlap_line(report["training_overlap"]), ""]
    lines += ["| dimension | SRCC | PLCC (raw) | PLCC (logistic-4 fitted) | KRCC | pairwise acc. | level acc. |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    for dim in DIMENSIONS:
        d = report[dim]
        lines.append(f"| {dim} | {fmt(d['srcc'])} | {fmt(d['plcc'])} | {fmt(d['plcc_fitted'])} | {fmt(d['krcc'])} "
                     f"| {fmt(d['pairwise_accuracy'])} | {fmt(d['level_accuracy'])} |")
        if d.get("note"):
            lines.append(f"\n{dim}: {d['note']}\n")
    dist = report["distortions"]
    if dist["exact_set_accuracy"] is None:
        lines += ["", f"Distortion categories: not labelled ({dist['not_labelled']} videos), so not evaluated."]
    else:
        unlabelled = f" ({dist['not_labelled']} videos not labelled, left out)" if dist["not_labelled"] else ""
        lines += ["", f"Distortion categories: exact-set accuracy **{dist['exact_set_accuracy']:.3f}**{unlabelled}", "",
                  "| category | precision | recall | support |", "| --- | --- | --- | --- |"]
        for c, v in dist["per_category"].items():
            lines.append(f"| {c} | {fmt(v['precision'])} | {fmt(v['recall'])} | {v['support']} |")
    s = report["saliency"]
    if s["views"]:
        lines += ["", f"Saliency over {s['views']} annotated views: AUC-Judd {s['auc_judd']:.3f}, NSS {s['nss']:.3f}, "
                      f"CC {s['cc']:.3f}, SIM {s['sim']:.3f}, KLD {s['kld']:.3f}"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    _plots(report, out_dir, records)
    return report


def training_overlap(checkpoint: str | Path, manifest: str | Path, records: list[Record]) -> dict:
    """How the evaluated ``records`` of ``manifest`` overlap what ``checkpoint`` was trained on:
    {"record": its training record's path or None, "overlap": sentences (empty: none found),
    "incomplete": what the record leaves unknown}."""
    record = training_record.read_record(checkpoint)
    if record is None:
        return {"record": None, "overlap": [], "incomplete": [f"{checkpoint} has no {training_record.RECORD_NAME}"]}
    return {"record": str(Path(checkpoint) / training_record.RECORD_NAME),
            "overlap": training_record.overlap(record, manifest, records),
            "incomplete": record.get("incomplete", []),
            **({"reconstructed": record["reconstructed"]} if record.get("reconstructed") else {})}


def _overlap_line(found: dict) -> str:
    if found["overlap"]:
        return ("**Warning: overlap with training data:** " + "; ".join(found["overlap"])
                + ". These scores are not a held-out result.")
    if found["record"] is None:
        return f"Overlap with training data: not checked ({'; '.join(found['incomplete'])})."
    unknown = f" (not recorded: {'; '.join(found['incomplete'])})" if found["incomplete"] else ""
    return f"Overlap with training data: none found in `{found['record']}`{unknown}."


def _plots(report: dict, out_dir: Path, records: list[Record]) -> None:
    """scatter.png (predicted vs MOS) and, where generators are known, generators.png."""
    try:
        import matplotlib
    except ImportError:
        print(f"{out_dir}: no plots (matplotlib is not installed: pip install 'lmmeval[plots]')")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, dim in zip(axes, DIMENSIONS):
        pred = [p[dim] for p in report["predictions"]]
        mos = [r.mos[dim] for r in records]
        ax.scatter(mos, pred, s=12, alpha=0.7)
        ax.plot(SCORE_RANGE, SCORE_RANGE, "k--", lw=0.8)
        srcc = report[dim]["srcc"]
        ax.set(xlabel=f"{dim} MOS", ylabel="predicted", title=f"{dim}: SRCC " + ("n/a" if srcc is None else f"{srcc:.3f}"),
               xlim=SCORE_RANGE, ylim=SCORE_RANGE)
    fig.tight_layout()
    fig.savefig(out_dir / "scatter.png", dpi=120)
    plt.close(fig)

    gens = sorted({r.generator for r in records if r.generator is not None})
    if not gens:
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(gens))
    for k, dim in enumerate(DIMENSIONS):
        mos = [np.mean([r.mos[dim] for r in records if r.generator == g]) for g in gens]
        pred = [np.mean([p[dim] for p, r in zip(report["predictions"], records) if r.generator == g]) for g in gens]
        ax.bar(x + k * 0.4 - 0.3, mos, 0.2, label=f"{dim} MOS")
        ax.bar(x + k * 0.4 - 0.1, pred, 0.2, label=f"{dim} predicted")
    ax.set_xticks(x, [g.split("-")[0] for g in gens])
    ax.set(ylabel="mean score", title="per-generator means")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "generators.png", dpi=120)
    plt.close(fig)


def run(model: str | None, manifest: str, fold: int, out_dir: str, base: str | None = None, device: str | None = None,
        batch_size: int = 4, command: str | None = None, split: str | None = None, load_assessor=None) -> dict:
    """Evaluate on ``manifest``'s ``fold`` (-1: every record) or, instead, its official ``split``.
    ``load_assessor(device)`` builds the assessor (default: the checkpoint ``model`` on ``base``),
    after the manifest has been checked."""
    commit = git_commit()  # the code this run imported, taken before the (possibly long) evaluation
    all_records = load_manifest(manifest)
    if split is None and fold < 0:
        records, part = all_records, "every record"
    else:
        records = [r for r, test in zip(all_records, held_out(all_records, manifest, fold, split)) if test]
        part = f"split {split}" if split is not None else f"fold {fold}"
    if not records:
        raise ValueError(f"{manifest}: no records in {part}")
    # Before the (possibly long) evaluation: the warning comes first.
    overlap = training_overlap(model or DEMO_CHECKPOINT, manifest, records)
    for sentence in overlap["overlap"]:
        print(f"lmmeval evaluate: warning: overlap with training data: {sentence}", file=sys.stderr)
    assessor = load_assessor(device) if load_assessor else Assessor.from_pretrained(model, device=device, base=base)
    report = evaluate(assessor, records, batch_size=batch_size) | {"training_overlap": overlap}
    return write_report(report, Path(out_dir), records,
                        f"Evaluation of {model or 'the demo checkpoint'} on {part}", command, commit)
