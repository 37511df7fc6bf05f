"""docs/extending.md, run as written: its package is written out from the page and trained through `vae-train`, and
its table of contracts checked against the base classes."""
import importlib
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FAST = ["trainer.max_steps=6", "trainer.batch_size=32", "trainer.log_every=2", "trainer.eval_every=3",
        "trainer.checkpoint_every=3", "eval.max_images=64", "encoder.width=32", "decoder.hidden=[32]",
        "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "kl.midpoint=0.5", "kl.width=0.1"]


ATTRIBUTE = re.compile(r"([A-Za-z_]\w*)(\(.*\)| = .*)?")  # backticked `name`, `name(...)`, `name = value`


def components(root):
    sys.path.insert(0, str(root))
    try:
        from my_ext import components
    finally:
        sys.path.remove(str(root))
    return components


def blocks(text):
    """(language, body) of every fenced block of a Markdown page."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """my_ext, file by file as the page shows it (each file block opens with `# <path>`)."""
    root = tmp_path_factory.mktemp("user_project")
    written = []
    for _, body in blocks(DOC.read_text()):
        m = re.match(r"# (my_ext/\S+)\n", body)
        if m:
            (root / m[1]).parent.mkdir(parents=True, exist_ok=True)
            (root / m[1]).write_text(body)
            written.append(m[1])
    return root, written


def contract_rows(text):
    """{group: (dotted path of the base class, must-provide cell, may-override cell)} of the page's contract table."""
    section = text.split("## The contract of each group", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[re.match(r"`(\w+)`", cells[0])[1]] = (re.match(r"`([\w.]+)`", cells[1])[1], cells[3], cells[4])
    return rows


def attributes(cell):
    """The names of the backticked `name`, `name(...)` and `name = value` of a cell; dotted or other code (`terms.kl`,
    `train/<name>`) is left out."""
    return {m[1] for code in re.findall(r"`([^`]+)`", cell) if (m := ATTRIBUTE.fullmatch(code))}


def signatures(cell):
    """{name: [argument names]} of the backticked `name(...)` of a cell."""
    return {m[1]: [a.strip() for a in m[2][1:-1].split(",") if a.strip()]
            for code in re.findall(r"`([^`]+)`", cell) if (m := ATTRIBUTE.fullmatch(code)) and (m[2] or "")[:1] == "("}


def required(cls):
    """What a subclass must provide: REQUIRED (and REQUIRED_WITH_FACTORS) where the class names them, a NamedTuple's
    fields without defaults, and the methods (properties too) whose source on the base class raises
    NotImplementedError. nn.Module's own members are left out: its `forward` raises too, but a likelihood or a prior
    is never called, so the row of each module says itself whether `forward` is asked for."""
    names = set(getattr(cls, "REQUIRED", ())) | set(getattr(cls, "REQUIRED_WITH_FACTORS", ()))
    if hasattr(cls, "_fields"):
        names |= set(cls._fields) - set(cls._field_defaults)
    for name in dir(cls):
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is None or not owner.__module__.startswith("vae_lab"):
            continue
        attr = vars(owner)[name]
        attr = attr.fget if isinstance(attr, property) else attr
        if inspect.isfunction(attr) and "raise NotImplementedError" in inspect.getsource(attr):
            names.add(name)
    return names


def contract_drift(base, must, may):
    """What a table row says that the base class does not: one line per backticked attribute the class lacks (an
    attribute, or a parameter of its __init__ that the base sets) and per required name the must-provide cell leaves
    out, and per `name(arguments)` whose arguments are not the method's."""
    module, _, name = base.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    init = set(inspect.signature(cls.__init__).parameters) if not hasattr(cls, "_fields") else set()
    drift = [f"{base} has no `{a}`" for a in sorted(attributes(must) | attributes(may))
             if not hasattr(cls, a) and a not in init]
    for method, args in {**signatures(may), **signatures(must)}.items():
        attr = inspect.getattr_static(cls, method, None)
        if inspect.isfunction(attr):  # torch's forward(*input) and a NamedTuple's fields have no signature to compare
            params = [q.name for q in list(inspect.signature(attr).parameters.values())[1:]]
            if all(q.kind == q.POSITIONAL_OR_KEYWORD for q in inspect.signature(attr).parameters.values()) \
                    and args != params:
                drift.append(f"{base}.{method} takes ({', '.join(params)}), not ({', '.join(args)})")
    drift += [f"{base} requires `{r}`, which the row does not list as must-provide"
              for r in sorted(required(cls) - attributes(must))]
    drift += [f"{base} provides `{p}`, which the row does not list" for p in
              sorted(set(getattr(cls, "PROVIDED", ())) - attributes(may))]
    return drift


def test_the_contract_table_matches_the_base_classes():
    rows = contract_rows(DOC.read_text())
    assert set(rows) == {"encoder", "decoder", "likelihood", "prior", "kl", "penalty", "dataset", "metric"}
    for group, row in rows.items():
        assert contract_drift(*row) == [], group


def test_the_contract_check_catches_a_drifted_row():
    rows = contract_rows(DOC.read_text())
    base, must, may = rows["penalty"]
    for planted in ("`needs_factorised_prior = True`", "`needs_factorised_prior`"):  # the first: the old page's words
        assert contract_drift(base, f"{must} {planted} if a term needs p(z) = Π_j p(z_j).", may) == [
            "vae_lab.penalties.Penalty has no `needs_factorised_prior`"]
    assert contract_drift(base, must, may.replace("`update(terms, step, generator)`", "`retrain(terms, step)`")) == [
        "vae_lab.penalties.Penalty has no `retrain`"]
    assert contract_drift(base, must, may.replace("`update(terms, step, generator)`", "`update(terms, step)`")) == [
        "vae_lab.penalties.Penalty.update takes (terms, step, generator), not (terms, step)"]
    assert contract_drift(base, must.replace("`forward(terms, weight, step)`", "forward"), may) == [
        "vae_lab.penalties.Penalty requires `forward`, which the row does not list as must-provide"]
    base, must, may = rows["dataset"]
    must, may = must.replace("`batch(split, index, generator)`", "batch"), may.replace("`labels(split, index)`", "")
    assert contract_drift(base, must, may) == [
        "vae_lab.data.base.ImageData requires `batch`, which the row does not list as must-provide",
        "vae_lab.data.base.ImageData provides `labels`, which the row does not list"]
    base, must, may = rows["metric"]
    assert contract_drift(base, must.replace("`headline`", "headline"), may) == [
        "vae_lab.measure.disentanglement.base.Metric requires `headline`, which the row does not list as must-provide"]


def test_the_page_holds_one_option_per_group(package):
    _, written = package
    for group in ("encoder", "likelihood", "prior", "kl", "penalty", "dataset"):
        assert sum(f.startswith(f"my_ext/configs/{group}/") for f in written) == 1, group
    assert {"my_ext/components.py", "my_ext/__init__.py", "my_ext/configs/__init__.py"} <= set(written)


@pytest.mark.slow
def test_the_pages_command_trains_with_the_new_options(package):
    root, _ = package
    [command] = [b for lang, b in blocks(DOC.read_text()) if lang == "bash" and "vae-train" in b]
    command = command.replace("\\\n", " ").strip()
    # the page sets PYTHONPATH to the user's project; the entries the test runs with stay after it, so that vae-train
    # imports the vae_lab under test (not another checkout's editable install)
    command = command.replace("PYTHONPATH=$PWD ", "PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} ")
    out = subprocess.run(["bash", "-c", f"{command} {shlex.join(FAST)} hydra.run.dir=run"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = root / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    config = (run / ".hydra" / "config.yaml").read_text()
    for target in ("ResMLPEncoder", "StudentT", "LaplacePrior", "Sigmoid", "KLL2", "Bars"):
        assert f"_target_: my_ext.components.{target}" in config, target

    assert "lam: 0.1" in config
    # train/kl_weight is the mean of w(step) over each logging window: the Sigmoid schedule's values
    Sigmoid = components(root).Sigmoid
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    schedule = Sigmoid(beta=1.0, midpoint=0.5, width=0.1, total_steps=6)
    logged = [(e.step, e.value) for e in acc.Scalars("train/kl_weight")]
    for name in ("kl_penalty", "mean_l2"):  # KLL2's names, each logged
        assert acc.Scalars(f"train/{name}"), name
    assert logged and all(v == pytest.approx((schedule.weight(s - 2) + schedule.weight(s - 1)) / 2, rel=1e-6)
                          for s, v in logged)


def test_the_pages_laplace_kl_matches_monte_carlo(package):
    import torch

    prior = components(package[0]).LaplacePrior(latent_dim=3, scale=0.7)
    mean, log_var = torch.tensor([[0.3, -1.2, 2.0]]), torch.tensor([[-1.0, 0.5, -3.0]])
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    z = q.sample((200_000,)).squeeze(1)  # (N, 3)
    monte_carlo = (q.log_prob(z).squeeze(1) - torch.distributions.Laplace(0.0, 0.7).log_prob(z)).mean(0)
    assert torch.allclose(prior.kl(mean, log_var, None)[0], monte_carlo, atol=0.01)
    samples = prior.sample(100_000, torch.Generator().manual_seed(0))
    assert samples.abs().mean().item() == pytest.approx(0.7, rel=0.02)  # E|z| = b under Laplace(0, b)


def test_the_pages_metric_keeps_the_metric_contract(package):
    """MAX_CORRELATION, run as vae-eval runs a metric (compute(represent, data, **sizes, seed=, batch_size=,
    progress=)), on a grid of two factors whose images are the factor classes themselves."""
    import torch

    from vae_lab.data.base import ImageData
    from vae_lab.measure.disentanglement.base import Metric

    class Grid(ImageData):
        factor_names, factor_sizes, shape = ("a", "b"), (3, 4), (1, 1, 2)

        def images_for_factors(self, factors, generator=None):
            return self._checked_factors(factors).float().view(-1, 1, 1, 2)

    metric = components(package[0]).MAX_CORRELATION
    assert isinstance(metric, Metric) and metric.name == "max_correlation" and not metric.needs_log_var
    assert set(metric.quick) == set(metric.full) <= set(inspect.signature(metric.compute).parameters)

    def score(represent):
        result = metric.compute(represent, Grid(), **metric.quick, seed=0, batch_size=256, progress=False)
        assert set(metric.headline) <= set(result) and set(result["per_factor"]) == {"a", "b"}
        return result["score"]

    assert score(lambda x: x.flatten(1)) == pytest.approx(1.0)
    assert score(lambda x: torch.cat([-3 * x.flatten(1).flip(1), torch.zeros(len(x), 1)], 1)) == pytest.approx(1.0)
    noise = torch.Generator().manual_seed(1)
    assert score(lambda x: torch.randn(len(x), 4, generator=noise)) < 0.2
