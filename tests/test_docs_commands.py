"""Every vae-train, vae-eval and scripts/ command shown in the README and docs/ is one that runs: its overrides
compose and pass vae-train's (or vae-eval's) checks, each value of a sweep included, and its flags exist. A command
that drifts from the code (a renamed key, a removed option) fails here, not in a user's shell. What the commands
measure is checked where it is built (test_presets, test_results_plots, ...); training them is the user's."""
import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from vae_lab import evaluate
from vae_lab.runtime.config import check_root

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("vae-train", "vae-eval", "vae-compare", "python scripts/")


def commands(path):
    """(line number, command) of each program call in the file's ```bash blocks: continuation lines joined, comments
    and shell syntax (&&, ;, a loop's do) dropped, placeholders like <dir> left for the checks to fill in."""
    found = []
    for number, line in _blocks(path.read_text().splitlines()):
        text = re.sub(r"\s+#\s.*$", "", line)  # a trailing comment
        for part in re.split(r"\s*(?:&&|;)\s*", text):
            part = re.sub(r"^(do|then)\s+", "", part.strip())
            part = re.sub(r"^PYTHONPATH=\S+\s+", "", part)
            if part.startswith(PROGRAMS):
                found.append((number, part))
    return found


def _blocks(lines):
    """(line number, logical line) inside ```bash blocks."""
    out, inside = [], False
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            inside = not inside and line.strip() == "```bash"
            continue
        if inside:
            if out and out[-1][1].endswith("\\"):
                out[-1] = (out[-1][0], out[-1][1][:-1].rstrip() + " " + line.strip())
            else:
                out.append((number, line.strip()))
    return out


ALL = [(f"{p.relative_to(ROOT)}:{n}", c) for p in DOCS for n, c in commands(p)]


def test_the_docs_show_commands_of_every_program():
    shown = {c.split()[0] if not c.startswith("python") else "scripts" for _, c in ALL}
    assert shown >= {"vae-train", "vae-eval", "vae-compare", "scripts"}, shown
    assert sum(c.startswith("vae-train") for _, c in ALL) >= 15  # the extraction finds them


def _expand(overrides, multirun):
    """The override lists vae-train composes: under -m first the command line without its sweeps (Hydra composes
    that before any job, so `kl.warmup_epochs=5` fails there unless kl's option has the key without the swept
    experiment), then one per value of each sweep with the others at their first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    if multirun:
        yield [o.input_line for o in parsed if not o.is_sweep_override()]
    values = [[o.input_line] if not o.is_sweep_override() else
              [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    firsts = [v[0] for v in values]
    yield firsts
    for i, vs in enumerate(values):
        for v in vs[1:]:
            yield [*firsts[:i], v, *firsts[i + 1:]]


@pytest.mark.parametrize("where,command", [(w, c) for w, c in ALL if c.startswith("vae-train")], ids=lambda x: x)
def test_vae_train_command_composes(where, command):
    args = shlex.split(command)[1:]
    multirun = "-m" in args or "--multirun" in args
    args = [re.sub(r"<[^>]+>", "some/path", a) for a in args if a not in ("-m", "--multirun")]  # <file>, <dir>
    if any(a.startswith("hydra.searchpath") for a in args):
        pytest.skip("extends the search path with the user's own package (docs/extending.md's test runs it)")
    for overrides in _expand(args, multirun):
        cfg = compose_config(overrides, return_hydra_config=True)
        with open_dict(cfg):
            del cfg["hydra"]
        check_root(cfg)


@pytest.mark.parametrize("where,command", [(w, c) for w, c in ALL if c.startswith("vae-eval")], ids=lambda x: x)
def test_vae_eval_command_composes(where, command):
    args = [re.sub(r"\$\w+", "1", a) for a in shlex.split(command)[1:]]  # a shell loop's $k
    args = [a if not a.startswith("run=") else "run=some/run" for a in args]
    args = [re.sub(r"<[^>]+>", "some/path", a) for a in args]  # runs=[<dir>,...], sweep=<sweep>
    evaluate.options(args)


@functools.cache
def help_text(*command):
    """What `<command> --help` prints; each program (and subcommand) is asked once, however many commands use it."""
    return subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT).stdout


@pytest.mark.slow
@pytest.mark.parametrize("where,command", [(w, c) for w, c in ALL if not c.startswith(("vae-train", "vae-eval"))],
                         ids=lambda x: x)
def test_other_command_flags_exist(where, command):
    args = shlex.split(command)
    program = [sys.executable, "-m", "vae_lab.compare"] if args[0] == "vae-compare" else [sys.executable, args[1]]
    rest = args[1:] if args[0] == "vae-compare" else args[2:]
    helps = help_text(*program)
    if rest and not rest[0].startswith("-") and "{" in helps:  # a subcommand: its own flags
        helps += help_text(*program, rest[0])
    for flag in (a.split("=")[0] for a in rest if a.startswith("--")):
        assert flag in helps, f"{where}: {flag} is not an option of {args[0]}"


def test_a_drifted_command_fails(tmp_path):
    """The checks above can fail: a misspelt key, and a sweep value that only breaks in its own job."""
    page = tmp_path / "page.md"
    page.write_text("```bash\nvae-train -m kl.beta=1,4 \\\n    encoder=mlp,nope  # a comment\n```\n"
                    "```bash\nfor k in 1 5; do vae-eval run=<dir> iwae.kk=$k; done\n```\n")
    (_, train), (_, eval_) = commands(page)
    assert train == "vae-train -m kl.beta=1,4 encoder=mlp,nope"
    with pytest.raises(Exception, match="nope"):
        test_vae_train_command_composes("page.md", train)
    with pytest.raises(Exception, match="iwae.kk"):
        test_vae_eval_command_composes("page.md", eval_)
    # a key that only the swept preset has: every job composes, the sweep's first composition does not
    with pytest.raises(Exception, match="warmup_epochs"):
        test_vae_train_command_composes("page.md", "vae-train -m experiment=tomczak_vampprior,tomczak_standard "
                                        "kl.warmup_epochs=5")
    test_vae_train_command_composes("page.md", "vae-train experiment=tomczak_vampprior kl.warmup_epochs=5")
