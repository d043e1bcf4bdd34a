"""The report and the offline `dvc plots` page in a real headless Chromium, from generated data at
10 and at 200 classes (10,000 test images): no errors, every image decodes, the per-class table
sorts, and a screenshot is kept under the test's tmp dir (also copied to $VISTAGE_SCREENSHOTS
when set, to look at)."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from vistage.params import Params
from vistage.reporting.sections import build_report, write_report

from .browser import chromium, probe_page, screenshot  # noqa: F401 -- chromium is a fixture
from .conftest import ROOT, run
from .report_data import CLASSIFY, write_report_inputs

pytestmark = pytest.mark.slow


def _keep(shot: Path) -> None:
    if os.environ.get("VISTAGE_SCREENSHOTS"):
        folder = Path(os.environ["VISTAGE_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / shot.name)


@pytest.mark.parametrize(("classes", "images"), [(10, 300), (200, 10_000)])
def test_report_in_chromium(chromium, tmp_path, classes, images):  # noqa: F811
    inputs = write_report_inputs(tmp_path, classes, images)
    page = tmp_path / "reports" / "index.html"
    write_report(build_report(Params(), inputs, CLASSIFY), page)
    seen = probe_page(chromium, page, tmp_path, selectors=("svg", "figure img"))
    assert seen["errors"] == []
    expected = 24 + 12 + (1 if classes > 20 else 0)  # mistakes, Grad-CAM, the confusion heatmap
    assert len(seen["images"]) == expected
    assert all(img["complete"] and img["width"] > 0 and img["height"] > 0 for img in seen["images"]), seen["images"]
    assert seen["counts"] == {"svg": 4, "figure img": 1 if classes > 20 else 0}
    names = _class_names(inputs)
    assert seen["sorted"] == [min(names), max(names)]  # a click on "class": ascending, another: descending
    shot = screenshot(chromium, page, tmp_path / f"report-{classes}-classes.png", tmp_path,
                      height=5000 if classes > 20 else 4200)
    _keep(shot)


def _class_names(inputs) -> list[str]:
    import pandas as pd

    return pd.read_csv(inputs.per_class, dtype={"class": str})["class"].tolist()


def _offline_plots_page(root: Path, n_classes: int, n_test: int, names: list[str] | None = None) -> Path:
    """`python -m vistage.offline_plots` in a new DVC project whose plots are the pipeline's (the
    class-pair heatmap with .dvc/plots/'s template, the reliability diagram, per-class F1)."""
    write_report_inputs(root, n_classes, n_test, names=names)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    plots = [{"metrics/confusion_pairs.csv": {"template": "confusion_pairs", "x": "predicted", "y": "actual"}},
             {"metrics/calibration.csv": {"template": "linear", "x": "confidence", "y": "accuracy"}},
             {"metrics/per_class.csv": {"template": "bar_horizontal", "x": "f1", "y": "class"}}]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    run([sys.executable, "-m", "vistage.offline_plots"], root)
    return root / "reports" / "plots" / "index.html"


def test_a_class_name_cannot_end_the_offline_plots_page_s_script_tags(tmp_path):
    """DVC writes each plot's data into a <script> tag: a class named `</script><script>...` would
    end it and run (vistage has DVC's renderer write `<` as `\\u003c` there)."""
    hostile = "</script><script>window.__pwned=9</script>"
    text = _offline_plots_page(tmp_path, 3, 60, names=["cat", hostile, "dog"]).read_text()
    assert hostile not in text and "\\u003c/script>\\u003cscript>window.__pwned=9" in text
    assert len(re.findall(r"<script", text)) == 1 + 3  # the inlined Vega bundle and one per plot


def test_offline_dvc_plots_page_renders_the_confusion_pairs_at_200_classes(chromium, tmp_path):  # noqa: F811
    """`python -m vistage.offline_plots` (dvc plots show with the inlined Vega bundle) in a new
    DVC project whose plots are the pipeline's: the class-pair heatmap with .dvc/plots/'s
    template, the reliability diagram and per-class F1. Chromium has no network here to fall back on:
    the page has no other source for its scripts."""
    page = _offline_plots_page(tmp_path, 200, 10_000)
    assert not re.search(r"<script[^>]+src=", page.read_text())  # DVC's CDN scripts are left out
    pairs = "#metrics_confusion_pairs_csv .mark-rect path"
    seen = probe_page(chromium, page, tmp_path, wait_ms=3000,
                      selectors=(".vega-embed svg.marks", pairs, "#metrics_calibration_csv svg.marks"))
    assert seen["errors"] == []
    n_pairs = len(open(tmp_path / "metrics" / "confusion_pairs.csv").readlines()) - 1
    assert seen["counts"][".vega-embed svg.marks"] == 3 and seen["counts"][pairs] >= n_pairs  # a rect per pair
    _keep(screenshot(chromium, page, tmp_path / "dvc-plots-200-classes.png", tmp_path, width=1400, height=1800))


def test_the_probe_sees_script_errors_and_broken_images(chromium, tmp_path):  # noqa: F811
    """The checks above would pass on a page that hides its failures: this one does not."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><script>console.error("seen")</script></head><body>'
                    '<img alt=bad src="data:image/png;base64,AAAA"><script>undefinedFunction()</script></body></html>')
    seen = probe_page(chromium, page, tmp_path)
    assert any("console.error: seen" in e for e in seen["errors"])
    assert any("undefinedFunction" in e for e in seen["errors"])
    assert seen["images"][0]["width"] == 0
