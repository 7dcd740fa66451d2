"""The synthetic Gen3DHF-style study: files, shapes, 3D distortions, the simulated raters."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lmmeval.data.mos import compute_mos
from lmmeval.io.media import read_video, video_info, write_video
from lmmeval.eval.metrics import srcc
from lmmeval.synth import GENERATORS, SynthConfig, synthesize
from lmmeval.synth.head import DISTORTION_TYPES, apply_distortion, build_head
from lmmeval.orbit import SNAPSHOT_VIEWS, orbit_azimuths
from lmmeval.synth.render import is_visible, orbit_camera, render_view
from lmmeval.synth.study import N_ANNOTATORS, N_SUBJECTS, simulate_ratings

from .conftest import SMALL_SET


def test_raw_folder_layout(synthetic_raw):
    n = SMALL_SET["n"]
    videos = sorted((synthetic_raw / "videos").glob("*.mp4"))
    assert len(videos) == n
    info = video_info(videos[0])
    assert (info["num_frames"], info["height"], info["width"]) == (16, 112, 112)
    assert info["fps"] == pytest.approx(8.0)
    frames, _ = read_video(videos[0], [0, 15])
    assert frames.shape == (2, 112, 112, 3) and frames.dtype == np.uint8
    assert len(list((synthetic_raw / "snapshots").glob("*.png"))) == 3 * n

    with open(synthetic_raw / "ratings.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_SUBJECTS * 2 * n  # every subject rates every video on both sliders
    assert all(0.0 <= float(r["rating"]) <= 5.0 for r in rows)

    marks = [json.loads(line) for line in open(synthetic_raw / "marks.jsonl")]
    assert len(marks) == n * N_ANNOTATORS * len(SNAPSHOT_VIEWS)
    for m in marks:
        assert set(m) >= {"video", "annotator", "view", "points", "description"}
        assert all(0 <= x < 112 and 0 <= y < 112 for x, y in m["points"])

    with open(synthetic_raw / "generators.csv") as f:
        gens = list(csv.DictReader(f))
    # Videos are dealt round-robin over the ten generators.
    assert sorted({g["generator"] for g in gens}) == sorted(p.name for p in GENERATORS)
    assert all(sum(g["generator"] == p.name for g in gens) == n // 10 for p in GENERATORS)


def test_same_seed_same_study(tmp_path, monkeypatch):
    """Same seed: the same study files and the same rendered frames. The frames are compared as
    handed to the encoder: libx264 has been seen to choose B-frames differently for the same frames
    on a busy machine, so the mp4 bytes (and decoded pixels, by compression noise) may differ."""
    import importlib

    # The module, not the function of the same name that lmmeval.synth exports in its place.
    synth_module = importlib.import_module("lmmeval.synth.synthesize")
    rendered: dict[str, list[np.ndarray]] = {}

    def keep_frames(path, frames, fps):
        rendered.setdefault(Path(path).name, []).append(frames.copy())
        return write_video(path, frames, fps)

    monkeypatch.setattr(synth_module, "write_video", keep_frames)
    config = SynthConfig(n=3, seed=7, size=32, fps=4, seconds=1.0)
    a = synthesize(tmp_path / "a", config, progress=False)
    b = synthesize(tmp_path / "b", config, progress=False)
    for name in ("ratings.csv", "marks.jsonl", "truth.jsonl"):
        assert (a / name).read_text() == (b / name).read_text()
    assert sorted(rendered) == ["g01_0000.mp4", "g02_0000.mp4", "g03_0000.mp4"]
    for name, (fa, fb) in rendered.items():
        np.testing.assert_array_equal(fa, fb, err_msg=name)
    decoded, _ = read_video(a / "videos" / "g01_0000.mp4")  # and the file holds those frames
    assert decoded.shape == rendered["g01_0000.mp4"][0].shape
    assert np.abs(decoded.astype(int) - rendered["g01_0000.mp4"][0]).mean() < 8


def test_orbit_covers_the_papers_180_degrees():
    az = orbit_azimuths(240)
    assert az[0] == -90 and az[-1] == 90 and np.allclose(np.diff(az), 180 / 239)


@pytest.mark.parametrize("kind", DISTORTION_TYPES[:6] + DISTORTION_TYPES[7:])  # blur is image-space
def test_distortions_are_3d_and_marked_where_they_change_the_image(kind):
    """Render the same head with and without a distortion from three views: the pixels
    that change must lie around the projection of the returned 3D mark point, which
    moves across the image as the camera orbits (so the distortion is fixed to the head)."""
    size = 96
    clean = build_head(np.random.default_rng(3))
    head = build_head(np.random.default_rng(3))
    centre = apply_distortion(head, kind, 1.0, np.random.default_rng(4))
    hits = 0
    xs = []
    for view in SNAPSHOT_VIEWS:
        cam = orbit_camera(view, size)
        if not is_visible(head.prims, cam, centre):
            continue
        diff = np.abs(render_view(head.prims, view, size, seam=head.seam)
                      - render_view(clean.prims, view, size, seam=clean.seam)).sum(-1)  # (h, w)
        x, y, _ = cam.project(centre)
        xs.append(x)
        r = int(0.12 * size)
        near = diff[max(0, int(y) - r):int(y) + r + 1, max(0, int(x) - r):int(x) + r + 1]
        assert near.max() > 0.2, f"{kind}: nothing changed near the mark in view {view}"
        hits += 1
    assert hits >= 1, f"{kind}: mark point visible in no snapshot"
    if len(xs) >= 2:
        assert max(xs) - min(xs) > 3, f"{kind}: mark does not move with the orbit"


def test_visibility_of_the_back_of_the_head():
    head = build_head(np.random.default_rng(0))
    back = head.get("skull").surface_point((0, 0, -1))
    front = head.get("nose").surface_point((0, 0, 1))
    cam = orbit_camera(0, 128)
    assert not is_visible(head.prims, cam, back)
    assert is_visible(head.prims, cam, front)


def test_simulated_raters_reproduce_latent_scores_and_outliers_are_screened():
    rng = np.random.default_rng(0)
    latents = {f"v{i:03d}": {"quality": rng.uniform(15, 85), "authenticity": rng.uniform(15, 85)} for i in range(200)}
    rows, unreliable = simulate_ratings(latents, np.random.default_rng(1))
    mos = compute_mos(rows)
    for dim in ("quality", "authenticity"):
        ids = sorted(latents)
        assert srcc([mos[(v, dim)] for v in ids], [latents[v][dim] for v in ids]) > 0.97
        # BT.500 screening removes only unreliable subjects. It cannot catch them all:
        # their noise fattens the tails, the kurtosis test then widens the limits to
        # sqrt(20) std (BT.500-13 Annex 2, 2.3.1), and only the clearest cases fall outside.
        assert set(mos.rejected[dim]) <= set(unreliable)
        assert len(mos.rejected[dim]) >= 1


def test_quality_and_authenticity_respond_differently(synthetic_raw):
    """Paper Fig. 2b: some generators are better on quality, others on authenticity."""
    truths = [json.loads(line) for line in open(synthetic_raw / "truth.jsonl")]
    q = [t["latent"]["quality"] for t in truths]
    a = [t["latent"]["authenticity"] for t in truths]
    assert srcc(q, a) < 0.8
    by_gen = {}
    for t in truths:
        by_gen.setdefault(t["generator"], []).append(t["latent"]["quality"] - t["latent"]["authenticity"])
    gaps = {g: np.mean(v) for g, v in by_gen.items()}
    assert gaps["G01-sharp-tri-plane"] > 5 and gaps["G02-soft-panoramic"] < -5


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="even"):
        SynthConfig(size=101)
    with pytest.raises(ValueError, match="n must be"):
        SynthConfig(n=0)


def test_grain_on_a_coarser_grid_survives_the_models_downscale():
    """--grain-size: a 448-px frame's grain drawn on a 112-px grid keeps its full amplitude when the
    frame is averaged down to 112 px (4 x 4 blocks), while per-pixel grain (the benchmark's default)
    falls to a quarter of it, as averaging 16 independent values does."""
    from lmmeval.synth.synthesize import _grain

    sigma, size = 0.03, 448

    def block_mean(x):  # (448, 448, 3) -> (112, 112, 3), the exact box downscale
        return x.reshape(112, 4, 112, 4, 3).mean(axis=(1, 3))

    per_pixel = _grain(np.random.default_rng(0), sigma, size, None)
    coarse = _grain(np.random.default_rng(0), sigma, size, 112)
    assert per_pixel.shape == coarse.shape == (size, size, 3)
    assert block_mean(per_pixel).std() == pytest.approx(sigma / 4, rel=0.05)
    assert block_mean(coarse).std() == pytest.approx(sigma, rel=0.05)
    assert np.array_equal(coarse[:4, :4, 0], np.full((4, 4), coarse[0, 0, 0]))  # one value per cell
    # The default draws exactly what the frame drew before the option existed.
    np.testing.assert_array_equal(per_pixel, np.random.default_rng(0).normal(0, sigma, size=(size, size, 3)))
    with pytest.raises(ValueError, match=r"grain_size must be between 2 and the frame size \(112\), got 113"):
        SynthConfig(size=112, grain_size=113)


def test_synth_cli_records_the_grain_size(tmp_path):
    from lmmeval.cli import main

    assert main(["synth", str(tmp_path / "raw"), "--n", "1", "--size", "32", "--fps", "4", "--seconds", "0.5",
                 "--grain-size", "16", "-q"]) == 0
    assert json.loads((tmp_path / "raw" / "synth_config.json").read_text())["config"]["grain_size"] == 16


def test_trust_reuses_a_rendered_study_only_with_the_same_settings(tmp_path):
    """research.trust renders each study once: a complete folder rendered with the same settings is
    reused (one written before grain_size existed counts as per-pixel grain), other settings refused."""
    import dataclasses

    from research.trust import render_study

    protocol = {"size": 112, "fps": 8, "seconds": 2.0}
    folder = tmp_path / "raw_112px_8fps_2s_n3_seed2"
    folder.mkdir()
    stored = {k: v for k, v in dataclasses.asdict(SynthConfig(n=3, seed=2, **protocol)).items() if k != "grain_size"}
    (folder / "synth_config.json").write_text(json.dumps({"config": stored}))
    (folder / "ratings.csv").write_text("subject,video,dimension,rating\n")
    assert render_study(tmp_path, 3, 2, protocol, workers=2) == folder  # no rendering: the file stays fake
    (folder / "synth_config.json").write_text(json.dumps({"config": stored | {"sweep_deg": 90.0}}))
    with pytest.raises(ValueError, match=r"holds another study .*'sweep_deg': 90.0"):
        render_study(tmp_path, 3, 2, protocol, workers=1)


def test_a_heads_latent_scores_do_not_depend_on_the_render_protocol(synthetic_raw, other_render_raw):
    """The same study at 112 px, 8 fps, 2 s and at 128 px, 6 fps, 3 s: each head has the same latent
    scores, the grainy heads (image-space effects, whose grain draws one value per pixel) included."""
    from lmmeval.synth.head import BLUR

    def latents(raw):
        return {t["video"]: t["latent"] for t in map(json.loads, open(raw / "truth.jsonl"))}

    grainy = [t["video"] for t in map(json.loads, open(synthetic_raw / "truth.jsonl"))
              if any(d["type"] == BLUR for d in t["distortions"])]
    assert len(grainy) >= 3  # so the comparison covers them
    assert latents(other_render_raw) == latents(synthetic_raw)


def test_synth_never_mixes_studies_and_an_interrupted_one_leaves_nothing(tmp_path, monkeypatch):
    """A second study into a non-empty folder would pair one study's videos with another's ratings
    (n differs: the old extra videos stay): refused unless asked. A run that fails half-way leaves
    no folder that looks like a study, nor its temporary one."""
    import importlib

    synth_module = importlib.import_module("lmmeval.synth.synthesize")
    config = SynthConfig(n=2, seed=7, size=32, fps=4, seconds=1.0)
    out = synthesize(tmp_path / "study", config, progress=False)
    before = sorted(p.name for p in (out / "videos").iterdir())
    with pytest.raises(ValueError, match="is not empty .*overwrite"):
        synthesize(out, SynthConfig(n=1, seed=8, size=32, fps=4, seconds=1.0), progress=False)
    assert sorted(p.name for p in (out / "videos").iterdir()) == before

    calls = []

    def fail_on_second(i, config, out_dir):
        calls.append(i)
        if i == 1:
            raise KeyboardInterrupt  # Ctrl-C half-way
        return original(i, config, out_dir)

    original = synth_module.render_sample
    monkeypatch.setattr(synth_module, "render_sample", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "new", config, progress=False)
    assert calls == [0, 1] and sorted(p.name for p in tmp_path.iterdir()) == ["study"]
