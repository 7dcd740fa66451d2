"""`lmmeval render`: small heads in all three formats (a textured .glb, an .obj with its .mtl and
texture, a vertex-coloured .ply), each with a red marker on the head's right side, rendered at test
size on the Gen3DHF orbit; bad assets named; one mesh scored end to end through `lmmeval score`."""

from __future__ import annotations

import json

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("mitsuba")

from lmmeval.cli import main  # noqa: E402
from lmmeval.io.media import read_video, video_info  # noqa: E402
from lmmeval.render import RenderConfig, render_asset, render_assets, render_frames  # noqa: E402
from lmmeval.render.assets import AssetError, load_asset  # noqa: E402

SMALL = RenderConfig(size=48, fps=4, seconds=2, spp=2)  # 8 frames of 48x48
SKIN, RED = (210, 180, 160), (255, 0, 0)


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


def test_the_same_frames_every_run_and_whatever_the_workers(assets):
    head = load_asset(assets["glb"])
    azimuths = np.linspace(-90, 90, 6)
    one = render_frames(head, azimuths, SMALL)
    assert np.array_equal(one, render_frames(head, azimuths, SMALL))
    two = render_frames(head, azimuths, RenderConfig(**{**SMALL.__dict__, "workers": 2}))
    assert np.array_equal(one, two)


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


def test_score_renders_a_mesh_then_scores_it(assets, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = ["score", str(assets["ply"]), "--out", str(out), "--render-size", "48", "--render-fps", "4",
            "--render-seconds", "2", "--render-spp", "2", "--device", "cpu", "-q"]
    assert main(argv) == 0
    row = json.loads(out.read_text())
    assert row["path"] == str(assets["ply"].resolve()) and row["error"] is None and 0 <= row["quality"] <= 100
    assert row["notes"][0].startswith("rendered to ") and (tmp_path / "r.jsonl.renders" / "ply_head.mp4").is_file()


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
    width, height = Image.open(sheet).size
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
