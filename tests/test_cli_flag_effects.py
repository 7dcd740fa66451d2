"""Each user-facing flag that no other test passed, passed here and seen to change what it says it
changes, checked against an independent reference where there is one (scipy, the orbit, the
formula the flag names). tests/test_cli_flags.py keeps this complete."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmmeval.cli import main
from lmmeval.data.manifest import load_manifest

SMALL = ["--size", "32", "--fps", "4", "--seconds", "1", "-q"]


# ---------------------------------------------------------------------------------------
# synth, prepare, stats
# ---------------------------------------------------------------------------------------

def test_synth_seed_and_sweep(tmp_path):
    from lmmeval.io.media import read_video

    assert main(["synth", str(tmp_path / "a"), "--n", "2", "--seed", "8", *SMALL]) == 0
    assert main(["synth", str(tmp_path / "b"), "--n", "2", "--seed", "9", *SMALL]) == 0
    assert main(["synth", str(tmp_path / "c"), "--n", "2", "--seed", "9", "--sweep", "90", *SMALL]) == 0
    config = {k: json.loads((tmp_path / k / "synth_config.json").read_text())["config"] for k in "abc"}
    assert (config["a"]["seed"], config["b"]["seed"], config["c"]["sweep_deg"]) == (8, 9, 90.0)
    # Another seed: other heads (their latent scores differ). The same seed: the same heads.
    truth = {k: (tmp_path / k / "truth.jsonl").read_text() for k in "abc"}
    assert truth["a"] != truth["b"] and truth["b"] == truth["c"]
    # A 90 degree sweep starts the orbit at -45 degrees instead of -90: another first frame.
    first = {k: read_video(tmp_path / k / "videos" / "g01_0000.mp4")[0][0].astype(int) for k in "bc"}
    assert np.abs(first["b"] - first["c"]).mean() > 2


def test_prepare_seed_min_votes_sigma_and_sweep(synthetic_raw, prepared_manifest, tmp_path):
    from lmmeval.data.descriptions import combine_categories
    from lmmeval.orbit import view_to_frame

    out = tmp_path / "prepared"
    assert main(["prepare", str(synthetic_raw), str(out), "--seed", "3", "--min-votes", "3", "--sigma", "10",
                 "--sweep", "90", "-q"]) == 0
    default = {r.id: r for r in load_manifest(prepared_manifest)}
    changed = load_manifest(out / "manifest.jsonl")
    # --seed: another fold assignment of the same videos.
    assert [r.fold for r in changed] != [default[r.id].fold for r in changed]
    # --min-votes 3: a category counts only when all three annotators name it.
    for r in changed:
        assert r.categories == combine_categories(list(r.descriptions.values()), min_votes=3)
    assert sum(len(r.categories) for r in changed) < sum(len(r.categories) for r in default.values())
    # --sweep 90: each view is tied to the frame a 90 degree orbit shows it at.
    for r in changed:
        for view, v in r.views.items():
            assert v.frame == view_to_frame(float(view), r.num_frames, 90.0)
    assert any(v.frame != default[r.id].views[view].frame for r in changed for view, v in r.views.items())
    # --sigma 10: a single fixation spreads twice as wide; the area above half its peak is ~4x.
    from lmmeval.data.saliency_maps import load_saliency_png

    r = next(r for r in changed if r.views and len(next(iter(r.views.values())).fixations) == 1)
    view = next(v for v in r.views.values() if len(v.fixations) == 1)
    wide = (load_saliency_png(view.saliency_path) > 0.5).sum()
    narrow = (load_saliency_png(default[r.id].views[next(k for k, v in r.views.items() if v is view)]
                                .saliency_path) > 0.5).sum()
    assert 3.0 < wide / narrow < 5.0


def test_stats_truth_and_no_check(prepared_manifest, synthetic_raw, capsys):
    assert main(["stats", str(prepared_manifest), "--truth", str(synthetic_raw / "truth.jsonl")]) == 0
    checked = capsys.readouterr().out
    assert "srcc_mos_latent_quality" in checked and "learnability checks" in checked
    assert main(["stats", str(prepared_manifest), "--no-check"]) == 0
    unchecked = capsys.readouterr().out
    assert "learnability checks" not in unchecked and "srcc_mos_latent" not in unchecked
    assert "distortion categories" in unchecked  # the statistics are still there


# ---------------------------------------------------------------------------------------
# render, and meshes in score
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def head(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_example_heads import main as make_heads

    folder = tmp_path_factory.mktemp("heads")
    make_heads([str(folder)])
    return sorted(folder.glob("*.ply"))[0]


def test_render_orbit(head, tmp_path):
    """--orbit 90 runs from -45 to +45 degrees: its first frame is the -45 degree view."""
    from lmmeval.io.media import read_video

    args = ["--size", "64", "--fps", "2", "--seconds", "1", "--spp", "4", "--workers", "1", "-q"]
    assert main(["render", str(head), "--out", str(tmp_path / "o90"), "--orbit", "90", *args]) == 0
    assert main(["render", str(head), "--out", str(tmp_path / "o180"), *args]) == 0
    views = np.asarray(Image.open(tmp_path / "o90" / f"{head.stem}_views.png")).astype(int)
    left = views[:, :64]  # the -45 degree view
    first90 = read_video(tmp_path / "o90" / f"{head.stem}.mp4")[0][0].astype(int)
    first180 = read_video(tmp_path / "o180" / f"{head.stem}.mp4")[0][0].astype(int)
    assert np.abs(first90 - left).mean() < 4  # the same view, through H.264
    assert np.abs(first180 - left).mean() > 3 * np.abs(first90 - left).mean()


@pytest.mark.slow
def test_score_render_cache_and_render_orbit(head, tmp_path, capsys):
    """Meshes are rendered into --render-cache, named by a key of the mesh and the settings: another
    --render-orbit is another video, never the cached one."""
    cache = tmp_path / "cache"
    args = ["score", str(head), "--render-cache", str(cache), "--render-size", "64", "--render-fps", "2",
            "--render-seconds", "1", "--render-spp", "1", "--render-workers", "1", "--device", "cpu", "-q"]
    assert main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.jsonl"), "--render-orbit", "90"]) == 0
    videos = sorted(cache.glob("*.mp4"))
    assert len(videos) == 2 and all(v.name.startswith(head.stem + "-") for v in videos)
    rows = [json.loads((tmp_path / n).read_text()) for n in ("a.jsonl", "b.jsonl")]
    noted = [next(note for note in r["notes"] if note.startswith("rendered to ")) for r in rows]
    assert noted[0] != noted[1] and all(str(cache) in n for n in noted)
    assert (cache / ".lmmeval-render-cache").is_file()


@pytest.mark.slow
def test_score_keep_renders(head, tmp_path):
    """By default a mesh is scored from the frames the model reads and no video is written;
    --keep-renders renders its whole protocol video into the render cache and scores that."""
    from lmmeval.io.media import video_info

    args = ["score", str(head), "--render-size", "64", "--render-fps", "4", "--render-seconds", "2", "--render-spp",
            "1", "--render-workers", "1", "--device", "cpu", "-q"]
    assert main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.jsonl"), "--keep-renders"]) == 0
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("a.jsonl", "b.jsonl"))
    assert a["error"] is None and a["notes"][0].startswith("rendered only the 8 frames the model reads")
    assert not (tmp_path / "a.jsonl.renders").exists()
    [video] = (tmp_path / "b.jsonl.renders").glob("*.mp4")
    assert b["error"] is None and b["notes"][0] == f"rendered to {video} by lmmeval render"
    assert video_info(video) == {"num_frames": 8, "fps": 4.0, "height": 64, "width": 64}


# ---------------------------------------------------------------------------------------
# score and evaluate: model options, input selection, masks
# ---------------------------------------------------------------------------------------

@pytest.fixture()
def media(synthetic_raw, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(sorted((synthetic_raw / "videos").glob("*.mp4"))[0], root / "v.mp4")
    shutil.copy(sorted((synthetic_raw / "snapshots").glob("*.png"))[0], root / "x.png")
    return root


def test_include_and_exclude_select_inputs(media, tmp_path, capsys):
    assert main(["score", str(media), "--out", str(tmp_path / "r.jsonl"), "--include", "*.png", "--exclude",
                 "x*"]) == 2
    err = capsys.readouterr().err
    assert "no inputs to score" in err and "2 left out by --include/--exclude" in err
    assert main(["score", str(media), "--out", str(tmp_path / "r.jsonl"), "--include", "*.png", "--device", "cpu",
                 "--mask-dilate", "0", "--mask-threshold", "0.05", "--masks", str(tmp_path / "m0"), "-q"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["x.png"]


def test_mask_dilate_grows_masks_by_that_many_pixels(media, tmp_path):
    """Against scipy: the dilated mask is the undilated one grown by 3 steps of the 4-neighbourhood."""
    from scipy.ndimage import binary_dilation, generate_binary_structure

    base = ["score", str(media / "x.png"), "--device", "cpu", "--mask-threshold", "0.05", "-q"]
    assert main([*base, "--out", str(tmp_path / "a.jsonl"), "--masks", str(tmp_path / "m0"), "--mask-dilate", "0"]) == 0
    assert main([*base, "--out", str(tmp_path / "b.jsonl"), "--masks", str(tmp_path / "m3"), "--mask-dilate", "3"]) == 0
    m0 = np.asarray(Image.open(tmp_path / "m0" / "x.png.mask.png")) > 0
    m3 = np.asarray(Image.open(tmp_path / "m3" / "x.png.mask.png")) > 0
    assert 0 < m0.sum() < m0.size  # something to grow, and room to grow it
    expected = binary_dilation(m0, generate_binary_structure(2, 1), iterations=3)
    assert np.array_equal(m3, expected)


def test_attention_and_compile_reach_the_model(media, tmp_path, monkeypatch):
    """--attention eager loads the base with transformers' eager attention and gives the scores sdpa
    gives; --compile compiles the assessor before scoring."""
    from lmmeval.inference.assessor import Assessor

    loaded, compiled = [], []
    original = Assessor.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        assessor = original(cls, *args, **kwargs)
        loaded.append(assessor.model.backbone.config._attn_implementation)
        return assessor

    monkeypatch.setattr(Assessor, "from_pretrained", classmethod(spy))
    monkeypatch.setattr(Assessor, "compile", lambda self, *a, **k: compiled.append(True))
    scores = []
    for attention, extra in (("sdpa", []), ("eager", ["--compile"])):
        out = tmp_path / f"{attention}.jsonl"
        assert main(["score", str(media / "x.png"), "--out", str(out), "--device", "cpu", "--attention", attention,
                     *extra, "-q"]) == 0
        scores.append(json.loads(out.read_text())["quality"])
    assert loaded == ["sdpa", "eager"] and compiled == [True]
    assert scores[0] == pytest.approx(scores[1], abs=1e-3)


def test_evaluate_attention(prepared_manifest, tmp_path, monkeypatch):
    import lmmeval.eval.evaluate as evaluate

    seen = []
    monkeypatch.setattr(evaluate, "run", lambda model, manifest, fold, out, load_assessor, **k:
                        seen.append(load_assessor("cpu").model.backbone.config._attn_implementation)
                        or (Path(out) / "report.md").write_text("report\n"))
    assert main(["evaluate", "--manifest", str(prepared_manifest), "--out", str(tmp_path / "rep"),
                 "--attention", "eager"]) == 0
    assert seen == ["eager"]


# ---------------------------------------------------------------------------------------
# calibrate-ood
# ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_calibrate_ood_held_out_fold_split_and_quantile(prepared_manifest, tmp_path, capsys):
    from lmmeval.model.factory import DEMO_CHECKPOINT
    from lmmeval.model.ood import FeatureDistribution

    ckpt = tmp_path / "ckpt"
    shutil.copytree(DEMO_CHECKPOINT, ckpt)
    records = load_manifest(prepared_manifest)
    assert main(["calibrate-ood", "--model", str(ckpt), "--manifest", str(prepared_manifest), "--held-out-fold", "0",
                 "--quantile", "0.9", "--components", "4", "--overwrite", "--device", "cpu", "-q"]) == 0
    ood = FeatureDistribution.load(ckpt)
    assert ood.n_fit == sum(r.fold != 0 for r in records) and ood.quantile == 0.9
    # A split the manifest does not have: one line naming it, before any feature is computed.
    assert main(["calibrate-ood", "--model", str(ckpt), "--manifest", str(prepared_manifest), "--held-out-split",
                 "eval", "--overwrite", "-q"]) == 2
    assert "eval" in capsys.readouterr().err
