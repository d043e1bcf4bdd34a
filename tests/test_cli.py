import subprocess
import sys

from .conftest import run_env


def _vistage(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vistage", *args], capture_output=True, text=True,
                          env=run_env(), cwd=cwd)


def test_help_lists_the_stages():
    proc = _vistage("--help")
    assert proc.returncode == 0
    for stage in ("prepare", "split", "train", "evaluate", "predict", "report", "list"):
        assert stage in proc.stdout


def test_help_does_not_import_torch():
    code = ("import sys\nfrom vistage.cli import app\nfrom typer.testing import CliRunner\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "for c in ['train', 'prepare']:\n    assert CliRunner().invoke(app, [c, '--help']).exit_code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported by a stage --help'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_list_shows_every_registry():
    proc = _vistage("list")
    assert proc.returncode == 0
    for word in ("models", "optimizers", "schedulers", "losses", "augmentations", "sources",
                 "simple_cnn", "onecycle", "plateau", "cross_entropy", "crop", "digits", "timm"):
        assert word in proc.stdout


def test_list_one_registry_in_full():
    proc = _vistage("list", "model")
    names = proc.stdout.split()
    assert "resnet18" in names and "simple_cnn" in names and len(names) > 1000


def test_list_unknown_kind():
    proc = _vistage("list", "modles")
    assert proc.returncode == 2 and "did you mean 'models'" in proc.stderr
