"""vae-compare's table: the runs found under some paths, their columns, filters, sorting and the three renderings."""
import csv
import io
import math
import os
import re
from pathlib import Path

from vae_lab import rundir
from vae_lab.checks import ConfigError
from vae_lab.nested import flatten
from vae_lab.results import EVALUATION, MEASURE, MEASURED, MEASUREMENT, names, upgrade
from vae_lab.rundir import Status

# Columns: summary.json's measurements as val/<name>, then every measurement of eval.json as eval/<name> (its
# disentanglement metrics' headlines included); keys of another role (notes, sizes, times) only for --sort/--filter.
VAL_COLUMNS = names(MEASURE, MEASUREMENT)
NOT_COLUMNS = {k.name for k in (*MEASURE, *EVALUATION) if k.role != MEASUREMENT}
NOT_RUNS = {".hydra", ".submitit", rundir.CHECKPOINTS, rundir.FIGURES}


class Row:
    """One run directory as a row of the table: `overrides` as given on the command line, `values` everything
    --sort/--filter can use."""

    def __init__(self, path):
        self.path = Path(os.path.abspath(path))
        self.overrides = dict(_parse_override(o) for o in rundir.read_yaml(self.path / rundir.OVERRIDES) or [] if "=" in o)
        values = {k: v for k, v in flatten(rundir.read_yaml(self.path / rundir.CONFIG) or {}).items() if _scalar(v)}
        hydra = rundir.read_yaml(self.path / rundir.HYDRA) or {}
        choices = hydra.get("hydra", {}).get("runtime", {}).get("choices") or {}
        values.update({g: c for g, c in choices.items() if not g.startswith("hydra/") and isinstance(c, str)})
        values.update(self.overrides)
        summary = rundir.summary(self.path)
        summary = summary if summary is None else upgrade(summary)
        if summary is None:
            summary = {"status": "no summary", "error": "no summary.json: still running, or killed"}
        elif summary.get("status") != Status.COMPLETED and "message" in summary:  # diverged, stopped: why, in one line
            summary.setdefault("error", summary.pop("message"))
        for key, value in summary.items():
            if key != "run_dir" and _scalar(value):
                values[f"val/{key}" if key in MEASURED else key] = value
        for key, value in flatten(upgrade(rundir.read_json(self.path / rundir.EVAL) or {})).items():
            if _scalar(value):
                values[f"eval/{key}"] = value
        values["run"] = str(self.path)
        self.values = values


def find_runs(paths):
    """Run directories (those holding .hydra/config.yaml) at or below each path."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path}: not a directory")
        found = []
        for root, dirs, _ in os.walk(path):
            if rundir.is_run(root):
                found.append(Path(root))
                dirs.clear()
            else:
                dirs[:] = sorted(d for d in dirs if d not in NOT_RUNS)
        if not found:
            raise ConfigError(f"{path}: holds no run directory (one with .hydra/config.yaml)")
        runs += found
    return runs


def differing(runs):
    """Override keys whose value is not the same in every run, in the order they first appear."""
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    return [k for k in keys if len({repr(r.overrides.get(k)) for r in runs}) > 1]


def columns(runs):
    def present(key):
        return any(key in r.values for r in runs)

    evals = list(dict.fromkeys(k for r in runs for k in r.values if k.startswith("eval/")
                               and "." not in k and k[5:] not in NOT_COLUMNS))  # nested keys: --filter only
    cols = [*differing(runs), "status", *(f"val/{k}" for k in VAL_COLUMNS if present(f"val/{k}")), *evals]
    return cols + (["error"] if present("error") else []) + ["run"]


def resolve(key, runs):
    """A column or config key as typed; `elbo` also finds val/elbo, then eval/elbo."""
    for candidate in (key, f"val/{key}", f"eval/{key}"):
        if any(candidate in r.values for r in runs):
            return candidate
    known = sorted({k for r in runs for k in r.values if "/" in k or k in r.overrides} | {"status"})
    raise ConfigError(f"{key!r}: no run has this key; try one of {', '.join(known)} or any config key such as kl.beta")


FILTER = re.compile(r"^\s*([^<>=!~\s]+)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")


def keep(runs, expression):
    """The runs for which `KEY OP VALUE` holds (OP: = == != < <= > >=, or ~ for a regular expression)."""
    m = FILTER.match(expression)
    if not m:
        raise ConfigError(f"--filter {expression!r}: write KEY OP VALUE with OP one of = != < <= > >= ~ (e.g. kl.beta>1)")
    key, op, want = resolve(m[1], runs), m[2], _typed(m[3])
    pattern = re.compile(m[3]) if op == "~" else None

    def holds(run):
        have = run.values.get(key)
        if have is None:
            return False
        if op == "~":
            return bool(pattern.search(_text(have)))
        if not (_number(have) and _number(want)):
            have, want_ = _text(have), _text(want)
        else:
            want_ = want
        return {"=": have == want_, "==": have == want_, "!=": have != want_, "<": have < want_,
                "<=": have <= want_, ">": have > want_, ">=": have >= want_}[op]

    return [r for r in runs if holds(r)]


def sort(runs, key, descending=False):
    """Sorted by `key` (numbers apart from text); runs without the key come last in either direction."""
    key = resolve(key, runs)

    def get(run):
        return run.values.get(key)

    have = [r for r in runs if get(r) is not None]
    ordered = sorted(have, key=lambda r: sort_key(get(r)), reverse=descending)
    return ordered + [r for r in runs if get(r) is None]


def rows(runs, cols, root):
    """Cells of the table; a run is named by its path below `root`."""
    out = []
    for r in runs:
        name = r.path.relative_to(root).as_posix()
        out.append([name if c == "run" else r.values.get(c) for c in cols])
    return out


def fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if 100 <= abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def text_table(cols, table):
    cells = [cols] + [[fmt(v) for v in row] for row in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    numeric = [all(v is None or _number(v) for v in col) for col in zip(*table)] if table else [False] * len(cols)
    lines = []
    for i, row in enumerate(cells):
        parts = [c.rjust(w) if numeric[j] and i else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(cols, table):
    def esc(text):
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(fmt(v)) for v in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def csv_table(cols, table):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    writer.writerows([["" if v is None else v for v in row] for row in table])
    return buf.getvalue()


def label(run, keys):
    # a run that did not override a key has the config's value (e.g. its group's option): name it by that
    return ",".join(f"{k}={fmt(run.overrides.get(k, run.values.get(k)))}" for k in keys) or run.path.name


def _parse_override(text):
    key, _, value = text.partition("=")
    return key.lstrip("+~"), _typed(value)


def _typed(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _scalar(value):
    return isinstance(value, (int, float, str, bool))


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value):
    return _number(value) and math.isfinite(value)


def decades(values):
    """Positive values that span a decade or more: shown on a log axis."""
    return min(values) > 0 and max(values) / min(values) >= 10


def sort_key(value):
    return (0, value, "") if _number(value) else (1, 0, _text(value) if value is not None else "")


def _text(value):
    return value if isinstance(value, str) else fmt(value)
