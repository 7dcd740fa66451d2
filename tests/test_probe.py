"""The backbone probe: config checks, and a short run per encoder family on the small synthetic set."""

import numpy as np
import pytest

from lmmeval.model.configuration import SamplingConfig
from lmmeval.model.presets import geometry
from lmmeval.data.manifest import load_manifest
from lmmeval.training.encoders import QwenVisionEncoder, decode
from research.probe import ProbeConfig, run_probe

SAMPLING = SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 112)
GEOMETRY = geometry("tiny")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="encoder must be one of"):
        ProbeConfig(encoder="vgg")
    with pytest.raises(ValueError, match="epochs"):
        ProbeConfig(epochs=0)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["qwen-vit", "mobilenet_v3_small"])
def test_probe_trains_and_reports_each_epoch(prepared_manifest, encoder):
    records = load_manifest(prepared_manifest)
    train, test = [r for r in records if r.fold != 0], [r for r in records if r.fold == 0]
    config = ProbeConfig(encoder=encoder, epochs=4, batch_size=8, lr=3e-3)
    out = run_probe(train, test, SAMPLING, GEOMETRY, config, progress=False)
    assert (out["n_train"], out["n_test"]) == (len(train), len(test))
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3, 4]
    assert out["history"][-1]["train_loss"] < 0.9 * out["history"][0]["train_loss"]  # it trains
    assert all({"quality_srcc", "authenticity_srcc", "exact_set_accuracy"} <= set(h) for h in out["history"])
    assert out["parameters"] > 1e5


def test_heldout_metrics_against_scipy_and_a_hand_worked_exact_set():
    """The numbers each epoch reports: SRCC as scipy computes it, None for a constant prediction
    (no ranking), exact-set accuracy over the labelled records only (two of three right here)."""
    import torch
    from scipy.stats import spearmanr

    from lmmeval.training.encoders import heldout_metrics

    quality = torch.tensor([10.0, 40.0, 20.0, 30.0])
    logits = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [5.0, 5.0]])

    def model(x):  # the probe's interface: (scores (n, 2), category logits (n, C)) for a slice of inputs
        return torch.stack([quality[x], torch.full_like(quality[x], 50.0)], 1), logits[x]

    model.eval = lambda: None
    mos = torch.tensor([[1.0, 5.0], [4.0, 6.0], [3.0, 7.0], [2.0, 8.0]])
    cats = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [float("nan")] * 2])  # the last: not labelled
    out = heldout_metrics(model, {"x": torch.arange(4)}, mos, cats)
    assert out["quality_srcc"] == pytest.approx(spearmanr(quality.numpy(), mos[:, 0].numpy())[0])
    assert out["authenticity_srcc"] is None
    assert out["exact_set_accuracy"] == pytest.approx(2 / 3)


def test_qwen_encoder_sees_the_processor_grid(prepared_manifest):
    """The Qwen probe is fed the processor's patches: 8 frames of 112 x 112 -> a (4, 8, 8) grid."""
    records = load_manifest(prepared_manifest)[:2]
    encoder = QwenVisionEncoder.random(wide=False)
    inputs = encoder.inputs(decode(records, SAMPLING, GEOMETRY))
    assert inputs["grid"].tolist() == [[4, 8, 8]] * 2
    assert inputs["pixels"].shape == (2, 4 * 8 * 8, 3 * 2 * 14 * 14)
    features = encoder(**inputs)
    assert features.shape == (2, 128) and np.isfinite(features.detach().numpy()).all()


def test_baseline_trains_and_gives_valid_outputs(prepared_manifest):
    """The cross-validation baseline (MobileNetV3-S frames): training moves its weights from the
    seeded initialisation; outputs are MOS-scale scores and valid category lists."""
    import torch

    from lmmeval.training.baseline import CATEGORIES, BaselineConfig, FrameCNN, predict_baseline, train_baseline
    from lmmeval.labels import NO_DISTORTION

    records = load_manifest(prepared_manifest)[:16]
    config = BaselineConfig(frames=2, epochs=2, batch_size=8)
    model = train_baseline(records, SAMPLING, GEOMETRY, config)
    torch.manual_seed(config.seed)
    initial = FrameCNN().scores.weight
    assert not torch.allclose(model.scores.weight, initial)
    scores, categories = predict_baseline(model, records, SAMPLING, GEOMETRY, config)
    assert scores.shape == (16, 2) and ((0 <= scores) & (scores <= 100)).all()
    assert all(c == [NO_DISTORTION] or set(c) <= set(CATEGORIES) for c in categories)


def test_plot_curves_writes_a_png_with_undefined_points(tmp_path):
    """An epoch whose SRCC is undefined (constant prediction) is a gap, not an error."""
    from lmmeval.training.encoders import plot_curves

    row = {"quality_srcc": 0.5, "authenticity_srcc": None, "exact_set_accuracy": 0.2}
    plot_curves({"a": [{"epoch": 1, **row}, {"epoch": 2, **row}]}, tmp_path / "c.png", "held-out ")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_lowers_a_known_loss_and_reports_each_epoch(capsys):
    """A least-squares problem with a known exact solution: the shared loop drives the loss toward
    zero, records one history row per epoch, and prints one summary line per epoch."""
    import torch

    from lmmeval.training.encoders import fit

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])  # exact linear target: the optimum has zero loss
    model = torch.nn.Linear(3, 1, bias=False)

    def loss(idx):
        return torch.nn.functional.mse_loss(model(x[idx]).squeeze(1), y[idx])

    history = fit(model, 64, loss, epochs=30, batch_size=16, lr=0.1, weight_decay=0.0, seed=0, desc="lsq",
                  after_epoch=lambda: {"quality_srcc": 0.5, "authenticity_srcc": None})
    assert [h["epoch"] for h in history] == list(range(1, 31))
    assert history[-1]["train_loss"] < 0.01 * history[0]["train_loss"]
    out = capsys.readouterr().out  # tqdm.write: above the bar, on stdout
    assert "lsq epoch 1/30: train loss " in out and "lsq epoch 30/30" in out
    assert "quality_srcc 0.500, authenticity_srcc n/a" in out
