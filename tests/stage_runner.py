"""Stage commands run in processes forked from one that has already imported the library.

Each run is still a process of its own, with its own argv, working directory, environment, exit
code, stdout and stderr, running the stage file as `__main__` exactly as `python stages/NAME.py`
does. What it skips is interpreter start-up and the imports of torch, timm and vistage: 2 to 5 s a
command on 2 cores, which were most of the guarantees table's time (over a hundred commands, each
failing in well under a second once imported). Uses the standard library's forkserver with
preloaded modules.
"""

import multiprocessing
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# what the six stage commands import on their way to a check (each module once, in the server)
PRELOAD = ["torch", "timm", "timm.optim", "PIL.Image", "pandas", "typer", "vistage.command", "vistage.params",
           "vistage.training", "vistage.evaluation", "vistage.data.sources", "vistage.data.store",
           "vistage.tasks.classify", "vistage.tasks.vqa"]

_context = None
# Process.start() polls every unjoined process of this interpreter (multiprocessing's _cleanup), from
# whichever thread starts one; a poll racing another thread's join reads the exit code that the join
# then misses (EOF: the exit code reads as 255). Starts are serialised and each process is taken off
# that list at once, so only the thread that started a process ever reads its exit code.
_starting = threading.Lock()


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _stage_main(target: list[str], args: list[str], cwd: str, env: dict, stdout: str, stderr: str,
                fault: str | None) -> None:
    """In the forked child: become `python SCRIPT ARGS` (or `python -m MODULE ARGS`: target
    ["-m", MODULE]) run in CWD under ENV, with FAULT, a function of tests/faults.py, injected first."""
    multiprocessing.set_start_method(None, force=True)  # the platform's default, as in `python SCRIPT`
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        written = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(written, fd)
        os.close(written)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    module = target[1] if target[0] == "-m" else None
    sys.argv = [module or target[0], *args]
    # as Python does: the script's folder first, or with -m the working directory
    sys.path.insert(0, cwd if module else str(Path(target[0]).resolve().parent))
    if fault:  # "name" or "name=argument"
        from . import faults

        name, _, argument = fault.partition("=")
        getattr(faults, name)(*([argument] if argument else []))
    if module:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target[0], run_name="__main__")  # SystemExit's code becomes the exit code, as in Python


def run_stage(cmd: list[str], cwd: Path, env: dict, timeout: float = 300, fault: str | None = None
              ) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)` for a command
    `[python, stages/NAME.py, ...]` or `[python, -m, MODULE, ...]`, in a process forked from the
    preloaded server."""
    assert Path(cmd[0]).name.startswith("python") and (cmd[1].endswith(".py") or cmd[1] == "-m"), cmd
    target, args = (cmd[1:3], cmd[3:]) if cmd[1] == "-m" else (cmd[1:2], cmd[2:])
    out_dir = Path(tempfile.mkdtemp(prefix="stage-run-"))
    stdout, stderr = out_dir / "stdout", out_dir / "stderr"
    process = _forkserver().Process(target=_stage_main, args=(target, args, str(cwd), env, str(stdout), str(stderr),
                                                                  fault))
    with _starting:
        process.start()
        multiprocessing.process._children.discard(process)
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        raise subprocess.TimeoutExpired(cmd, timeout)
    proc = subprocess.CompletedProcess(cmd, process.exitcode, stdout.read_text(), stderr.read_text())
    shutil.rmtree(out_dir)
    return proc
