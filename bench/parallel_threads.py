"""Several training processes on one CPU, as `dvc queue start -j N` runs them: torch's threads each,
against the cores split between them (`threads` in params.yaml).

    python bench/parallel_threads.py                  # 2 jobs of each workload
    python bench/parallel_threads.py --jobs 3 --workloads vqa-head

Workloads, each a fresh process:
  vqa-head     the daquar recipe's head on cached image features (BiLSTM questions of 10 words,
               concat fusion, 512 hidden, 917 answers, batch 64, AdamW): what its train stage spends
               its epochs on; a fixed number of steps on random inputs
  train-stage  the train stage itself (stages/train.py) on the embedded default (scikit-learn's
               digits, simple_cnn, params.yaml as committed), after prepare and split in a
               temporary folder

Three ways to run `--jobs` of a workload, one after another in this run, on this machine:
  one by one    each with every core (torch's default): the baseline
  together      all at once, each with every core: what `dvc queue start -j N` gives by default
  split         all at once, each with cores // jobs threads (`-S threads=...`)
Prints the wall time of each way and its ratio to one by one (lower is better); the machine's load
average before and after, since it may be shared. Compare ratios within a run.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vqa_head(steps: int) -> None:
    import torch

    from vistage.tasks.vqa.model import BiLSTM, VqaModel, concat

    torch.manual_seed(0)
    question = BiLSTM(900, 300, 1, 0.3)
    model = VqaModel(torch.nn.Identity(), 1280, question, concat(1280, question.out_dim, 512, 0.3), 512, 0.3, 917)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, tokens = torch.rand(64, 1280), torch.randint(2, 900, (64, 10))
    lengths, answers = torch.full((64,), 10), torch.randint(0, 917, (64,))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images, tokens=tokens, lengths=lengths), answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def prepared_default(folder: Path) -> None:
    """The default pipeline's prepare and split into `folder` (done once, before any timing)."""
    py = sys.executable
    subprocess.run([py, "stages/prepare.py", "--params", "params.yaml", "--out", str(folder / "prepared"),
                    "--metrics", str(folder / "data.json")], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([py, "stages/split.py", "--params", "params.yaml", "--store", str(folder / "prepared"),
                    "--out", str(folder / "split.csv"), "--metrics", str(folder / "split.json")], cwd=ROOT, check=True, capture_output=True)


def train_stage_command(folder: Path, job: int, threads: int) -> list[str]:
    import yaml

    params = folder / f"params-{job}-{threads}.yaml"
    params.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "params.yaml").read_text()), "threads": threads},
                                     sort_keys=False))
    out = folder / f"run-{job}-{threads}-{time.monotonic_ns()}"
    return [sys.executable, "stages/train.py", "--params", str(params), "--store", str(folder / "prepared"),
            "--split", str(folder / "split.csv"), "--models", str(out / "models"), "--live", str(out / "live")]


def command(workload: str, folder: Path, job: int, threads: int, steps: int) -> list[str]:
    if workload == "train-stage":
        return train_stage_command(folder, job, threads)
    return [sys.executable, __file__, "--worker", workload, "--threads", str(threads), "--steps", str(steps)]


def wall(commands: list[list[str]], together: bool) -> float:
    """Seconds to run every command: one after another, or all at once."""
    started = time.perf_counter()
    if together:
        procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                raise SystemExit(f"a job failed ({p.returncode}): {err.decode()[-500:]}")
    else:
        for c in commands:
            subprocess.run(c, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def load() -> str:
    return "%.1f" % os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workloads", nargs="+", default=["vqa-head", "train-stage"], choices=["vqa-head", "train-stage"])
    ap.add_argument("--steps", type=int, default=300, help="vqa-head: training steps a job")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT / "src"))
        from vistage.runtime import use_threads

        use_threads(args.threads)  # what the stages do with params.yaml's threads
        vqa_head(args.steps)
        return

    cores = os.cpu_count() or 1
    split_threads = max(1, cores // args.jobs)
    print(f"{cores} cores, {args.jobs} jobs; load {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "train-stage" in args.workloads:
            prepared_default(folder)
        for workload in args.workloads:
            def jobs(threads: int) -> list[list[str]]:
                return [command(workload, folder, j, threads, args.steps) for j in range(args.jobs)]

            one_by_one = wall(jobs(0), together=False)
            together = wall(jobs(0), together=True)
            split = wall(jobs(split_threads), together=True)
            print(f"{workload:12s} one by one {one_by_one:6.1f} s;  together, {cores} threads each "
                  f"{together:6.1f} s ({together / one_by_one:.2f}x);  together, {split_threads} each "
                  f"{split:6.1f} s ({split / one_by_one:.2f}x)  load {load()}", flush=True)


if __name__ == "__main__":
    main()
