r"""make check-7b: the exact Qwen2.5-VL-7B shape, in bfloat16 on a CPU, through the project's own commands.

Random weights at the 7B's shape (base "preset:7b": 8,292,166,656 parameters) go through what a user
runs: `lmmeval score` on a short video (fresh heads, --untrained), a stage-1-shaped checkpoint (a
LoRA adapter on that base), one stage-2 step of `train/stage2_regress.py` with the 7B config
(gradient checkpointing on), then the trained checkpoint loaded, scored, saved elsewhere, loaded
again and scored again: the two scores must be identical. Each step runs as its own process (its
memory is freed when it ends); its wall time and peak resident memory are recorded.

    python tools/check_7b.py --out docs/results/check_7b/check_7b.json  # about 22 GB of memory, 15 minutes on 2 cores
    python tools/check_7b.py --preset tiny --work /tmp/c                          # the same plumbing in a minute

Needs /usr/bin/time for the peak memory of each step (else it is reported as null).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = "{fps: 2.0, max_frames: 4, max_pixels: 50176, min_pixels: 3136}"  # 4 frames of 224x224

# Run in a child process: load the stage-2 checkpoint, score, save elsewhere, load that, score again.
RELOAD = """
import gc, json, sys
from lmmeval import Assessor
ckpt, copy, video = sys.argv[1:4]
first = Assessor.from_pretrained(ckpt, device="cpu", dtype="bfloat16")
a = first.assess(video, saliency=False)
first.save_pretrained(copy)
del first; gc.collect()
b = Assessor.from_pretrained(copy, device="cpu", dtype="bfloat16").assess(video, saliency=False)
print(json.dumps({"before": [a.quality, a.authenticity], "after": [b.quality, b.authenticity],
                  "identical": [a.quality, a.authenticity, a.level_probs] == [b.quality, b.authenticity, b.level_probs]}))
"""

# Run in a child process: the starting checkpoint of stage 2 (a fresh LoRA adapter on the base).
STAGE1_SHAPED = """
import sys
from lmmeval.model import factory
from lmmeval.model.configuration import LoraSettings, SamplingConfig
base, out = sys.argv[1:3]
model = factory.new_model(base, device="cpu", dtype="bfloat16", sampling=SamplingConfig(fps=2.0, max_frames=4,
                          max_pixels=50176))
factory.add_lora(model, LoraSettings(r=8, alpha=32, dropout=0.05, target_modules=r".*language_model.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"))
model.config.trained_stages = [1]
factory.save_model(model, out)
"""


def step(name: str, cmd: list[str], log: Path) -> dict:
    """Run one command; its wall time, peak resident memory (GiB) and exit status."""
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    print(f"check-7b: {name} ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(timer + cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result = {"step": name, "seconds": round(seconds, 1), "peak_rss_gib": round(int(peak[1]) / 2**20, 2) if peak else None,
              "exit_status": done.returncode, "log": str(log)}
    print(f"check-7b: {name}: {result['seconds']} s, peak {result['peak_rss_gib']} GiB, exit {done.returncode}",
          flush=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise SystemExit(f"check-7b: {name} failed (exit {done.returncode}); its output is in {log}; "
                         f"its last lines:\n{tail}")
    result["stdout"] = done.stdout
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="7b", help="the shape (default 7b; tiny checks the plumbing in a minute)")
    parser.add_argument("--work", default="runs/check-7b", help="working folder (cleared first)")
    parser.add_argument("--out", help="write the steps' numbers here (JSON)")
    args = parser.parse_args()
    work = (ROOT / args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    py, base = sys.executable, f"preset:{args.preset}"
    sys.path.insert(0, str(ROOT))
    from lmmeval.provenance import git_commit

    commit = git_commit()
    steps = [step("render a short study", [py, "-m", "lmmeval.cli", "synth", str(work / "raw"), "--n", "4", "--seed", "6",
                                           "--size", "224", "--fps", "8", "--seconds", "2", "-q"], work / "synth.log")]
    steps.append(step("prepare it", [py, "-m", "lmmeval.cli", "prepare", str(work / "raw"), str(work / "prepared"),
                                     "--folds", "2", "-q"], work / "prepare.log"))
    video = str(sorted((work / "raw" / "videos").glob("*.mp4"))[0])
    steps.append(step("score (untrained)", [py, "-m", "lmmeval.cli", "score", video, "--base", base, "--untrained",
                                            "--dtype", "bfloat16", "--device", "cpu", "--out", str(work / "untrained.jsonl"),
                                            "-q"], work / "score.log"))
    steps.append(step("stage-1-shaped checkpoint", [py, "-c", STAGE1_SHAPED, base, str(work / "stage1")],
                      work / "stage1.log"))
    steps.append(step("stage-2 step (gradient checkpointing)",
                      [py, "train/stage2_regress.py", "--config", "configs/qwen7b/stage2.yaml", "--set",
                       f"manifest={work / 'prepared' / 'manifest.jsonl'}", f"output_dir={work / 'stage2'}",
                       f"init_from={work / 'stage1'}", "split=null", "steps=1", "batch_size=1", "save_every=1000",
                       "log_every=1", "device=cpu", "dtype=bfloat16", "gradient_checkpointing=true"],
                      work / "stage2.log"))
    steps.append(step("load, score, save elsewhere, load, score",
                      [py, "-c", RELOAD, str(work / "stage2" / "final"), str(work / "copy"), video], work / "reload.log"))
    reload = json.loads(steps[-1]["stdout"].strip().splitlines()[-1])
    scored = (work / "untrained.jsonl").read_text().splitlines()
    result = {"command": "python tools/check_7b.py " + " ".join(sys.argv[1:]), "commit": commit, "preset": args.preset,
              "machine": f"{platform.machine()} CPU", "steps": [{k: v for k, v in s.items() if k != "stdout"} for s in steps],
              "untrained_score_row": json.loads(scored[0]) if scored else None,
              "reload": reload, "stage2_log": (work / "stage2" / "log.csv").read_text()}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    if not reload["identical"]:
        raise SystemExit(f"check-7b: scores changed across save and reload: {reload}")
    print(f"check-7b: done; save -> reload gave identical scores {reload['before']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
