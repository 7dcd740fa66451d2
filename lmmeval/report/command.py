"""The `lmmeval report` sub-command: ``add_parser(subparsers)`` and ``run(args)``.

Only argparse is imported here: the command line builds every sub-command's parser on each
call, and the report's numpy/scipy/matplotlib load when the command runs. ``main`` runs the
command alone (``python -m lmmeval.report``), with the errors the command line gives.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap

DESCRIPTION = textwrap.fill(
    "Rank groups of scored inputs (the generators of a study, or the results files themselves) from "
    "`lmmeval score` results: per group the inputs, failed and out-of-distribution counts, the mean quality "
    "and authenticity with 95% bootstrap intervals (the group's inputs resampled), the rank, and the groups "
    "it is significantly above (two-sided tests of the mean difference: exact permutation tests for small "
    "groups, t-tests for larger ones; paired where two groups share inputs; Holm-corrected over all pairs). "
    "With a manifest: the same leaderboard from MOS, the rank agreement of each results file with it "
    "(Kendall's tau and SRCC over groups, bootstrap intervals) and "
    "per-input SRCC/PLCC/KRCC, one row per results file. Also distortion profiles per group, plots, and "
    "index.html: sortable tables and a gallery of the inputs, worst first, that opens offline. Failed "
    "and out-of-distribution inputs are counted and left out of the means (--include-ood keeps the latter).",
    100, break_on_hyphens=False)

EPILOG = textwrap.fill(
    "Groups: --groups CSV (input,group lines under a header; an input is a path or an id), else the "
    "manifest's generators, else one group per results file. Rows are matched by path, by the same file under "
    "another name (prepare's hard links), or by id.", 100, break_on_hyphens=False) + (
    "\n\nExamples:\n"
    "  lmmeval report demo_out/results.jsonl --manifest demo_out/prepared/manifest.jsonl --out demo_out/report\n"
    "  lmmeval report results.jsonl --groups generators.csv --out report --bootstrap 5000 --seed 1\n"
    "  lmmeval report ckpt_a.jsonl ckpt_b.jsonl baseline.jsonl --manifest study/manifest.jsonl --out compare\n"
    "                  # several checkpoints side by side against the same MOS\n"
    "  lmmeval report gen_a.jsonl gen_b.jsonl --out ab   # two files as two groups, paired by input id")


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULTS.jsonl",
                   help="results files of `lmmeval score --out` (several: compared side by side)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="report folder: index.html, leaderboard.csv/.md/.json, plots/, thumbs/ (created)")
    p.add_argument("--manifest", metavar="MANIFEST",
                   help="the study's manifest.jsonl (`lmmeval prepare` / `import-gen3dhf`): groups from its "
                        "generators, MOS, annotated categories")
    p.add_argument("--groups", metavar="CSV",
                   help="input,group lines under a header (e.g. a study's generators.csv); takes precedence over "
                        "the manifest's generators")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap resamples of the intervals (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise level of the Holm-corrected pairwise tests (default 0.05)")
    p.add_argument("--include-ood", action="store_true",
                   help="keep out-of-distribution inputs in the means (failed ones never count)")
    p.add_argument("--no-thumbnails", action="store_true", help="a gallery without pictures (faster)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="print only where the report is")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `report` to the command line's sub-commands."""
    p = subparsers.add_parser("report", help="a leaderboard of generators with confidence intervals, agreement "
                                             "with MOS, and an HTML report",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION,
                              epilog=EPILOG)
    add_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .tables import fmt_ci
    from .write import write_report

    if args.bootstrap < 100:
        raise ValueError(f"--bootstrap must be at least 100, got {args.bootstrap}")
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must lie in (0, 1), got {args.alpha}")
    log = None if args.quiet else (lambda message: print(f"lmmeval report: {message}", file=sys.stderr))
    report = write_report(args.out, args.results, manifest=args.manifest, groups=args.groups,
                          bootstrap=args.bootstrap, seed=args.seed, alpha=args.alpha, include_ood=args.include_ood,
                          overwrite=args.overwrite, thumbnails=not args.no_thumbnails,
                          command=getattr(args, "command_line", None), log=log)
    if not args.quiet:
        for board in report.boards[:3] + ([report.human] if report.human else []):
            print(f"{board.name}:")
            print(f"  {'rank':>4}  {'group':<28} {'inputs':>6} {'failed':>6} {'OOD':>4}  "
                  + "  ".join(f"{d + ' [95% CI]':<24}" for d in board.dimensions))
            for e in board.entries[:12]:
                s = e.scores[board.dimensions[0]]
                print(f"  {'' if s.rank is None else s.rank:>4}  {e.group[:28]:<28} {e.inputs:>6} {e.failed:>6} "
                      f"{e.out_of_distribution:>4}  "
                      + "  ".join(f"{fmt_ci(e.scores[d].mean, e.scores[d].ci_low, e.scores[d].ci_high):<24}"
                                  for d in board.dimensions))
            if len(board.entries) > 12:
                print(f"  ... {len(board.entries) - 12} more in leaderboard.md")
        for name, items in report.agreement.items():
            words = "; ".join(f"{a.dimension} tau {fmt_ci(a.kendall_tau, *(a.kendall_ci or (None, None)), digits=2)}"
                              for a in items)
            print(f"rank agreement of {name} with MOS: {words}")
    print(f"wrote {args.out}/index.html (and leaderboard.csv, .md, .json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`lmmeval report` on its own, with the command line's handling of errors (one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="lmmeval report", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "lmmeval report " + shlex.join(argv)
    try:
        return run(args)
    except (ValueError, OSError, ImportError) as err:
        print(f"lmmeval report: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmmeval report: interrupted", file=sys.stderr)
        return 130
