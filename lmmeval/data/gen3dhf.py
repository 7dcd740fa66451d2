"""`lmmeval import-gen3dhf`: the published Gen3DHF release -> a manifest in the schema `prepare` writes.

What the release is (``yywooo/Gen3DHF`` on Hugging Face, unzipped into ROOT; labels from the
authors' code release, ``datasets/numerical/`` of ``YyWooo/LMME3DHF``):

    ROOT/video_RGB/seedNNNN.mp4     2,000 renders, 512x512, 60 fps, 4 s, a 180 deg orbit
    ROOT/saliency_map/*.png         optional: dense distortion-saliency maps, the three snapshot views
                                    side by side (1536x512), 8-bit, max 1
    LABELS/{train,eval}_{quality,authenticity}.json
                                    ms-swift lists: a user turn with the question and an assistant
                                    turn "The quality of the human face in this video is good.
                                    (51.8686560031219)", and the video's path on the authors' machine

The importer keeps the published MOS exactly, recomputes the level words by Eq. 4 over all videos
(and reports where the published words differ: the lowest video of each dimension is "None"
there), keeps the official split, adds k MOS-stratified folds over all videos for the 5-fold
protocol, marks the distortion categories as not labelled (the release has none), and ties each
saliency view to its video frame by the orbit, as `prepare` does. Every problem is an error naming
its file and record; nothing is dropped silently (``allow_missing`` skips missing videos and lists
them in summary.json).

The output folder is built beside its final place and renamed there once complete
(``lmmeval.data.folders``): it may not be or overlap the release or the labels folder, and an
existing non-empty one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.media import video_info
from ..labels import DIMENSIONS, LEVELS, score_to_level
from ..orbit import view_to_frame
from .folders import check_output_folder, staged_folder
from .manifest import Record, View, write_manifest
from .saliency_maps import save_saliency_png

SPLITS = ("train", "eval")
LABEL_FILES = {(split, dim): f"{split}_{dim}.json" for split in SPLITS for dim in DIMENSIONS}
# The published answers: "The quality of the human face in this video is good. (51.8686560031219)".
ANSWER = re.compile(r"^The (?P<dim>quality|authenticity) of the human face in this video is (?P<level>\w+)\.\s*"
                    r"\((?P<mos>[^()]*)\)\s*$")
UNLABELLED_LEVEL = "None"  # what the release writes for the lowest-MOS video of each dimension
VIEWS = ("-45", "0", "45")  # the snapshot angles, left to right in a map by default
FIXATION_THRESHOLD = 0.95  # the authors' fixation maps: their saliency maps thresholded here
# Red dots as the authors' annotation scripts find them: HSV red (hue within 20 degrees of 0), both
# saturation and value >= 200/255, blobs of 20-200 pixels, one fixation at each blob's centroid.
RED_HUE_DEG, RED_MIN_SV, BLOB_AREA = 20.0, 200 / 255, (20, 200)


@dataclass(frozen=True)
class ImportConfig:
    folds: int = 5  # k folds over all videos, stratified by quality MOS (the paper's 5-fold protocol)
    seed: int = 0  # fold assignment
    copy: bool = False  # copy the videos into OUT_DIR (default: symlinks)
    allow_missing: bool = False  # skip videos the labels name but video_RGB/ lacks (listed in summary.json)
    saliency_pattern: str | None = None  # regex with a named group 'id' matching a map's file name
    view_order: tuple[str, ...] = VIEWS  # the map's views, left to right
    red_dots: str | None = None  # folder of red-dot snapshot images: fixations from the dots
    sweep_deg: float = 180.0  # the orbit: ties a view angle to a frame

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not self.view_order or len(set(self.view_order)) != len(self.view_order):
            raise ValueError(f"view_order must name each view once, got {list(self.view_order)}")
        for view in self.view_order:
            try:
                float(view)
            except ValueError:
                raise ValueError(f"view_order: {view!r} is not an angle in degrees") from None
        if self.saliency_pattern is not None:
            try:
                pattern = re.compile(self.saliency_pattern)
            except re.error as err:
                raise ValueError(f"saliency_pattern {self.saliency_pattern!r} is not a regular expression ({err})") \
                    from None
            if "id" not in pattern.groupindex:
                raise ValueError(f"saliency_pattern {self.saliency_pattern!r} needs a named group (?P<id>...)")


@dataclass
class Label:
    mos: float
    level: str  # as published
    where: str  # "train_quality.json, record 12"


@dataclass
class Labels:
    """The four label files, read and cross-checked: per video, its split and per dimension its label."""

    split: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict[str, Label]] = field(default_factory=dict)  # video -> dimension -> label


def read_labels(labels_dir: str | Path) -> Labels:
    """Read and check LABELS_DIR: exactly the four published files; errors name file and record."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"{labels_dir}: no such folder (the four label files of the release's "
                                "datasets/numerical/)")
    expected = set(LABEL_FILES.values())
    present = {p.name for p in labels_dir.iterdir()}
    if unexpected := sorted(present - expected):
        raise ValueError(f"{labels_dir}: unexpected file(s) {unexpected}; expected exactly {sorted(expected)} "
                         "(the release's datasets/numerical/ folder)")
    if missing := sorted(expected - present):
        raise FileNotFoundError(f"{labels_dir}: missing {missing}")
    out = Labels()
    seen: dict[tuple[str, str], str] = {}  # (video, dimension) -> where it was labelled first
    first: dict[str, str] = {}  # video -> where it was first seen
    for (split, dim), name in LABEL_FILES.items():
        for where, video, label in _read_label_file(labels_dir / name, dim):
            if out.split.setdefault(video, split) != split:
                raise ValueError(f"{where}: video {video} is in both splits (also {first[video]})")
            if (video, dim) in seen:
                raise ValueError(f"{where}: video {video} is labelled again ({seen[(video, dim)]} labels it too)")
            first.setdefault(video, where)
            seen[(video, dim)] = where
            out.labels.setdefault(video, {})[dim] = label
    one_dimension = sorted(v for v, labels in out.labels.items() if len(labels) != len(DIMENSIONS))
    if one_dimension:
        shown = ", ".join(f"{v} ({next(iter(out.labels[v].values())).where})" for v in one_dimension[:10])
        raise ValueError(f"{labels_dir}: {len(one_dimension)} video(s) labelled in one dimension only: {shown}"
                         + (" ..." if len(one_dimension) > 10 else ""))
    return out


def _read_label_file(path: Path, dim: str):
    """(where, video id, Label) of each record of one label file."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, record in enumerate(data):
        where = f"{path}, record {i}"
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            raise ValueError(f"{where}: expected an object with 'messages' and 'videos'")
        answers = [m.get("content") for m in record["messages"] if isinstance(m, dict) and m.get("role") == "assistant"]
        if len(answers) != 1 or not isinstance(answers[0], str):
            raise ValueError(f"{where}: expected one assistant answer, found {len(answers)}")
        match = ANSWER.match(answers[0].strip())
        if match is None:
            raise ValueError(f"{where}: answer {answers[0]!r} is not 'The {dim} of the human face in this video is "
                             "LEVEL. (MOS)'")
        if match["dim"] != dim:
            raise ValueError(f"{where}: a {match['dim']} answer in the {dim} file")
        try:
            mos = float(match["mos"])
        except ValueError:
            raise ValueError(f"{where}: answer {answers[0]!r} has no parsable MOS number") from None
        if not np.isfinite(mos):
            raise ValueError(f"{where}: MOS {match['mos']!r} is not a finite number")
        if match["level"] not in LEVELS + (UNLABELLED_LEVEL,):
            raise ValueError(f"{where}: level word {match['level']!r} is not one of {list(LEVELS)} or 'None'")
        videos = record.get("videos")
        if isinstance(videos, list) and len(videos) == 1:
            videos = videos[0]
        if not isinstance(videos, str) or not videos:
            raise ValueError(f"{where}: 'videos' must be one video path, got {record.get('videos')!r}")
        # The path is the authors' machine's: only the file name identifies the video.
        yield where, Path(videos.replace("\\", "/")).stem, Label(mos, match["level"], where)


def stratified_folds(mos: dict[str, float], folds: int, seed: int) -> dict[str, int]:
    """Fold per video: videos sorted by MOS, each run of ``folds`` consecutive ones dealt to the folds
    in a seeded random order, so every fold spans the whole MOS range."""
    rng = np.random.default_rng(seed)
    ranked = sorted(mos, key=lambda v: (mos[v], v))
    out = {}
    for start in range(0, len(ranked), folds):
        block = ranked[start:start + folds]
        for video, k in zip(block, rng.permutation(folds)):
            out[video] = int(k)
    return out


def import_gen3dhf(root: str | Path, out_dir: str | Path, labels_dir: str | Path,
                   config: ImportConfig = ImportConfig(), progress: bool = True, overwrite: bool = False) -> Path:
    """Write ``out_dir/manifest.jsonl`` (and ``summary.json``) from the release in ``root``; returns the
    manifest. An existing non-empty ``out_dir`` is replaced only with ``overwrite`` (once the new one is
    complete)."""
    from tqdm import tqdm

    root, out_dir = Path(root), Path(out_dir)
    inputs = {"release folder": root, "labels folder": labels_dir}
    if config.red_dots:
        inputs["red-dot folder"] = config.red_dots
    check_output_folder(out_dir, inputs, overwrite)
    video_dir = root / "video_RGB"
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{video_dir}: no such folder (ROOT is the unzipped release: video_RGB/ required, "
                                "image/ and saliency_map/ optional)")
    labels = read_labels(labels_dir)
    files = {p.stem: p for p in video_dir.iterdir() if p.suffix.lower() == ".mp4"}
    missing = sorted(set(labels.labels) - set(files))
    if missing and not config.allow_missing:
        raise FileNotFoundError(f"{video_dir}: {len(missing)} video(s) the labels name are missing: "
                                f"{', '.join(missing)} (--allow-missing skips them and lists them in summary.json)")
    ids = sorted(set(labels.labels) & set(files))
    if not ids:
        raise ValueError(f"{video_dir}: none of the labelled videos is there")
    unlabelled_files = sorted(set(files) - set(labels.labels))
    mos = {dim: {v: labels.labels[v][dim].mos for v in ids} for dim in DIMENSIONS}
    # Eq. 4 over all videos of the release (both splits), as the published words were made.
    levels = {dim: dict(zip(ids, score_to_level([mos[dim][v] for v in ids]))) for dim in DIMENSIONS}
    folds = stratified_folds(mos["quality"], config.folds, config.seed)
    maps = _match_saliency_maps(root / "saliency_map", ids, config)
    dots = _match_red_dot_images(Path(config.red_dots), ids, config) if config.red_dots else {}

    with staged_folder(out_dir) as staging:
        (staging / "videos").mkdir()
        (staging / "saliency").mkdir()
        records = []
        for video in tqdm(ids, desc="importing", unit="video", disable=not progress):
            info = video_info(files[video])
            target = staging / "videos" / files[video].name
            _place(files[video], target, config.copy)
            views = _views(video, maps.get(video), dots.get(video), info, staging, config) if video in maps else {}
            records.append(Record(
                id=video, video=f"videos/{target.name}", fold=folds[video], split=labels.split[video],
                num_frames=info["num_frames"], fps=info["fps"], width=info["width"], height=info["height"],
                mos={dim: mos[dim][video] for dim in DIMENSIONS},
                level={dim: levels[dim][video] for dim in DIMENSIONS},
                categories=None, views=views, video_path=target.resolve(),
            ))
        write_manifest(staging / "manifest.jsonl", records)
        summary = _summary(records, labels, levels, missing, unlabelled_files, maps, dots, config)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    return out_dir / "manifest.jsonl"


def _place(src: Path, dst: Path, copy: bool) -> None:
    # dst is in a fresh staging folder: nothing to replace. A symbolic link points at the absolute
    # source, so it stays valid when the staging folder is renamed into place.
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def _match_saliency_maps(folder: Path, ids: list[str], config: ImportConfig) -> dict[str, Path]:
    """Video id -> its map: a file whose name starts with the video's stem (or matches the pattern)."""
    if not folder.is_dir():
        return {}
    known, out = set(ids), {}
    pattern = re.compile(config.saliency_pattern) if config.saliency_pattern else None
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if pattern is not None:
            match = pattern.search(path.name)
            video = match["id"] if match else None
        else:
            stem = re.match(r"[A-Za-z]*\d+", path.stem)  # seed0123_saliency -> seed0123
            video = stem[0] if stem else None
        if video in known:
            if video in out:
                raise ValueError(f"{folder}: two saliency maps for {video}: {out[video].name} and {path.name} "
                                 "(--saliency-pattern picks one)")
            out[video] = path
    return out


def _match_red_dot_images(folder: Path, ids: list[str], config: ImportConfig) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (--red-dots: the annotated snapshot images)")
    return _match_saliency_maps(folder, ids, config)


def _views(video: str, map_path: Path, dots_path: Path | None, info: dict, out_dir: Path,
           config: ImportConfig) -> dict[str, View]:
    """The map split into its views, each at the video's frame size and tied to its frame by the orbit;
    fixations from the red dots if given, else the map thresholded as the authors did."""
    from PIL import Image

    dense = np.asarray(_decode(map_path, "L", "saliency map"), dtype=np.float64) / 255.0
    n = len(config.view_order)
    h, w = dense.shape
    if w % n:
        raise ValueError(f"{map_path}: {w} pixels wide, not {n} views side by side (--view-order)")
    fixations = red_dot_fixations(dots_path, n, (info["height"], info["width"])) if dots_path else None
    views = {}
    for k, angle in enumerate(config.view_order):
        part = dense[:, k * w // n:(k + 1) * w // n]
        if part.shape != (info["height"], info["width"]):  # the video's frame size
            part = np.asarray(Image.fromarray(part.astype(np.float32)).resize((info["width"], info["height"]),
                                                                            Image.BILINEAR), dtype=np.float64)
        part = np.clip(part, 0, None)
        if part.max() > 0:
            part = part / part.max()
        rel = f"saliency/{video}_{angle}.png"
        save_saliency_png(out_dir / rel, part)
        if fixations is not None:
            points = fixations[k]
        else:
            ys, xs = np.nonzero(part >= FIXATION_THRESHOLD)
            points = [[int(x), int(y)] for x, y in zip(xs, ys)]
        views[angle] = View(frame=view_to_frame(float(angle), info["num_frames"], config.sweep_deg), saliency=rel,
                            fixations=points, saliency_path=(out_dir / rel).resolve())
    return views


def _decode(path: Path, mode: str, what: str):
    """The image at ``path`` decoded in ``mode`` (a PIL image). Any decoding failure, Pillow's
    DecompressionBombError (not an OSError) for an image declaring billions of pixels included, is
    a ``ValueError`` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, its bomb error...
        raise ValueError(f"{path}: cannot decode the {what} ({type(err).__name__}: {err})") from None


def red_dot_fixations(path: Path, views: int, frame_size: tuple[int, int]) -> list[list[list[float]]]:
    """Per view (left to right), the (x, y) centroids of the red dots marked on a snapshot image of
    ``views`` views side by side, in the pixels of a video frame of ``frame_size`` (height, width)."""
    from scipy import ndimage

    rgb = _decode(path, "RGB", "red-dot image")
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.float64) / 255.0  # (H, W, 3), hue in [0, 1]
    hue_deg = hsv[..., 0] * 360.0
    red = ((hue_deg <= RED_HUE_DEG) | (hue_deg >= 360.0 - RED_HUE_DEG)) & (hsv[..., 1] >= RED_MIN_SV) \
        & (hsv[..., 2] >= RED_MIN_SV)
    blobs, count = ndimage.label(red)
    h, w = red.shape
    view_w = w / views
    out: list[list[list[float]]] = [[] for _ in range(views)]
    for index in range(1, count + 1):
        area = int((blobs == index).sum())
        if not BLOB_AREA[0] <= area <= BLOB_AREA[1]:
            continue
        y, x = ndimage.center_of_mass(red, blobs, index)
        k = min(int(x // view_w), views - 1)
        # Into the view's own pixels, then onto the video frame's.
        fx = (x - k * view_w) * frame_size[1] / view_w
        fy = y * frame_size[0] / h
        out[k].append([round(fx, 2), round(fy, 2)])
    return out


def _summary(records: list[Record], labels: Labels, levels: dict, missing: list[str], unlabelled_files: list[str],
             maps: dict, dots: dict, config: ImportConfig) -> dict:
    """Counts, MOS ranges per split, how Eq. 4 agrees with the published level words, what was skipped."""
    from .stats import summarize

    out = summarize(records)
    out["source"] = "Gen3DHF release (lmmeval import-gen3dhf)"
    out["mos_by_split"] = {
        split: {dim: {"min": float(min(r.mos[dim] for r in part)), "max": float(max(r.mos[dim] for r in part)),
                      "videos": len(part)} for dim in DIMENSIONS}
        for split in SPLITS if (part := [r for r in records if r.split == split])}
    agreement = {}
    for dim in DIMENSIONS:
        differ = [{"video": r.id, "published": labels.labels[r.id][dim].level, "eq4": levels[dim][r.id]}
                  for r in records if labels.labels[r.id][dim].level != levels[dim][r.id]]
        agreement[dim] = {"same": len(records) - len(differ), "different": len(differ), "differences": differ}
    out["level_words_eq4_vs_published"] = agreement
    out["missing_videos"] = missing  # named by the labels, absent from video_RGB/ (skipped: --allow-missing)
    out["videos_without_labels"] = unlabelled_files  # in video_RGB/, named by no label file (not imported)
    out["saliency"] = {
        "maps_matched": len(maps), "videos_without_map": [r.id for r in records if not r.views],
        "view_order": list(config.view_order),
        "fixations": f"red-dot centroids ({config.red_dots})" if config.red_dots
        else f"the maps thresholded at {FIXATION_THRESHOLD} (the authors' fixation maps)",
        "red_dot_images_matched": len(dots),
        # With --red-dots, a map whose video has no red-dot image falls back to the thresholded map.
        "fixations_from_maps": sorted(set(maps) - set(dots)) if config.red_dots else [],
    }
    out["import"] = {"folds": config.folds, "seed": config.seed, "copy": config.copy}
    return out
