#!/usr/bin/env bash
# make gpu-check: the real 7B shape on one GPU in one run of under 10 minutes (an H100 or H200).
#
#   make gpu-wheels          # here, with network: what the GPU machine lacks, as wheels in .whl/
#   bash tools/gpu_check.sh  # there, from the repository root (.whl/ carried along)
#
# 1. installs the carried wheels (qwen-vl-utils, decord, av, segmentation-models-pytorch, deepspeed
#    and its own needs: tools/gpu_wheels.txt) into /tmp/site, nothing else;
# 2. the bench at 7B shape with random weights: scores only and with the distortion answer,
#    transformers' window loop and the batched-window vision path, batch 1/4/8, 16 frames of
#    448x448 and of 504x504 (and one stage-2 step);
# 3. pytest -m gpu;
# 4. ten steps of each training stage at 7B shape under ZeRO-2 (seconds and peak memory per step);
# then writes docs/results/gpu_check/7b_<gpu>.json and prints a summary.
#
# Every knob is an environment variable, so the same script runs end to end on a CPU at the tiny
# preset's size (what the test suite checks: PRESET=tiny DEVICE=cpu SMALL=1 WHEELS=none).
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${PRESET:-7b}          # the shape (lmmeval/model/presets/)
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS:-.whl}        # folder of carried wheels, or "none"
SMALL=${SMALL:-}              # non-empty: tiny sizes everywhere (a CPU check of this script)
WORK=${WORK:-runs/gpu-check}
PY=${PYTHON:-python3}

if [ "$WHEELS" != none ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export FORCE_QWENVL_VIDEO_READER=decord TORCH_EXTENSIONS_DIR=$PWD/.torch_extensions
mkdir -p "$WORK"
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).split()[-1].lower() if torch.cuda.is_available() else 'cpu')")
RESULT=${RESULT:-docs/results/gpu_check/${PRESET}_${GPU}.json}
echo "gpu-check: preset $PRESET on $DEVICE ($GPU), work folder $WORK, result $RESULT"

if [ -n "$SMALL" ]; then  # tiny sizes: the script's plumbing, not its numbers
  RENDER="--videos 2 --size 112 --fps 8 --seconds 2 --workers 1"; BATCHES=2; SIDES="112"; STEPS=2; N=8
else                       # 8 renders of the paper's 512x512 at 8 fps over 4 s: 16 frames at 4 fps
  RENDER="--videos 8 --size 512 --fps 8 --seconds 4 --workers $(nproc)"; BATCHES=1,4,8; SIDES="448 504"; STEPS=10; N=16
fi

# 2. The bench, once per frame size (the stage-2 step with the first).
train_steps=3
for side in $SIDES; do
  timeout 300 "$PY" -m research.bench --preset "$PRESET" --device "$DEVICE" $RENDER --sample-fps 4 \
    --max-frames 16 --max-pixels $((side * side)) --batch-sizes "$BATCHES" --repeats 1 --train-steps $train_steps \
    --out "$WORK/bench_$side.json" || echo "gpu-check: the bench at ${side}x${side} failed or ran out of time"
  train_steps=0
done

# 3. The GPU tests (skipped, and reported so, without CUDA).
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ > "$WORK/pytest_gpu.txt" 2>&1 \
  || echo "gpu-check: pytest -m gpu failed (see $WORK/pytest_gpu.txt)"
tail -n 3 "$WORK/pytest_gpu.txt"

# 4. Ten steps of each stage at the preset's shape under ZeRO-2, on a small synthetic study.
"$PY" -m lmmeval.cli synth "$WORK/raw" --n $N --seed 5 --size 112 --fps 8 --seconds 2 --workers 2 -q --overwrite
"$PY" -m lmmeval.cli prepare "$WORK/raw" "$WORK/prepared" --folds 2 -q --overwrite
final=""
for s in 1 2 3; do
  script=$(ls train/stage${s}_*.py)
  sets=(manifest="$WORK/prepared/manifest.jsonl" output_dir="$WORK/stage$s" split=null steps=$STEPS log_every=1
        save_every=1000 device="$DEVICE")
  if [ $s -eq 1 ]; then
    sets+=(base="preset:$PRESET")
    if [ -n "$SMALL" ]; then sets+=("sampling={fps: 4.0, max_frames: 8, max_pixels: 12544, min_pixels: 3136}"); fi
  else
    sets+=(init_from="$final")
  fi
  rm -rf "$WORK/stage$s"
  timeout 240 "$PY" "$script" --config configs/qwen7b/stage$s.yaml --deepspeed configs/deepspeed/zero2.json \
    --set "${sets[@]}" || { echo "gpu-check: stage $s failed or ran out of time"; break; }
  final="$WORK/stage$s/final"
done

# 5. One JSON of everything, and a summary.
"$PY" - "$WORK" "$GPU" "$PRESET" "$RESULT" <<'EOF'
import csv, json, sys
from pathlib import Path

work, gpu, preset, target = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
out = {"gpu": gpu, "preset": preset, "bench": {}, "stages": {}, "pytest_gpu": None}
for path in sorted(work.glob("bench_*.json")):
    out["bench"][path.stem.split("_")[1]] = json.loads(path.read_text())
if (work / "pytest_gpu.txt").exists():
    out["pytest_gpu"] = (work / "pytest_gpu.txt").read_text().strip().splitlines()[-1:]
for s in (1, 2, 3):
    log = work / f"stage{s}" / "log.csv"
    if log.exists():
        rows = list(csv.DictReader(log.open()))
        seconds = [float(r["seconds"]) for r in rows]
        out["stages"][s] = {"steps": len(rows), "seconds_per_step": (seconds[-1] - seconds[0]) / max(1, len(rows) - 1),
                            "peak_gib": max(float(r["peak_gib"]) for r in rows), "last_loss": float(rows[-1]["loss"])}
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps(out, indent=2))
print(f"wrote {target}")
for side, b in out["bench"].items():
    for r in b["assess"]:
        print(f"  {side}px {r['vision_path']:<22} {r['mode']:<26} batch {r['batch_size']}: {r['ms_per_video']:.1f} ms/video "
              f"({r['ratio_to_floor']:.1f}x the FLOP floor), peak {r['peak_memory_gib']:.1f} GiB")
    if b.get("train_stage2"):
        t = b["train_stage2"]
        print(f"  {side}px stage-2 step, batch {t['batch_size']}: {t['step_s'] * 1000:.0f} ms, peak {t['peak_memory_gib']:.1f} GiB")
for s, r in out["stages"].items():
    print(f"  stage {s} under ZeRO-2: {r['steps']} steps, {r['seconds_per_step']:.2f} s/step, peak {r['peak_gib']:.1f} GiB")
print(f"  pytest -m gpu: {out['pytest_gpu']}")
EOF
