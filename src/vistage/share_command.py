"""`vistage push-run-cache`: what `dvc push --run-cache` leaves out.

DVC 3's `dvc push --run-cache` sends the run-cache's records (.dvc/cache/runs) and, like `dvc
push`, the cached outputs of the workspace; it does not send the outputs of the recorded runs
that are in DVC's cache only because the run-cache put them there: the uncached ones, metrics/
and the curves, which vistage keeps in git. A teammate's `dvc exp run --pull` then finds a
record of train, predict or evaluate but not all its outputs ("Missing cache files"), and runs
the stage again. This sends them, with DVC's own collection of a record's objects
(StageCache.get_used_objs, which `dvc push` no longer calls) and DVC's transfer.
"""

import os
from typing import Annotated

import typer


def push_run_cache(remote: Annotated[str | None, typer.Option("--remote", "-r", help="the DVC remote "
                                                                "(default: the default remote)")] = None) -> None:
    """Push the run-cache and every output of its recorded runs, so that a teammate's `dvc exp
    run --pull` or `dvc repro --pull` restores a run from it instead of running it again."""
    from dvc.repo import Repo

    from .errors import VistageError

    try:
        repo = Repo(".")
    except Exception as exc:  # noqa: BLE001 - not a DVC repository: one line
        raise VistageError(f"not a DVC repository: {exc}") from exc
    with repo, repo.lock:
        records = repo.stage_cache.push(remote)  # the records, as `dvc push --run-cache`
        runs = repo.stage_cache.cache_dir
        every = [(key, value) for key in _listdir(runs, 2) for value in _listdir(runs, 2, key)]
        used = repo.stage_cache.get_used_objs(every, remote=remote)
        sent = failed = 0
        for odb, objs in used.items():
            result = repo.cloud.push(objs, remote=remote, odb=odb)
            sent += len(result.transferred)
            failed += len(result.failed)
    if failed:
        raise VistageError(f"{failed} objects of the run-cache could not be pushed (see dvc's messages above)")
    typer.echo(f"push-run-cache: {len(every)} recorded runs ({len(records)} records sent), "
               f"{sent} objects of their outputs sent to {remote or 'the default remote'}"
               f"{'' if os.path.isdir(runs) else ' (no run-cache here yet)'}")


def _listdir(runs: str, depth: int, key: str | None = None) -> list[str]:
    """The keys of the run-cache (runs/XX/KEY), or the values recorded under one key."""
    if key is not None:
        path = os.path.join(runs, key[:2], key)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    if not os.path.isdir(runs):
        return []
    return sorted(k for prefix in os.listdir(runs) if len(prefix) == depth
                  for k in os.listdir(os.path.join(runs, prefix)))
