"""What a checkpoint was trained on (``training_data.json`` in its folder), and whether an evaluation
overlaps it.

Every training stage writes the record with the checkpoint it exports: one entry per study it
trained on (the manifest, its `lmmeval synth` settings when synthetic, what was held out, the ids
and SHA-1 of the videos trained on), merged with the record of the model the stage started from,
so stage 3's record holds stages 2, 1 and 0 too. ``lmmeval evaluate`` compares it with the
evaluated videos: a study rendered with the same synth seed shows the same head for the same video
id (whatever its protocol, and however libx264 encodes it), and a byte-identical file is the same
video. A score on such videos is not a held-out result.

A record may be incomplete (``incomplete`` says what is missing: a starting model with no record),
or written by hand for a checkpoint trained before records existed (``reconstructed`` says how; its
ids and hashes may be null, and the overlap is then an upper bound).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .manifest import Record, synth_settings

RECORD_NAME = "training_data.json"
FORMAT = 1


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def study_entry(manifest: str | Path, records: list[Record], stage: int, role: str,
                fold: int = -1, split: str | None = None) -> dict:
    """The record of one study a stage trained on: ``manifest`` as the run was given it, ``records`` the
    videos it trained on (after holding out ``fold`` / ``split``), ``role`` how it was given
    ("manifest", "render", "extra", "corpus")."""
    return {"manifest": str(manifest), "role": role, "stages": [stage],
            "synth": synth_settings(manifest), "held_out": {"fold": fold, "split": split},
            "videos": len(records), "ids": sorted({r.id for r in records}),
            "sha1": sorted({file_sha1(r.video_path) for r in records})}


def merge(earlier: dict | None, entries: list[dict], incomplete: list[str] = ()) -> dict:
    """``earlier``'s studies (the starting model's record) followed by ``entries``; an entry that is the
    same study trained on the same videos as an earlier one adds its stages to it."""
    studies = [dict(s, stages=list(s["stages"])) for s in (earlier or {}).get("studies", [])]
    for entry in entries:
        same = next((s for s in studies if _key(s) == _key(entry)), None)
        if same is None:
            studies.append(dict(entry, stages=list(entry["stages"])))
        else:
            same["stages"] = sorted(set(same["stages"]) | set(entry["stages"]))
    record = {"format": FORMAT, "studies": studies,
              "incomplete": list((earlier or {}).get("incomplete", [])) + list(incomplete)}
    if earlier and earlier.get("reconstructed"):
        record["reconstructed"] = earlier["reconstructed"]
    return record


def _key(entry: dict):
    return (entry["manifest"], entry.get("role"), json.dumps(entry.get("held_out"), sort_keys=True),
            tuple(entry["ids"] or ()), tuple(entry["sha1"] or ()))


def read_record(folder: str | Path) -> dict | None:
    """The record in ``folder`` (None: it has none); a malformed one is a ``ValueError`` naming it."""
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("studies"), list):
        raise ValueError(f"{path}: not a training record of format {FORMAT} (a 'studies' list)")
    for i, study in enumerate(record["studies"]):
        if not isinstance(study, dict) or not {"manifest", "stages", "synth", "ids", "sha1"} <= set(study):
            raise ValueError(f"{path}: studies[{i}] needs manifest, stages, synth, ids and sha1")
    return record


def write_record(folder: str | Path, record: dict) -> Path:
    """Write ``folder/training_data.json`` (to a temporary name, then renamed)."""
    path = Path(folder) / RECORD_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return path


def overlap(record: dict, manifest: str | Path, records: list[Record]) -> list[str]:
    """One sentence per training study that ``records`` (evaluated videos of ``manifest``) overlap:
    same synth seed (same heads; counted by video id, or bounded when the record has no ids), or
    byte-identical files. Empty: no overlap found."""
    seed = (synth_settings(manifest) or {}).get("seed")
    ids, n = {r.id for r in records}, len(records)
    digests = None
    found = []
    for study in record["studies"]:
        stages = ", ".join(map(str, study["stages"]))
        where = f"stage(s) {stages} trained on {study['manifest']}"
        study_seed = (study["synth"] or {}).get("seed")
        if seed is not None and study_seed == seed:
            if study["ids"] is not None:
                shared = len(ids & set(study["ids"]))
                count = f"{shared} of the {n} evaluated videos show heads"
            else:  # a reconstructed record: every evaluated head may be one, up to the study's size
                shared = min(n, (study["synth"] or {}).get("n") or study.get("videos") or n)
                count = f"up to {shared} of the {n} evaluated videos show heads"
            if shared:
                found.append(f"{count} that {where}: both were rendered with `lmmeval synth --seed {seed}`, which "
                             "renders the same head for the same video id")
        if study["sha1"]:
            if digests is None:
                digests = {file_sha1(r.video_path) for r in records}
            same = len(digests & set(study["sha1"]))
            if same:
                found.append(f"{same} of the {n} evaluated videos are byte-identical to videos {where}")
    return found
