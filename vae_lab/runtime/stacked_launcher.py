"""hydra/launcher=stacked (configs/hydra/launcher/stacked.yaml, through hydra_plugins.vae_lab_launcher): a sweep's
jobs trained as stacks of models, each stack one job of another Hydra launcher.

It composes every job's config as Hydra's own launchers do and gives each its run directory (its .hydra/ written
here, as Hydra would when the job starts), groups the jobs whose configs differ only in keys a stack's members may
differ in (vae_lab.runtime.stack.STACKABLE), at most `max_stack` a stack, and says in one line per stack what it
holds and what sets it apart. Each stack is written to <sweep>/stacks/<k>/stack.json and handed, as one job, to the
launcher `fan_out` names (basic: one after another here; joblib: side by side on this machine; submitit_local or
slurm: as processes or cluster jobs), with `options` as that launcher's keys. The stack's job trains its members
(vae_lab.train.train_stacked) and returns each member's figure; this launcher returns one JobReturn per job of the
sweep, as any launcher does, so sweepers and callbacks see the jobs they asked for."""
import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from vae_lab import rundir
from vae_lab.checks import ConfigError
from vae_lab.runtime.stack import MANIFEST, groups, swept

log = logging.getLogger("vae_lab")

STACK_KEY = "vae_lab_stack"  # the override that makes a job a stack's: +vae_lab_stack=<its stack.json>


class StackedLauncher(Launcher):
    def __init__(self, max_stack=64, fan_out="basic", options=None):
        if not isinstance(max_stack, int) or max_stack < 1:
            raise ConfigError(f"hydra.launcher.max_stack={max_stack}: a positive integer, the most models a stack holds")
        self.max_stack, self.fan_out, self.options = max_stack, fan_out, dict(options or {})
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config):
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides, initial_job_idx):
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self.sweep_dir = str(sweep_dir)  # composed again for the fan-out launcher: the same directory
        jobs = [self.job(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        configs = [resolved for *_, resolved in jobs]
        stacks = groups(configs, self.max_stack)
        group_overrides = []
        for k, (members, apart) in enumerate(stacks):
            manifest = sweep_dir / "stacks" / str(initial_job_idx + k) / MANIFEST
            record = {"id": f"{sweep_dir.name}/stack-{initial_job_idx + k}", "manifest": str(manifest.resolve()),
                      "members": [jobs[i][1] for i in members], "overrides": [jobs[i][0] for i in members],
                      "step": None}
            rundir.write_text(manifest, OmegaConf.to_yaml(OmegaConf.create(record)))
            why = f"; apart from stack {initial_job_idx} by {', '.join(apart)}" if apart else ""
            log.info("stack %d: %d model%s (%s) in %s%s", initial_job_idx + k, len(members), "s" * (len(members) > 1),
                     swept(configs, members), manifest.parent, why)
            group_overrides.append([*jobs[members[0]][0], f"hydra.sweep.subdir=stacks/{initial_job_idx + k}",
                                    f"+{STACK_KEY}='{manifest.resolve()}'"])
        inner = Plugins.instance().instantiate_launcher(hydra_context=self.hydra_context,
                                                        task_function=self.task_function, config=self.inner_config())
        returns = inner.launch(group_overrides, initial_job_idx)
        out = [None] * len(jobs)
        for (members, _), ret in zip(stacks, returns):
            for j, i in enumerate(members):
                out[i] = member_return(ret, j, jobs[i][0])
        return out

    def job(self, overrides, idx):
        """(overrides, its run directory, its task config resolved) of one job of the sweep, its .hydra/ written."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = idx
        HydraConfig.instance().set_config(config)
        output_dir = os.path.abspath(os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir)))
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = output_dir
        HydraConfig.instance().set_config(config)
        task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        hydra_output = Path(output_dir) / str(config.hydra.output_subdir)
        _save_config(task, "config.yaml", hydra_output)
        _save_config(OmegaConf.create({"hydra": config.hydra}), "hydra.yaml", hydra_output)
        _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        return overrides, output_dir, OmegaConf.to_container(task, resolve=True)

    def inner_config(self):
        """The sweep's config with hydra/launcher=`fan_out` (and `options`), the same sweep directory."""
        kept = [o for o in self.config.hydra.overrides.hydra
                if not o.lstrip("+~").startswith(("hydra/launcher=", "hydra.launcher.", "hydra.sweep.dir="))]
        extra = [f"hydra/launcher={self.fan_out}", f"hydra.sweep.dir='{self.sweep_dir}'",
                 *(f"++hydra.launcher.{k}={v}" for k, v in self.options.items())]
        try:
            return self.hydra_context.config_loader.load_configuration(
                config_name=self.config.hydra.job.config_name, overrides=[*kept, *extra], run_mode=RunMode.MULTIRUN)
        except Exception as e:
            raise ConfigError(f"hydra.launcher.fan_out={self.fan_out}: {str(e).splitlines()[0]} (a hydra/launcher "
                              "option: basic, joblib, submitit_local, slurm, ...)") from None


def member_return(ret, j, overrides):
    """The JobReturn of a stack's j-th member from the stack job's: its own figure, or the stack's failure."""
    member = JobReturn(overrides=overrides, cfg=ret.cfg, hydra_cfg=ret.hydra_cfg, working_dir=ret.working_dir,
                       task_name=ret.task_name, status=ret.status)
    value = ret._return_value
    member.return_value = value[j] if ret.status == JobStatus.COMPLETED and isinstance(value, list) else value
    return member
