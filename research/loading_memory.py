r"""Peak host memory of loading a base on every rank, whole or ZeRO-3 partitioned (a benchmark).

Each rank loads the same base folder as training does (``factory.new_model``), either whole (what
every rank did before training made ZeRO-3 runs create their weights partitioned) or with a ZeRO-3
DeepSpeed config live through transformers' ``HfDeepSpeedConfig``, so the weights are created
partitioned across the ranks; each rank reports its peak resident set. Rank 0 writes the JSON.

    # any Qwen2.5-VL folder; e.g. the 7b-shallow preset (the 7B's widths, two layers each) saved:
    python -c "from lmmeval.model.presets import save_base; save_base('runs/7b-shallow', '7b-shallow')"
    torchrun --nproc_per_node 2 -m research.loading_memory --base runs/7b-shallow \
        --mode whole --out runs/loading_whole.json
    torchrun --nproc_per_node 2 -m research.loading_memory --base runs/7b-shallow \
        --mode partitioned --out runs/loading_partitioned.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path


def _rss_gib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="a Qwen2.5-VL folder (or preset:NAME)")
    parser.add_argument("--mode", choices=("whole", "partitioned"), required=True,
                        help="whole: every rank builds the full model; partitioned: under ZeRO-3's partitioned init")
    parser.add_argument("--deepspeed", default="configs/deepspeed/zero3.json", help="the ZeRO-3 JSON (partitioned)")
    parser.add_argument("--dtype", default="bfloat16", help="the base's precision (default bfloat16)")
    parser.add_argument("--out", help="write the per-rank numbers here (rank 0)")
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    from lmmeval.model import factory
    from lmmeval.provenance import git_commit

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    before = _rss_gib()
    keep = None
    if args.mode == "partitioned":
        import deepspeed

        from lmmeval.training.recipe import partitioned_init

        deepspeed.init_distributed(dist_backend="gloo")
        ds = json.loads(Path(args.deepspeed).read_text())
        ds.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=1.0)
        # As a ZeRO-3 training run does (StageRecipe.setup_model): live while the model is built.
        keep = partitioned_init(ds, factory.resolve_dtype(args.dtype, torch.device("cpu")))
    start = time.perf_counter()
    model = factory.new_model(args.base, device="cpu", dtype=args.dtype)
    seconds = time.perf_counter() - start
    del keep  # the model is built: back to whole loading
    params = model.network.backbone.parameters()
    held = sum((p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()) * p.element_size() for p in params)
    row = torch.tensor([before, _rss_gib(), held / 2**30, seconds], dtype=torch.float64)
    rows = [torch.zeros_like(row) for _ in range(world)]
    dist.all_gather(rows, row)
    if rank == 0:
        result = {"command": "torchrun --nproc_per_node {} -m research.loading_memory {}".format(
                      world, " ".join(argv if argv is not None else sys.argv[1:])),
                  "commit": git_commit(), "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
                  "mode": args.mode, "world": world, "base": args.base, "dtype": args.dtype,
                  "ranks": [{"rss_before_gib": r[0].item(), "peak_rss_gib": r[1].item(),
                             "base_weights_held_gib": r[2].item(), "load_s": r[3].item()} for r in rows]}
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
