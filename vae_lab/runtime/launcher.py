"""hydra/launcher=joblib (configs/hydra/launcher/joblib.yaml, through hydra_plugins.vae_lab_launcher): Hydra's joblib
launcher, which also stops when told.

Joblib runs the jobs in loky worker processes, reused from job to job, that a signal to the sweep's process alone never
reaches: each would finish its job and start the next one it had been handed. Here the sweep's process forwards its
first SIGINT or SIGTERM to its workers; a running job writes a checkpoint and ends `interrupted` as a single
run does; no other job starts (nor makes a folder); then the process exits with 128 + the signal's number, and the
same command with resume=auto finishes the sweep. A second signal exits at once: joblib ends the workers, and each
job's last checkpoint stays valid.

joblib is imported only once a sweep launches: Hydra imports this module whenever vae-train starts."""
import multiprocessing
import os
import sys

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as HydraJoblibLauncher

from vae_lab.runtime import interrupt

_stop = None  # in the sweep's process while it launches jobs: its SweepStop


class JoblibLauncher(HydraJoblibLauncher):
    def launch(self, job_overrides, initial_job_idx):
        with SweepStop() as stop:
            runs = super().launch(job_overrides, initial_job_idx)
        if stop.signal is None:
            return runs
        waiting = sum(r.status == JobStatus.UNKNOWN for r in runs)
        print(f"vae-train: {stop.signal}: sweep stopped; {len(runs) - waiting} of {len(runs)} jobs had started (a "
              f"running one wrote a checkpoint and ended interrupted), {waiting} never did; finish the sweep with the "
              f"same command and resume=auto", file=sys.stderr, flush=True)
        raise SystemExit(stop.exit_code)


class SweepStop(interrupt.StopRequest):
    """In the sweep's process while Hydra's launch runs the jobs: joblib is handed our execute_job and a loky backend
    whose workers join the sweep; the first signal is recorded for the workers (before any is signalled, so that one
    that misses it reads it before its next job) and forwarded to those that joined."""

    def __enter__(self):
        global _stop
        from hydra_plugins.hydra_joblib_launcher import _core
        from joblib import parallel

        self.record = interrupt.SweepSignal(os.getpid())
        self.record.open()
        # Hydra's launch hands _core.execute_job to joblib.Parallel, which pickles it by name: workers import ours
        self.hydra_execute_job, _core.execute_job = _core.execute_job, execute_job
        self.loky = parallel.BACKENDS["loky"]  # the backend Hydra's launch names
        parallel.register_parallel_backend("loky", _joining_loky(self.loky))
        _stop = self
        return super().__enter__()

    def __exit__(self, *exc):
        global _stop
        from hydra_plugins.hydra_joblib_launcher import _core
        from joblib import parallel

        super().__exit__(*exc)
        parallel.register_parallel_backend("loky", self.loky)
        _core.execute_job, _stop = self.hydra_execute_job, None
        self.record.close()

    def _handle(self, signum, frame):
        first = self.signal is None
        super()._handle(signum, frame)  # a second signal raises SystemExit: joblib then ends the workers
        if first:
            self.record.record(self.signal)
            alive = {p.pid for p in multiprocessing.active_children()}  # never a process id reused since
            for pid in self.record.workers() & alive:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:  # ended in between
                    pass


def execute_job(idx, overrides, hydra_context, config, task_function, singleton_state):
    """Hydra's execute_job in a worker, unless the sweep has been told to stop: then the job never starts (status
    UNKNOWN, no folder)."""
    args = idx, overrides, hydra_context, config, task_function, singleton_state
    if _stop is not None:  # joblib runs the jobs in the sweep's process itself (n_jobs=1): a signal within a job
        # ends the sweep there, as under Hydra's basic launcher
        return not_started(overrides) if _stop.signal is not None else _stop.hydra_execute_job(*args)
    from hydra_plugins.hydra_joblib_launcher._core import execute_job as hydra_execute_job

    if interrupt.join_sweep(os.getppid()).signal is not None:
        return not_started(overrides)
    try:
        return hydra_execute_job(*args)
    except SystemExit as e:  # vae-train's exit on a signal: its summary.json says interrupted. Raised from here,
        # joblib would stop the sweep and kill the other workers while they write their checkpoints.
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = e  # read by Hydra's sweeper, it ends the sweep with the job's exit code, as serially
        return ret


def _joining_loky(loky):
    """joblib's loky backend, whose workers join the sweep as they start: Ctrl-C in the terminal, or a scheduler that
    signals every process, would otherwise end a worker yet to run its first job (Python's default), and joblib would
    then end the whole sweep at once, the jobs running in the other workers with it."""

    class JoiningLoky(loky):
        def configure(self, *args, **kwargs):
            return super().configure(*args, initializer=interrupt.join_sweep, initargs=(os.getpid(),), **kwargs)

    return JoiningLoky


def not_started(overrides):
    return JobReturn(overrides=list(overrides), status=JobStatus.UNKNOWN)
