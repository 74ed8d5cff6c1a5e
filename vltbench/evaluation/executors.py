"""Where a sweep's cells run: in this process (`local`, the default) or fanned out as a job array
through submitit (`slurm`; `submitit-local` runs the same jobs as local processes, for testing).

The submitter plans the cells exactly as the sweep does (vltbench.evaluation.plan: same checkpoint
hash, cell identity and record store), trains any missing checkpoint first (one job per method,
resumable), then submits ONE job array with one task per missing cell and waits for it. Each task
runs the ordinary sweep restricted to its cell, so a task that is preempted (or times out) and
requeued by submitit simply runs again: finished cells are skipped thanks to the record store,
training resumes from its saved state. A job with `slurm.tasks_per_node > 1` evaluates its cell
distributed over its tasks.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from vltbench.core import defaults, progress
from vltbench.core.config import Config
from vltbench.core.errors import UserError

from .plan import SweepOutcome, SweepSpec, plan

EXECUTORS = ("local", "slurm", "submitit-local")
INSTALL_HINT = "pip install 'vltbench[slurm]'"


def run(spec: SweepSpec, executor: str = defaults.EXECUTOR, partition: str | None = None) -> SweepOutcome:
    """Run the sweep with the named executor; returns its outcome (planned cells, written, skipped, busy)."""
    from .sweep import run_sweep

    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "local":
        if partition:
            raise UserError("--slurm-partition applies to --executor slurm only")
        return run_sweep(spec)
    return _run_jobs(spec, executor, partition)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(f"the slurm executor needs submitit, which is not installed; {INSTALL_HINT}") from None
    return submitit


def make_executor(cfg: Config, executor: str, partition: str | None, folder: Path):
    submitit = _submitit()
    sc = cfg.slurm
    if executor == "slurm":
        if not partition:
            raise UserError("--executor slurm needs --slurm-partition NAME (the Slurm partition to submit to)")
        if shutil.which("sbatch") is None:
            raise UserError("--executor slurm: Slurm's sbatch is not available on this machine; run from a "
                            "Slurm login node, or use --executor local")
        ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
        ex.update_parameters(slurm_partition=partition, slurm_array_parallelism=sc.array_parallelism,
                             slurm_additional_parameters=dict(sc.additional))
    else:
        ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="local")
    params = dict(name="vltbench", timeout_min=sc.timeout_min, gpus_per_node=sc.gpus_per_node,
                  tasks_per_node=sc.tasks_per_node, cpus_per_task=sc.cpus_per_task)
    if sc.mem_gb:
        params["mem_gb"] = sc.mem_gb
    ex.update_parameters(**params)
    return ex


def _export_dist_env() -> None:
    """In a job with several tasks, describe the torch.distributed group in the environment (as
    torchrun does) so the sweep / training run distributed over the job's tasks."""
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. the debug executor)
        return
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@dataclass
class CellTask:
    """One cell as a submitit task: the ordinary sweep restricted to (method, K, seed)."""

    cfg: Config
    method: str
    length: int
    seed: int
    results: str
    overwrite: bool
    checkpoint_file: str | None  # --checkpoint (not `checkpoint`: that name is submitit's requeue hook)
    save_samples: bool = False

    def __call__(self) -> dict:
        from .sweep import run_sweep

        _export_dist_env()
        progress.log(f"{self}: task started")
        out = run_sweep(SweepSpec(self.cfg, [self.method], [self.length], [self.seed], Path(self.results),
                                  self.overwrite, self.checkpoint_file, train=False, save_samples=self.save_samples))
        return {"written": [str(p) for p in out.written], "skipped": list(out.skipped), "busy": list(out.busy)}

    def checkpoint(self, *args, **kwargs):
        """Preempted or timed out: requeue the same task; it skips its cell if the record now exists."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __str__(self) -> str:
        return f"{self.method} K={self.length} seed={self.seed}"


@dataclass
class TrainTask:
    """Train one method's checkpoint (resuming from its saved training state when requeued)."""

    cfg: Config
    method: str

    def __call__(self) -> str:
        from vltbench.core.device import resolve_device
        from vltbench.data import load_data
        from vltbench.training.checkpoints import train_bundle

        _export_dist_env()
        _, path, _ = train_bundle(self.cfg, self.method, load_data(self.cfg.data), resolve_device(self.cfg.device))
        return str(path)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __str__(self) -> str:
        return f"{self.method} training"


def _checkpoint_shas(spec: SweepSpec, ds) -> tuple[dict[str, str], list[str]]:
    """{method: checkpoint sha256} as obtain_bundle would use, and the methods still to train."""
    from vltbench.core.hashing import sha256_file
    from vltbench.models.bundle import read_metadata
    from vltbench.training.checkpoints import checkpoint_key, no_checkpoint

    shas, untrained = {}, []
    for method in spec.methods:
        if spec.checkpoint is not None:
            read_metadata(spec.checkpoint)
            shas[method] = sha256_file(spec.checkpoint)
            continue
        key = checkpoint_key(spec.cfg, method, ds.num_classes)
        found = key.find()
        if found is not None:
            shas[method] = found[1] or sha256_file(found[0])
        elif not spec.train:
            raise no_checkpoint(spec.cfg, method, ds.num_classes, spec.hint(method), key=key)
        else:
            untrained.append(method)
    return shas, untrained


def _wait(jobs, tasks, what: str, folder: Path) -> list:
    """Results of the jobs in order; failures are reported together, naming their tasks."""
    results, failed = [], []
    for job, task in zip(jobs, tasks):
        try:
            results.append(job.result())
            progress.log(f"{task}: done (job {job.job_id})")
        except Exception as e:  # submitit raises FailedJobError / UncompletedJobError with the task's traceback
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            failed.append(f"{task} (job {job.job_id}): {lines[-1] if lines else type(e).__name__}")
            results.append(None)
    if failed:
        raise UserError(f"{len(failed)} of {len(tasks)} {what} failed, first: {failed[0]}; logs in {folder}; "
                        "running the same command again retries only what is missing")
    return results


def _submit_array(ex, tasks: list):
    submitit = _submitit()
    try:
        with ex.batch():
            jobs = [ex.submit(t) for t in tasks]
    except submitit.core.utils.FailedSubmissionError as e:
        raise UserError(f"job submission failed: {str(e).strip().splitlines()[-1]}") from None
    return jobs


def _run_jobs(spec: SweepSpec, executor: str, partition: str | None) -> SweepOutcome:
    from vltbench.core.hashing import sha256_file
    from vltbench.data import load_data

    from .extractors import extractor_for
    from .plan import measurement_spec
    from .references import RealSets
    from .store import ResultStore

    cfg = spec.cfg
    store = ResultStore(spec.results)
    store.ensure_writable()
    folder = Path(cfg.slurm.folder) if cfg.slurm.folder else Path(spec.results) / ".submitit"
    ex = make_executor(cfg, executor, partition, folder)
    ds = load_data(cfg.data)
    extractor = extractor_for(cfg)
    sets = RealSets(cfg, ds, extractor)
    sets.check_sizes()  # every split large enough: refused before training
    shas, untrained = _checkpoint_shas(spec, ds)
    if untrained:
        tasks = [TrainTask(cfg, m) for m in untrained]
        jobs = _submit_array(ex, tasks)
        progress.log(f"training {', '.join(untrained)}: job array {jobs[0].job_id.split('_')[0]} ({executor}); waiting")
        for method, path in zip(untrained, _wait(jobs, tasks, "training jobs", folder)):
            shas[method] = sha256_file(path)
    out = SweepOutcome(cells=plan(spec, shas, ds, measurement_spec(cfg, extractor, sets), store))
    todo = [c for c in out.cells if not spec.skips(c)]
    out.skipped = [c.cell_id for c in out.cells if spec.skips(c)]
    if not todo:
        progress.log(f"all {len(out.skipped)} cells are done already; nothing submitted")
        return out
    tasks = [CellTask(cfg, c.method, c.length, c.seed, str(spec.results), spec.overwrite, spec.checkpoint,
                      spec.save_samples) for c in todo]
    jobs = _submit_array(ex, tasks)
    progress.log(f"{len(tasks)} missing cells ({len(out.skipped)} done earlier): job array "
                 f"{jobs[0].job_id.split('_')[0]} ({executor}), logs in {folder}; waiting")
    for res in _wait(jobs, tasks, "cells", folder):
        out.written += [Path(p) for p in res["written"]]
        out.skipped += res["skipped"]
        out.busy += res.get("busy", [])
    return out
