"""`lmmeval render`: small heads in all three formats (a textured .glb, an .obj with its .mtl and
texture, a vertex-coloured .ply), each with a red marker on the head's right side, rendered at test
size on the Gen3DHF orbit; bad assets named; the renderer's variant (LLVM where it loads, scalar
otherwise, forced by LMMEVAL_RENDER_VARIANT); one mesh scored end to end through `lmmeval score`,
from only the frames the model reads, as it scores the whole video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("mitsuba")

from lmmeval.cli import main  # noqa: E402
from lmmeval.io.media import read_video, video_info  # noqa: E402
from lmmeval.render import RenderConfig, render_asset, render_assets, render_frames  # noqa: E402
from lmmeval.render.assets import AssetError, load_asset  # noqa: E402
from lmmeval.render.pool import RenderPool  # noqa: E402
from lmmeval.render.scene import VARIANT_ENV  # noqa: E402

SMALL = RenderConfig(size=48, fps=4, seconds=2, spp=2)  # 8 frames of 48x48
SKIN, RED = (210, 180, 160), (255, 0, 0)
NO_LLVM = "/nonexistent/libLLVM.so"  # DRJIT_LIBLLVM_PATH that keeps Dr.Jit's LLVM backend from loading


def _llvm_loads() -> bool:
    """Whether Dr.Jit's LLVM backend loads on this machine (asked in a fresh process, as a worker would)."""
    import subprocess
    import sys

    check = "import drjit as dr, sys; sys.exit(0 if dr.has_backend(dr.JitBackend.LLVM) else 1)"
    return subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


# Where no libLLVM loads the scalar renderer is all there is.
LLVM = pytest.param("llvm_ad_rgb", marks=pytest.mark.skipif(not _llvm_loads(), reason="no libLLVM loads here"))


def _egg():
    """A head-sized egg, taller than wide, with UVs from its position (u from x: the right side, -x, at u < 0.2)."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    mesh.vertices[:, 1] *= 1.3
    uv = np.column_stack([0.5 + 0.5 * mesh.vertices[:, 0], 0.5 + 0.5 * mesh.vertices[:, 1] / 1.3])
    return mesh, uv


def _texture():
    from PIL import Image

    image = np.zeros((32, 32, 3), np.uint8)
    image[:] = SKIN
    image[:, :6] = RED  # u < 0.2: the head's right side
    return Image.fromarray(image)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    mesh, uv = _egg()
    textured = mesh.copy()
    textured.visual = trimesh.visual.TextureVisuals(uv=uv, image=_texture())
    textured.export(root / "glb_head.glb")
    (root / "obj").mkdir()
    textured.export(root / "obj" / "obj_head.obj")  # writes the .mtl and the texture beside it
    coloured = mesh.copy()
    colors = np.tile(np.array([*SKIN, 255], np.uint8), (len(mesh.vertices), 1))
    colors[mesh.vertices[:, 0] < -0.6] = [*RED, 255]
    coloured.visual.vertex_colors = colors
    coloured.export(root / "ply_head.ply")
    return {"glb": root / "glb_head.glb", "obj": root / "obj" / "obj_head.obj", "ply": root / "ply_head.ply"}


def _red(frame: np.ndarray) -> float:
    """Share of the frame that is the marker's red."""
    return float(((frame[..., 0] > 150) & (frame[..., 1] < 90) & (frame[..., 2] < 90)).mean())


@pytest.mark.parametrize("kind", ["glb", "obj", "ply"])
def test_each_format_renders_in_the_protocol_with_the_right_profile_first(assets, kind, tmp_path):
    rendered = render_asset(assets[kind], tmp_path, SMALL)
    assert rendered.error is None and rendered.notes == []
    info = video_info(rendered.video)
    assert (info["num_frames"], info["fps"], info["height"], info["width"]) == (8, 4.0, 48, 48)
    frames, _ = read_video(rendered.video)
    # The orbit starts at the head's right profile (-x), where the marker is, and ends at its left.
    assert _red(frames[0]) > 0.15 and _red(frames[-1]) < 0.005
    assert frames[0].std() > 10  # a head, not a blank frame
    views = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(rendered.views))
    assert views.shape == (48, 3 * 48, 3)  # -45, 0, +45 side by side
    assert _red(views[:, :48]) > _red(views[:, 96:])  # the marker shows at -45, not at +45


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["scalar_rgb", LLVM])
def test_the_same_frames_every_run_and_whatever_the_workers(assets, variant, monkeypatch):
    """Frame i is seeded by i: the same frames twice, over one worker process or two, and (the LLVM
    variant) on one thread or two."""
    from lmmeval.render.scene import FrameRenderer

    monkeypatch.setenv(VARIANT_ENV, variant)
    head = load_asset(assets["glb"])
    azimuths = np.linspace(-90, 90, 6)
    frames = []
    for workers in (1, 1, 2):
        with RenderPool(workers) as pool:
            frames.append(pool.render(head, azimuths, 48, 2))
            assert pool.variant == variant and len(pool.pids) == workers
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])
    if variant == "llvm_ad_rgb":
        import drjit as dr

        renderer, before = FrameRenderer(head, 48, 2, variant), dr.thread_count()
        try:
            for threads in (1, 2):
                dr.set_thread_count(threads)
                assert np.array_equal(np.stack([renderer.render(a, seed=i) for i, a in enumerate(azimuths)]),
                                      frames[0])
        finally:
            dr.set_thread_count(before)


def test_the_llvm_variant_renders_light_and_albedo_in_two_passes_with_the_pixels_of_one(assets):
    """Two passes (the direct integrator, then the albedo AOV) are a third faster with the LLVM variant
    than the AOV integrator wrapping the direct one; the AOV draws no samples, so the frames are
    the one-pass frames, bit for bit (a Mitsuba that changed that would fail here)."""
    if not _llvm_loads():
        pytest.skip("no libLLVM loads here")
    from lmmeval.render.scene import FrameRenderer

    for kind in ("glb", "ply"):
        renderer = FrameRenderer(load_asset(assets[kind]), 64, 4, "llvm_ad_rgb")
        assert len(renderer.passes) == 2
        two = [renderer.render(a, seed=i) for i, a in enumerate((-60.0, 0.0, 45.0))]
        renderer.passes = [None]  # the scene's own integrator: the AOV one wrapping the direct one
        one = [renderer.render(a, seed=i) for i, a in enumerate((-60.0, 0.0, 45.0))]
        assert all(np.array_equal(a, b) for a, b in zip(one, two))


def test_progress_moves_with_every_frame(assets):
    """The progress callback hears of each frame as it is done, not of chunks of frames."""
    calls = []
    render_frames(load_asset(assets["ply"]), np.linspace(-90, 90, 6), SMALL, progress=calls.append)
    assert calls == [1] * 6


@pytest.mark.slow
def test_llvm_where_it_loads_else_scalar_with_one_line_saying_how(assets, monkeypatch, capfd, tmp_path):
    """On a CPU the LLVM variant renders where a libLLVM loads; where none does, the scalar one, and
    one line (once per process, Dr.Jit's own complaints held back) says how to get the fast one."""
    import lmmeval.render.pool as pool_module

    monkeypatch.delenv(VARIANT_ENV, raising=False)
    monkeypatch.setattr(pool_module, "_NOTED", set())
    with RenderPool(1, prefer_gpu=False) as pool:
        assert pool.start() == ("llvm_ad_rgb" if _llvm_loads() else "scalar_rgb")
    capfd.readouterr()
    monkeypatch.setenv("DRJIT_LIBLLVM_PATH", NO_LLVM)
    monkeypatch.setattr(pool_module, "_NOTED", set())
    for _ in range(2):
        with RenderPool(1, prefer_gpu=False) as pool:
            assert pool.start() == "scalar_rgb"
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "libLLVM" in err[0] and "DRJIT_LIBLLVM_PATH" in err[0], err
    # The slow renderer still renders the asset.
    assert main(["render", str(assets["ply"]), "--out", str(tmp_path / "r"), "--size", "32", "--fps", "2",
                 "--seconds", "1", "--spp", "1", "-q"]) == 0


@pytest.mark.slow
def test_the_variant_can_be_forced_and_a_wrong_one_is_one_clear_error(assets, monkeypatch, capsys, tmp_path):
    from lmmeval.render.pool import VariantUnavailable
    from lmmeval.render.scene import requested_variant

    monkeypatch.setenv(VARIANT_ENV, "scalar_rgb")
    with RenderPool(2, prefer_gpu=True) as pool:
        assert pool.start() == "scalar_rgb"
    monkeypatch.setenv(VARIANT_ENV, "fast")
    with pytest.raises(ValueError, match="LMMEVAL_RENDER_VARIANT='fast' is not a render variant: give one of "
                                         "scalar_rgb, llvm_ad_rgb, cuda_ad_rgb"):
        requested_variant()
    argv = ["render", str(assets["ply"]), "--out", str(tmp_path / "r"), "--size", "32", "--fps", "2", "--seconds",
            "1", "-q"]
    assert main(argv) == 2
    assert "is not a render variant" in capsys.readouterr().err and not (tmp_path / "r").exists()
    # A variant that does not load here: one error, whatever the number of assets, and nothing written.
    monkeypatch.setenv(VARIANT_ENV, "llvm_ad_rgb")
    monkeypatch.setenv("DRJIT_LIBLLVM_PATH", NO_LLVM)
    with pytest.raises(VariantUnavailable, match="llvm_ad_rgb: Mitsuba's llvm_ad_rgb variant does not load here"):
        RenderPool(1).start()
    assert main([*argv[:2], str(assets["glb"]), *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("does not load here") == 1 and "DRJIT_LIBLLVM_PATH" in err, err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*"))
    # lmmeval score says so before it loads a model.
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    import lmmeval.inference.assessor as assessor_module

    monkeypatch.setattr(assessor_module.Assessor, "from_pretrained", no_model)
    assert main(["score", str(assets["ply"]), "--out", str(tmp_path / "s.jsonl"), "--device", "cpu", "-q"]) == 2
    assert "llvm_ad_rgb variant does not load here" in capsys.readouterr().err
    if not _cuda_loads():
        monkeypatch.setenv(VARIANT_ENV, "cuda_ad_rgb")
        with pytest.raises(VariantUnavailable, match="cuda_ad_rgb variant does not load here .no CUDA device"):
            RenderPool(1).start()


def _cuda_loads() -> bool:
    import subprocess
    import sys

    check = "import drjit as dr, sys; sys.exit(0 if dr.has_backend(dr.JitBackend.CUDA) else 1)"
    return subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


def test_up_and_front_turn_the_asset_into_the_render_frame(assets, tmp_path):
    """The .ply head turned to z-up and facing -y, rendered with --up z --front -y, gives the frames of
    the y-up original."""
    mesh = trimesh.load(assets["ply"], process=False)
    turned = mesh.copy()
    turned.vertices = np.column_stack([mesh.vertices[:, 0], -mesh.vertices[:, 2], mesh.vertices[:, 1]])
    turned.export(tmp_path / "turned.ply")
    azimuths = np.array([-90.0, 0.0])
    original = render_frames(load_asset(assets["ply"]), azimuths, SMALL)
    rotated = render_frames(load_asset(tmp_path / "turned.ply", up="z", front="-y"), azimuths, SMALL)
    assert np.abs(original.astype(int) - rotated.astype(int)).max() <= 2
    with pytest.raises(ValueError, match="along the up axis"):
        RenderConfig(up="z", front="+z")


def test_bad_assets_are_named_and_the_batch_goes_on(assets, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.glb").write_text("not a mesh")
    (bad / "points.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                    "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    (bad / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    (bad / "splat.ply").write_text("ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                                   "property float y\nproperty float z\nproperty float f_dc_0\nproperty float opacity\n"
                                   "property float scale_0\nproperty float rot_0\nend_header\n")
    results = render_assets([bad, assets["ply"]], tmp_path / "out", SMALL, progress=False)
    errors = {r.source.rsplit("/", 1)[1]: r.error for r in results}
    assert "no triangles" in errors["points.ply"] and "points.ply" in errors["points.ply"]
    assert "non-finite" in errors["nan.obj"] or "cannot read" in errors["nan.obj"]
    assert "Gaussian-splat" in errors["splat.ply"] and "not supported" in errors["splat.ply"]
    assert "cannot read the mesh" in errors["text.glb"] or "no triangles" in errors["text.glb"]
    assert errors["ply_head.ply"] is None and (tmp_path / "out" / "ply_head.mp4").is_file()
    with pytest.raises(AssetError, match="no such asset file"):
        load_asset(tmp_path / "gone.glb")


def test_a_missing_texture_renders_untextured_with_a_note(assets, tmp_path):
    import shutil

    folder = tmp_path / "obj"
    shutil.copytree(assets["obj"].parent, folder)
    for image in folder.glob("*.png"):
        image.unlink()
    rendered = render_asset(folder / "obj_head.obj", tmp_path / "out", SMALL)
    assert any("missing: rendered untextured" in note for note in rendered.notes)
    frames, _ = read_video(rendered.video)
    assert _red(frames[0]) < 0.005  # the red came from the texture


def test_resume_skips_complete_videos(assets, tmp_path):
    first = render_assets([assets["ply"]], tmp_path, SMALL, progress=False)
    again = render_assets([assets["ply"]], tmp_path, SMALL, resume=True, progress=False)
    assert not first[0].skipped and again[0].skipped and again[0].video == first[0].video


def test_score_renders_only_the_frames_the_model_reads(assets, tmp_path, monkeypatch):
    """The demo checkpoint reads 8 frames at 112x112 (4 fps, 12544 pixels): of a 16-frame 512x512
    protocol video, `lmmeval score` renders those 8, at twice the side the model reads, at the
    azimuths and with the seeds of their frames in the video, and writes no video."""
    from lmmeval.orbit import orbit_azimuths

    asked = []
    real = RenderPool.render

    def spy(self, head, azimuths, size, spp, seeds=None, progress=None):
        asked.append((np.asarray(azimuths, float), size, spp, None if seeds is None else np.asarray(seeds)))
        return real(self, head, azimuths, size, spp, seeds=seeds, progress=progress)

    monkeypatch.setattr(RenderPool, "render", spy)
    out = tmp_path / "r.jsonl"
    argv = ["score", str(assets["ply"]), "--out", str(out), "--render-fps", "8", "--render-seconds", "2",
            "--render-spp", "2", "--device", "cpu", "-q"]
    assert main(argv) == 0
    row = json.loads(out.read_text())
    assert row["path"] == str(assets["ply"].resolve()) and row["error"] is None and 0 <= row["quality"] <= 100
    assert row["notes"][0].startswith("rendered only the 8 frames the model reads, at 224x224 px")
    [(azimuths, size, spp, seeds)] = asked
    assert (len(azimuths), size, spp) == (8, 224, 2)
    assert np.array_equal(seeds, [0, 2, 4, 6, 9, 11, 13, 15])  # 8 of 16 frames, evenly over 1.875 s
    assert np.allclose(azimuths, orbit_azimuths(16)[seeds])
    assert not (tmp_path / "r.jsonl.renders").exists()


@pytest.fixture(scope="module")
def demo_assessor():
    from lmmeval.inference.assessor import Assessor

    return Assessor.from_pretrained(device="cpu")


@pytest.mark.slow
def test_the_frames_the_model_reads_score_as_the_whole_video_does(assets, demo_assessor, tmp_path):
    """The sampled path against the whole protocol video (rendered, H.264, decoded, sampled): the
    same frames read, saliency at the video's size, scores within 1 MOS point, the same levels
    (research/render_agreement.py measures it on more meshes at the paper's protocol)."""
    from lmmeval.render.sampled import sampled_video

    config = RenderConfig(size=256, fps=8, seconds=2, spp=4, workers=2)
    sampling, geometry = demo_assessor.config.sampling, demo_assessor.parts.geometry
    video = render_asset(assets["ply"], tmp_path, config).video
    with RenderPool(2) as pool:
        sampled = demo_assessor.assess(sampled_video(assets["ply"], config, sampling, geometry, pool))
    whole = demo_assessor.assess(str(video))
    assert sampled.ok and whole.ok
    assert sampled.frame_indices == whole.frame_indices and len(whole.frame_indices) == 8
    assert sampled.saliency.shape == whole.saliency.shape == (8, 256, 256)
    for dim in ("quality", "authenticity"):
        assert abs(getattr(sampled, dim) - getattr(whole, dim)) <= 1.0
        assert getattr(sampled, f"{dim}_level") == getattr(whole, f"{dim}_level")


@pytest.mark.slow
def test_readme_example_heads_render_and_make_a_contact_sheet(tmp_path):
    """README "Rendering 3D assets": tools/make_example_heads.py, `lmmeval render`, the contact sheet."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "tools" / "make_example_heads.py"), str(tmp_path / "heads")], check=True,
                   capture_output=True)
    heads = sorted(p.name for p in (tmp_path / "heads").glob("*.ply"))
    assert heads == ["head_blotchy.ply", "head_clean.ply", "head_low_poly.ply", "head_rough.ply"]
    clean, rough = (load_asset(tmp_path / "heads" / f"head_{n}.ply") for n in ("clean", "rough"))
    assert clean.faces.shape == rough.faces.shape and not np.allclose(clean.vertices, rough.vertices)
    argv = ["render", str(tmp_path / "heads"), "--out", str(tmp_path / "r"), "--size", "48", "--fps", "2",
            "--seconds", "1", "--spp", "1", "-q"]
    assert main(argv) == 0
    sheet = tmp_path / "sheet.png"
    subprocess.run([sys.executable, str(root / "data_prep" / "contact_sheet.py"), "--rendered", str(tmp_path / "r"),
                    str(sheet)], check=True, capture_output=True)
    with Image.open(sheet) as image:
        width, height = image.size
    assert width == 3 * 48 and height == 4 * (48 + 16)  # four rows of -45/0/+45 views, each with its label


def test_assets_sharing_a_name_get_their_own_videos(assets, tmp_path):
    """Generators often write every asset as model.glb in its own folder: each gets its own video,
    named by its path below the shared folder; head.obj beside head.ply keeps the suffix."""
    import shutil

    from lmmeval.render import output_names

    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(assets["ply"], tmp_path / "in" / sub / "model.ply")
    files = [tmp_path / "in" / "a" / "model.ply", tmp_path / "in" / "b" / "model.ply"]
    assert output_names(files) == {files[0]: "a/model", files[1]: "b/model"}
    beside = [tmp_path / "x" / "head.obj", tmp_path / "x" / "head.ply", tmp_path / "x" / "other.glb"]
    assert list(output_names(beside).values()) == ["head_obj", "head_ply", "other"]
    assert list(output_names([assets["glb"], assets["ply"]]).values()) == ["glb_head", "ply_head"]
    done = render_assets([tmp_path / "in"], tmp_path / "out", SMALL, progress=False)
    assert [r.video for r in done] == [tmp_path / "out" / "a" / "model.mp4", tmp_path / "out" / "b" / "model.mp4"]
    assert all(r.video.is_file() and r.views.is_file() for r in done)


# --- Interrupts, atomic outputs, texture memory, render keys -------------------------------------


@pytest.mark.slow
def test_a_frame_that_sigint_cut_short_is_refused(assets):
    """Mitsuba catches SIGINT while it renders, whatever handler was set (here: ignore it, as the
    render workers do), and may return the frame as far as it got, dark where it had not reached:
    such a frame raises instead. Signals late in a frame (an early one Mitsuba lets pass) until one
    cuts a frame short; every frame that does come back is the whole frame."""
    import os
    import signal
    import threading
    import time

    from lmmeval.render.scene import FrameInterrupted, FrameRenderer

    renderer = FrameRenderer(load_asset(assets["ply"]), 128, 32, "scalar_rgb")
    start = time.monotonic()
    whole = renderer.render(0.0).astype(int)
    took = time.monotonic() - start
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    refused = 0
    try:
        for share in (0.8, 0.7, 0.9, 0.6, 0.85, 0.75, 0.95, 0.65):  # of a frame's time; it varies with the load
            timer = threading.Timer(share * took, os.kill, (os.getpid(), signal.SIGINT))
            start = time.monotonic()
            timer.start()
            try:
                frame = renderer.render(0.0)
            except FrameInterrupted as err:
                assert "interrupted" in str(err)
                refused += 1
                break
            else:
                assert np.abs(frame.astype(int) - whole).max() <= 1, "a frame cut short came back"
                took = time.monotonic() - start
            finally:
                timer.cancel()
                timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert refused


# Frames of the LLVM variant, each with a SIGINT at a random moment in it (in a process of its own:
# Mitsuba's LLVM render deadlocks now and then on a SIGINT, about once in a thousand).
_LLVM_SIGNALS = """
import json, os, signal, sys, threading, time
import numpy as np
from lmmeval.render.assets import load_asset
from lmmeval.render.scene import FrameInterrupted, FrameRenderer
renderer = FrameRenderer(load_asset(sys.argv[1]), 64, 4, "llvm_ad_rgb")
whole = renderer.render(0.0).astype(int)
start = time.monotonic()
for _ in range(10):
    renderer.render(0.0)
took = (time.monotonic() - start) / 10
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the render workers had it
rng, counts = np.random.default_rng(int(sys.argv[2])), {"refused": 0, "returned": 0, "cut": 0}
for _ in range(60):
    timer = threading.Timer(rng.uniform(0, took), os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        frame = renderer.render(0.0)
    except FrameInterrupted:
        counts["refused"] += 1
    else:
        counts["returned"] += 1
        counts["cut"] += int(np.abs(frame.astype(int) - whole).max() > 1)
    timer.join()
print(json.dumps(counts))
"""


@pytest.mark.slow
@pytest.mark.skipif(not _llvm_loads(), reason="no libLLVM loads here")
def test_the_llvm_variant_refuses_a_frame_that_heard_sigint_and_never_returns_a_cut_one(assets):
    """The LLVM variant heeds SIGINT only while Mitsuba traces a pass (a millisecond or so; the
    kernels run after, whole): of small frames each with a SIGINT somewhere in it, those Mitsuba
    heard are refused (should_stop), and every frame that comes back is whole."""
    import subprocess
    import sys

    # Where the SIGINTs land depends on the machine's load (on a busy one a run may see none heard);
    # runs with other timings are added up until both outcomes were seen. No run may return a cut frame.
    total, deadlocks = {"refused": 0, "returned": 0, "cut": 0}, 0
    for seed in range(5):
        try:
            done = subprocess.run([sys.executable, "-c", _LLVM_SIGNALS, str(assets["ply"]), str(seed)],
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:  # a run that deadlocked (Mitsuba's) is run again
            deadlocks += 1
            continue
        assert done.returncode == 0, done.stderr[-2000:]
        counts = json.loads(done.stdout[done.stdout.rindex('{"refused"'):])  # after Mitsuba's own warnings
        assert counts["cut"] == 0, counts
        total = {key: total[key] + counts[key] for key in total}
        if total["refused"] > 0 and total["returned"] > 0:
            return
    if deadlocks >= 3:
        pytest.fail(f"Mitsuba's LLVM render deadlocked on a SIGINT {deadlocks} times out of 5")
    pytest.fail(f"over 5 runs of 60 frames, SIGINT never refused a frame or none came back: {total}")


def test_a_sigint_sent_to_a_render_worker_changes_nothing(assets):
    """A render worker blocks SIGINT: SIGINTs sent to it while it renders neither cut, refuse nor
    hang its frames (Mitsuba's own handler never runs there); the parent stops it with SIGTERM."""
    import os
    import signal
    import threading

    head = load_asset(assets["ply"])
    azimuths = np.linspace(-90, 90, 24)
    with RenderPool(1) as pool:
        reference = pool.render(head, azimuths, 64, 8)
        done = threading.Event()

        def storm():
            while not done.wait(0.001):
                os.kill(pool.pids[0], signal.SIGINT)

        sender = threading.Thread(target=storm)
        sender.start()
        try:
            frames = pool.render(head, azimuths, 64, 8)
        except KeyboardInterrupt:  # the worker answered "interrupted": Mitsuba's handler took a SIGINT
            pytest.fail("a SIGINT sent to the render worker interrupted its frame")
        finally:
            done.set()
            sender.join()
    assert np.array_equal(frames, reference)


def test_an_interrupt_that_a_library_swallows_still_stops_the_asset(assets, tmp_path, monkeypatch):
    """trimesh catches BaseException in places (a Ctrl-C while it computes normals becomes a warning):
    the signal is noted and the render stops after loading, leaving no file."""
    import os
    import signal
    import time

    import lmmeval.render as render

    real = render.load_asset

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt, raised here ...
            time.sleep(1)
        except BaseException:  # ... and swallowed, as trimesh does
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "load_asset", swallowing)
    with pytest.raises(KeyboardInterrupt):
        render_asset(assets["ply"], tmp_path, SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output", ["video", "views"])
def test_an_interrupted_write_leaves_neither_output_nor_a_partial_file(assets, tmp_path, monkeypatch, output):
    """Interrupted while the video (or the views image) is being written: no file of the asset is
    left, under its final name or a temporary one (the views image, written first, goes too)."""
    from PIL import Image

    import lmmeval.io.media as media

    def interrupted(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    if output == "video":
        monkeypatch.setattr(media, "write_video", interrupted)
    else:
        monkeypatch.setattr(Image.Image, "save", lambda self, path, *a, **k: interrupted(path))
    with pytest.raises(KeyboardInterrupt):
        render_asset(assets["ply"], tmp_path, SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_render_worker_that_dies_fails_that_render_and_the_pool_recovers(assets):
    """A worker killed (out of memory, a crash in Mitsuba): the render in hand fails with a clear
    error (an asset error in `lmmeval render`); the pool starts new workers for the next."""
    import os
    import signal

    from lmmeval.render.pool import RenderError, RenderPool

    head = load_asset(assets["ply"])
    with RenderPool(workers=1) as pool:
        first = pool.render(head, [0.0], 32, 1)
        os.kill(pool.pids[0], signal.SIGKILL)
        with pytest.raises(RenderError, match="ended unexpectedly"):
            pool.render(head, [0.0], 32, 1)
        assert np.array_equal(pool.render(head, [0.0], 32, 1), first)  # new workers, the same frame


def _srgb_reference(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def test_srgb8_table_matches_the_transfer_function():
    from lmmeval.render.assets import srgb8_to_linear

    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    linear = srgb8_to_linear(values)
    assert linear.dtype == np.float32 and linear.shape == (16, 16)
    assert np.allclose(linear.ravel(), [_srgb_reference(v) for v in range(256)], atol=1e-7)
    with pytest.raises(ValueError, match="uint8"):
        srgb8_to_linear(values.astype(np.float32))


def _huge_texture_obj(folder):
    """An .obj head with an 8000x8000 texture: skin, the right side (u < 0.2) red. A PNG of a few
    colours: small on disk, 8000x8000 once decoded."""
    from PIL import Image, ImageDraw

    folder.mkdir()
    mesh, uv = _egg()
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", (8, 8), SKIN))
    mesh.export(folder / "head.obj")  # head.obj, material.mtl, material_0.png
    texture = Image.new("RGB", (8000, 8000), SKIN)
    ImageDraw.Draw(texture).rectangle([0, 0, 1599, 7999], fill=RED)
    texture.save(folder / "material_0.png", compress_level=1)
    return folder / "head.obj"


@pytest.mark.slow
def test_a_huge_texture_is_capped_before_conversion_and_noted(tmp_path):
    """An 8000x8000 texture loads as a 2048x2048 float32 one, with a note, in well under 400 MB more
    than a small mesh takes (float64 arrays of it took 7.8 GB); its colours survive the downscale.
    Loaded in a process of its own, whose peak memory is its own."""
    import subprocess
    import sys

    obj = _huge_texture_obj(tmp_path / "huge")
    small = tmp_path / "small.ply"
    _egg()[0].export(small)
    script = ("import json, resource, sys\n"
              "from lmmeval.render.assets import load_asset\n"
              "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # fail fast, not swap\n"
              "load_asset(sys.argv[2])\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "head = load_asset(sys.argv[1])\n"
              "grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
              "t = head.texture\n"
              "print(json.dumps({'grew_mb': grew, 'shape': t.shape, 'dtype': str(t.dtype), 'notes': head.notes,\n"
              "                  'red': t[1000, 100].tolist(), 'skin': t[1000, 1500].tolist()}))\n")
    run = subprocess.run([sys.executable, "-c", script, str(obj), str(small)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    assert loaded["grew_mb"] < 400
    assert loaded["shape"] == [2048, 2048, 3] and loaded["dtype"] == "float32"
    assert loaded["notes"] == ["texture 8000x8000 downscaled to 2048x2048 (textures are capped at 2048 px a side)"]
    assert np.allclose(loaded["red"], [1, 0, 0], atol=1e-3)
    assert np.allclose(loaded["skin"], [_srgb_reference(c) for c in SKIN], atol=1e-3)


def test_referenced_files_of_each_format(assets, tmp_path):
    from lmmeval.render import referenced_files

    obj = assets["obj"]
    assert referenced_files(obj) == [(obj.parent / "material.mtl").resolve(), (obj.parent / "material_0.png").resolve()]
    assert referenced_files(assets["glb"]) == [] and referenced_files(assets["ply"]) == []
    # A .gltf with external files: a buffer whose name is URI-encoded, an image, an embedded buffer,
    # and a missing image (not listed).
    (tmp_path / "head data.bin").write_bytes(b"\0" * 12)
    (tmp_path / "skin.png").write_bytes(b"png")
    (tmp_path / "head.gltf").write_text(json.dumps({
        "asset": {"version": "2.0"},
        "buffers": [{"uri": "head%20data.bin", "byteLength": 12}, {"uri": "data:application/octet-stream;base64,AA=="}],
        "images": [{"uri": "skin.png"}, {"uri": "gone.png"}]}))
    assert referenced_files(tmp_path / "head.gltf") == [(tmp_path / "head data.bin").resolve(),
                                                       (tmp_path / "skin.png").resolve()]
    # .mtl maps with options and a name with spaces; a .ply's TextureFile comment.
    (tmp_path / "my skin.jpg").write_bytes(b"jpg")
    (tmp_path / "bump.png").write_bytes(b"png")
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd -s 1 1 1 -o 0 0 my skin.jpg\nbump -bm 0.5 bump.png\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert referenced_files(tmp_path / "m.obj") == [(tmp_path / p).resolve() for p in ("m.mtl", "my skin.jpg",
                                                                                        "bump.png")]
    (tmp_path / "t.ply").write_text("ply\nformat ascii 1.0\ncomment TextureFile skin.png\nelement vertex 0\n"
                                    "end_header\n")
    assert referenced_files(tmp_path / "t.ply") == [(tmp_path / "skin.png").resolve()]
    assert referenced_files(tmp_path / "missing.obj") == []


def test_render_key_follows_the_content_and_the_pixel_settings(assets, tmp_path):
    import dataclasses
    import shutil

    from lmmeval.render import render_key

    folder = tmp_path / "obj"
    shutil.copytree(assets["obj"].parent, folder)
    obj = folder / "obj_head.obj"
    llvm = "llvm_ad_rgb"
    key = render_key(obj, SMALL, llvm)
    assert len(key) == 64 and int(key, 16) >= 0 and key == render_key(obj, SMALL, llvm)
    # Where and with how many processes it renders: the same pixels, the same key.
    assert render_key(obj, dataclasses.replace(SMALL, workers=3, gpu=False), llvm) == key
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    assert render_key(moved / "obj_head.obj", SMALL, llvm) == key
    # The renderer's family: scalar, LLVM and CUDA frames differ slightly; one family's variants do not.
    families = {render_key(obj, SMALL, v) for v in ("scalar_rgb", llvm, "cuda_ad_rgb")}
    assert len(families) == 3 and key in families and render_key(obj, SMALL, "llvm_ad_mono") == key
    # Every setting that changes the pixels changes it.
    changed = {"size": 64, "fps": 5, "seconds": 3.0, "orbit_deg": 120.0, "spp": 3, "front": "+x"}
    keys = {name: render_key(obj, dataclasses.replace(SMALL, **{name: value}), llvm) for name, value in changed.items()}
    keys["up"] = render_key(obj, dataclasses.replace(SMALL, up="z", front="+x"), llvm)  # the front as above: up alone
    assert key not in keys.values() and len(set(keys.values())) == len(changed) + 1
    assert render_key(obj, dataclasses.replace(SMALL, seconds=2), llvm) == key  # 2 and 2.0: the same setting
    # So does a changed texture, .mtl or mesh.
    texture = folder / "material_0.png"
    original = texture.read_bytes()
    _texture().transpose(0).save(texture)
    assert render_key(obj, SMALL, llvm) != key
    texture.write_bytes(original)
    assert render_key(obj, SMALL, llvm) == key
    (folder / "material.mtl").write_text((folder / "material.mtl").read_text() + "\n# edited\n")
    assert render_key(obj, SMALL, llvm) != key
    with pytest.raises(OSError, match="gone.obj"):
        render_key(tmp_path / "gone.obj", SMALL, llvm)
