"""The `vistage` command, in-process with Typer's runner (a real process only where one is the
point: the import-time check)."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vistage.cli import app

STAGES = ("prepare", "split", "train", "predict", "evaluate", "report", "export")


def invoke(*args):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_help_lists_every_stage_and_tool():
    result = invoke("--help")
    assert result.exit_code == 0
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    tools = ("list", "recipe", "push-run-cache")
    assert [c for c in listed if c in (*STAGES, *tools)] == [*STAGES, *tools]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_the_command_of_its_file(stage):
    """`vistage NAME` and `python stages/NAME.py` are one command: same options, required paths."""
    module = __import__(f"stages.{stage}", fromlist=["app"])
    via_vistage = invoke(stage, "--help").output
    via_file = CliRunner().invoke(module.app, ["--help"], env={"COLUMNS": "200"}).output
    assert via_vistage.split("Options")[1] == via_file.split("Options")[1]
    assert "[required]" in via_file
    missing = invoke(stage)
    assert missing.exit_code == 2 and "Missing option" in missing.output


def test_help_imports_no_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom vistage.cli import app\n"
            "for args in (['--help'], *[[s, '--help'] for s in %r]):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n") % (STAGES,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_list_shows_every_registry_with_its_keywords():
    from vistage.registries import ALL

    result = invoke("list")
    assert result.exit_code == 0
    for name, registry in ALL.items():
        assert name in result.output
        for keyword in registry.own_names():
            assert keyword in result.output, (name, keyword)


def test_list_one_registry_in_full():
    names = invoke("list", "model").output.split()
    assert "resnet18" in names and "simple_cnn" in names and len(names) > 1000


def test_list_unknown_kind_is_one_line_and_exit_2():
    from vistage.errors import VistageError

    result = invoke("list", "modles")  # in-process the error propagates; `run` prints it (below)
    assert isinstance(result.exception, VistageError) and "did you mean 'models'" in str(result.exception)
    proc = subprocess.run([sys.executable, "-m", "vistage", "list", "modles"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "did you mean 'models'" in proc.stderr
