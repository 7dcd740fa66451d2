r"""Train the embedded demo checkpoint end to end (what `make demo-checkpoint` runs).

1. render a synthetic training study (seed 0) and prepare it, or take --manifest (`make
   demo-checkpoint` passes the cross-validation study, which is that same render) and optionally
   --renders (the same study at other protocols, e.g. `make cv-renders`' 512-px render; `make
   demo-checkpoint` passes none, docs/results.md says why);
2. run the three stage scripts (tiny preset, configs/tiny/*.yaml, DeepSpeed ZeRO-2), stage 1
   starting from --base: by default the tiny base whose vision tower stage 0 pretrained
   (`make pretrain`), since the random tower learns next to nothing (docs/results.md);
3. copy the final assessor, with its base model inside, to lmmeval/assets/demo_checkpoint, and fit its
   out-of-distribution statistics on the training videos (`lmmeval calibrate-ood`); its
   training_data.json, written by the training recipe, records what each stage trained on (stage 0's
   corpus too, from the base's own record), which `lmmeval evaluate` checks evaluation sets against;
4. evaluate it on a separately rendered synthetic test study, writing
   docs/results/demo_checkpoint/report.md. The test study uses seed 2: seed 0 is the training
   study and seeds 1 and 3 stage 0's corpus, so no test video was seen by any stage.

    python train/build_demo_checkpoint.py [--base runs/pretrain/base | --base preset:tiny] \
        [--manifest runs/cv/prepared/manifest.jsonl [--renders MANIFEST ...] | --n 400] [--steps 1000] \
        [--work runs/demo]

Paths are relative to the repository root, wherever the script is started from.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {1: "train/stage1_instruct.py", 2: "train/stage2_regress.py", 3: "train/stage3_saliency.py"}
SMALL = ["--size", "112", "--fps", "8", "--seconds", "2", "--workers", "2", "-q"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", help="a prepared training study (default: render --n videos with seed 0)")
    parser.add_argument("--renders", nargs="+", default=[], metavar="MANIFEST",
                        help="with --manifest: the same study rendered at other protocols, trained on too")
    parser.add_argument("--n", type=int, default=400, help="training videos to render without --manifest (default 400)")
    parser.add_argument("--test-n", type=int, default=100, help="test videos, rendered with seed 2 (default 100)")
    parser.add_argument("--steps", type=int, default=1000, help="every stage's steps (default 1000, as `make cv`)")
    parser.add_argument("--base", default="runs/pretrain/base",
                        help="stage 1's base: a folder (default runs/pretrain/base, from `make pretrain`) or "
                             "'preset:tiny' for the random-init tiny base")
    parser.add_argument("--work", default="runs/demo", help="working folder (default runs/demo)")
    parser.add_argument("--out", default="lmmeval/assets/demo_checkpoint", help="where the checkpoint goes")
    args = parser.parse_args()
    os.chdir(ROOT)  # every path here, and in the commands run, is relative to the repository root
    py, work = sys.executable, Path(args.work)
    preset = args.base.startswith("preset:")
    if not preset and not (ROOT / args.base / "config.json").is_file():
        parser.error(f"--base {args.base}: no config.json there; run `make pretrain` first or pass --base preset:tiny")

    if args.renders and args.manifest is None:
        parser.error("--renders needs --manifest (the study they render)")
    for path in ([args.manifest] if args.manifest else []) + args.renders:
        if not Path(path).is_file():
            parser.error(f"{path}: no such manifest")
        if Path(path).resolve().is_relative_to(work.resolve()):
            parser.error(f"{path} lies inside --work {work}, which is cleared first")
    if work.exists():  # scratch space: a rebuild starts afresh (training refuses an earlier run's checkpoints)
        print(f"clearing {work}", flush=True)
        shutil.rmtree(work)
    manifest = args.manifest
    if manifest is None:
        run([py, "-m", "lmmeval.cli", "synth", str(work / "raw"), "--n", str(args.n), "--seed", "0", *SMALL])
        run([py, "-m", "lmmeval.cli", "prepare", str(work / "raw"), str(work / "prepared"), "-q"])
        manifest = str(work / "prepared" / "manifest.jsonl")
    for stage, script in SCRIPTS.items():
        sets = [f"manifest={manifest}", f"output_dir={work}/stage{stage}"]
        if stage == 1:
            sets.append(f"base={args.base}")
        else:
            sets.append(f"init_from={work}/stage{stage - 1}/final")
        sets.append(f"steps={args.steps}")
        if args.renders:
            sets.append(f"renders=[{', '.join(args.renders)}]")
        run([py, script, "--config", f"configs/tiny/stage{stage}.yaml", "--deepspeed", "configs/deepspeed/zero2.json",
             "--set", *sets])

    out = ROOT / args.out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(work / "stage3" / "final", out)
    if preset:  # the checkpoint carries its base: write the preset's (seed 0, as training built it)
        from lmmeval.model.presets import save_base

        save_base(out / "base", args.base.removeprefix("preset:"))
    else:
        shutil.copytree(ROOT / args.base, out / "base")
    config = json.loads((out / "config.json").read_text())
    config["base"] = "base"  # relative to the checkpoint folder: it travels with the package
    (out / "config.json").write_text(json.dumps(config, indent=2))
    adapter = json.loads((out / "adapter_config.json").read_text())
    adapter["base_model_name_or_path"] = "base"
    (out / "adapter_config.json").write_text(json.dumps(adapter, indent=2))
    (out / "README.md").write_text(
        "# lmmeval demo checkpoint\n\nThe tiny preset (the Qwen2.5-VL architecture at toy width; "
        f"stage 1 started from `{args.base}`) trained by `train/build_demo_checkpoint.py` on the project's "
        "synthetic benchmark. A demonstration of the pipeline, not a face-quality model. `base/` is its "
        "base model.\n")
    # The out-of-distribution flag: the training videos' feature distribution, stored with the checkpoint.
    run([py, "-m", "lmmeval.cli", "calibrate-ood", "--model", args.out, "--manifest", manifest, *args.renders,
         "--device", "cpu", "-q"])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"demo checkpoint: {out} ({size / 2**20:.1f} MiB)")

    run([py, "-m", "lmmeval.cli", "synth", str(work / "test_raw"), "--n", str(args.test_n), "--seed", "2", *SMALL])
    run([py, "-m", "lmmeval.cli", "prepare", str(work / "test_raw"), str(work / "test_prepared"), "-q"])
    run([py, "-m", "lmmeval.cli", "evaluate", "--model", args.out, "--manifest",
         str(work / "test_prepared" / "manifest.jsonl"), "--fold", "-1", "--out", "docs/results/demo_checkpoint"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
