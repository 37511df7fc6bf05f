"""vae-compare: one table, and plots, for the runs of a sweep, read from each run's config, summary.json and eval.json.

    vae-compare outputs/sweeps/<sweep> [--sort elbo --desc] [--filter 'kl.beta>1'] [--csv t.csv] [--markdown t.md]

Columns: the run, the overrides that differ between runs, status, the final validation measurements of summary.json
(`val/...`), the measurements of eval.json when present (`eval/...`), and the error of a failed run; the table
is vae_lab.compare.table, the plots vae_lab.compare.plots.
"""
import argparse
import os
from pathlib import Path

from vae_lab import rundir
from vae_lab.checks import ConfigError
from vae_lab.compare.table import (
    Row,
    columns,
    csv_table,
    differing,
    find_runs,
    keep,
    markdown_table,
    rows,
    sort,
    sort_key,
    text_table,
)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vae-compare", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="a sweep directory, or run directories")
    parser.add_argument("--sort", metavar="KEY", help="a column or config key, e.g. elbo or kl.beta (ascending)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--filter", metavar="EXPR", action="append", default=[],
                        help="keep runs where KEY OP VALUE holds, e.g. 'kl.beta>1', status=completed, 'encoder~conv'; repeatable")
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--out", metavar="DIR", help="where the plots go (default: the sweep directory)")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG")
    args = parser.parse_args(argv)
    try:
        compare(args)
    except ConfigError as e:
        raise SystemExit(f"vae-compare: error: {e}") from None


def compare(args):
    runs = [Row(p) for p in find_runs(args.paths)]
    swept = differing(runs)
    runs.sort(key=lambda r: [sort_key(r.overrides.get(k)) for k in swept])  # 2 before 10
    total = len(runs)
    for expression in args.filter:
        runs = keep(runs, expression)
    if args.sort:
        runs = sort(runs, args.sort, args.desc)
    cols = columns(runs)
    root = os.path.commonpath([os.path.abspath(p) for p in args.paths])
    if rundir.is_run(root):  # a run directory itself: name it too
        root = os.path.dirname(root)
    table = rows(runs, cols, Path(root))
    print(text_table(cols, table))
    statuses = [r.values.get("status") for r in runs]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    print(f"{len(runs)} runs" + (f" of {total}" if args.filter else "") + (f": {counts}" if runs else ""))
    for option, render in (("csv", csv_table), ("markdown", markdown_table)):
        if getattr(args, option):
            Path(getattr(args, option)).write_text(render(cols, table))
            print(f"wrote {getattr(args, option)}")
    if not args.no_plots and runs:
        out = Path(args.out) if args.out else Path(os.path.commonpath([os.path.abspath(p) for p in args.paths]))
        out.mkdir(parents=True, exist_ok=True)
        from vae_lab.compare.plots import plot  # matplotlib only when plots are drawn

        for path in plot(runs, out):
            print(f"wrote {path}")
