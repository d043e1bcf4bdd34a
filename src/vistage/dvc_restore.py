"""Put back the outputs DVC deleted before a stage that then failed.

dvc.yaml's outputs are not `persist: true`: DVC's run-cache skips every stage with a persisted
output (dvc/stage/cache.py, `_can_hash`), and the run-cache is what lets a teammate's `dvc exp
run` restore a run someone already pushed instead of training again. The price is that DVC
deletes a stage's outputs before it runs the command. When the command then fails (bad params,
bad data, a diverging loss), those outputs are still what dvc.lock records and still in DVC's
cache: the cached ones always, the uncached ones (metrics/, kept in git) because the run-cache
copies them there when a stage succeeds (or else in git, as in a fresh clone). So the failing
command checks them out again, with DVC's own checkout, and a failed stage leaves the workspace
as it found it. (Prepare and split keep `persist: true`: DVC deletes nothing of theirs.)

Only under DVC (it sets DVC_ROOT and DVC_STAGE for the command) and only after a failure; the
stage's own error stays the one line the user reads.
"""

import os
import subprocess
import sys
from pathlib import Path


def restore_after_failure() -> None:
    """Check out, from DVC's cache, each output of the running stage that dvc.lock records and
    that is missing from the workspace."""
    root, stage = os.environ.get("DVC_ROOT"), os.environ.get("DVC_STAGE")
    if not root or not stage or "LOCAL_RANK" in os.environ:  # a torchrun worker: its launcher does it
        return
    try:
        missing = _restore(Path(root), stage)
    except Exception as exc:  # noqa: BLE001 - never hide the stage's own error behind this one
        missing = [f"({type(exc).__name__}: {exc})"]
    if missing:
        print(f"warning: dvc removed {stage}'s previous outputs before it ran and not all could be put back "
              f"from its cache: {', '.join(missing)}; `dvc checkout {stage}` and `git checkout -- metrics` "
              "restore what the cache and git hold", file=sys.stderr)


def _restore(root: Path, stage_name: str) -> list[str]:
    import yaml

    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return []  # the stage never ran here: DVC deleted nothing it had recorded
    entry = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}).get(stage_name)
    if not entry or not entry.get("outs"):
        return []

    from dvc.repo import Repo
    from dvc.stage import PipelineStage, create_stage
    from dvc.stage.loader import StageLoader

    missing = []
    with Repo(str(root)) as repo:
        # A stage built from the lock entry alone, every output cached: the way DVC's run-cache
        # checks out a stage's uncached outputs (StageCache._create_stage).
        stage = create_stage(PipelineStage, repo=repo, path=str(root / "dvc.yaml"), cmd=entry["cmd"],
                             wdir=str(root), outs=[out["path"] for out in entry["outs"]])
        StageLoader.fill_from_lock(stage, entry)
        for out in stage.outs:
            if out.exists:
                continue
            try:
                out.checkout()
            except Exception:  # noqa: BLE001 - not in the cache: git, or named below
                pass
            if not out.exists:
                # An uncached output (metrics/, in git) the run-cache never copied: a fresh clone's
                # comes from git, and dvc.lock recorded the committed version.
                subprocess.run(["git", "checkout", "HEAD", "--", out.def_path], cwd=root, capture_output=True)
                if out.exists and out.changed_checksum():
                    missing.append(f"{out} (put back as committed, which is not what dvc.lock records)")
                    continue
            if not out.exists:
                missing.append(str(out))
    return missing
