"""The report from generated inputs (no training): sections, the markdown and its files, the
confusion matrix as a table or an image by class count, the per-class order, the change of the
metrics against a git revision (or why a baseline run of another data set or task is not comparable),
and the offline `dvc plots` page template."""

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vistage.params import Params
from vistage.reporting.sections import build_report, write_report
from vistage.reporting.blocks import Change, Table

from .conftest import ROOT, run_env
from .report_data import CLASSIFY, VQA, write_report_inputs, write_vqa_report_inputs


def _write(tmp_path: Path, inputs, layout=CLASSIFY) -> tuple[str, str, Path]:
    reports = tmp_path / "reports"
    write_report(build_report(Params(), inputs, layout), reports / "index.html", reports / "report.md", reports / "report_files")
    return (reports / "index.html").read_text(), (reports / "report.md").read_text(), reports


def _section(page: str, title: str) -> str:
    return page.split(f">{title}</h2>")[1].split("<h2")[0]


def test_small_report_has_every_section_in_html_and_markdown(tmp_path):
    page, md, reports = _write(tmp_path, write_report_inputs(tmp_path, n_classes=10, n_test=300))
    titles = ["Test metrics", "Change", "Inference cost", "Last training epoch", "Learning curves", "Calibration",
              "Confusion matrix", "Per class", "Misclassified examples", "Grad-CAM", "Params"]
    assert re.findall(r"<h2 id=\"[^\"]+\">([^<]+)</h2>", page) == titles
    assert re.findall(r"^## (.+)$", md, re.M) == titles
    assert "<table class=cm>" in _section(page, "Confusion matrix")  # 10 classes: a table of counts
    assert page.count("<svg") == 4  # loss, accuracy, learning rate, reliability
    assert "812.5" in _section(page, "Inference cost") and "1,234,567" in _section(page, "Inference cost")
    assert _section(page, "Grad-CAM").count("<img") == 12
    # markdown: every linked file is written, and nothing else
    linked = set(re.findall(r'src="(report_files/[^"]+)"', md))
    written = {f"report_files/{p.name}" for p in (reports / "report_files").iterdir()}
    assert linked == written and len(written) == 4 + 24 + 12  # 4 charts, 24 mistakes, 12 Grad-CAM


def test_a_one_epoch_curve_is_a_dot_and_a_refit_head_says_what_its_val_figures_are(tmp_path):
    from vistage.reporting.charts import line_chart

    # a polyline of one point draws nothing: a one-epoch run (head: solve) showed empty charts
    assert "<circle" in line_chart("loss", {"train": ([1], [0.5])})
    assert "<circle" not in line_chart("loss", {"train": ([1, 2], [0.5, 0.4])})
    inputs = write_report_inputs(tmp_path, n_classes=10, n_test=100)
    reports = tmp_path / "reports"
    for params in (Params(), Params(head_refit=True)):
        write_report(build_report(params, inputs, CLASSIFY), reports / "index.html", reports / "report.md",
                     reports / "report_files")
        said = "before its refit on the train and val images" in _section((reports / "index.html").read_text(),
                                                                           "Last training epoch")
        assert said == params.head_refit


def test_the_vqa_scores_show_wups_and_the_single_answer_part(tmp_path):
    inputs = write_vqa_report_inputs(tmp_path, ["what is it?", "what is on it?"], ["circle", "book, pen"])
    page, md, _ = _write(tmp_path, inputs, VQA)
    scores = _section(page, "Test metrics")
    # wups_0.9 has a dot of its own: it once fell out of the table with the nested scores
    assert "wups_0.9" in scores and "0.2500" in scores and "wups_0.0" in scores
    assert "Questions whose answer is one item, not a list" in scores and "0.1250" in scores
    assert "| wups\\_0.9 | 0.2500 |" in md


def test_the_page_loads_nothing_from_elsewhere(tmp_path):
    page, _, _ = _write(tmp_path, write_report_inputs(tmp_path, n_classes=10, n_test=300))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', page))


def test_200_classes_confusion_is_an_image_and_per_class_is_worst_first(tmp_path):
    page, md, reports = _write(tmp_path, write_report_inputs(tmp_path, n_classes=200, n_test=10_000))
    confusion = _section(page, "Confusion matrix")
    assert "<table class=cm>" not in confusion and confusion.count("<img") == 1
    assert (reports / "report_files" / "confusion.png").stat().st_size < 200_000
    pairs = re.findall(r"<tr><td class=l>[^<]+</td><td class=l>[^<]+</td><td>(\d+)</td>", confusion)
    assert len(pairs) == 15 and [int(n) for n in pairs] == sorted((int(n) for n in pairs), reverse=True)
    per_class = _section(page, "Per class")
    assert "<table class=sortable>" in per_class and "<div class=long>" in per_class
    f1 = [float(row[3]) for row in re.findall(r"<tr><td class=l>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>"
                                               r"<td>([^<]+)</td>", per_class)]
    assert len(f1) == 200 and f1 == sorted(f1)
    assert len(page) < 1_000_000 and "<details>" in md


def test_report_without_the_optional_inputs(tmp_path):
    inputs = write_report_inputs(tmp_path, n_classes=10, n_test=100, optional=False)
    page, _, _ = _write(tmp_path / "a", inputs)
    assert "Inference cost" not in page and "Grad-CAM" not in page and "Calibration" not in page
    inputs.cost, inputs.gradcam = tmp_path / "missing.json", tmp_path / "missing"
    page, _, _ = _write(tmp_path / "b", inputs)
    assert "Not measured (" in page and "No overlays (" in page


@pytest.mark.parametrize(("name", "content", "message"), [
    ("metrics/cost.json", "{not json", r"cost.json: not valid JSON \(line 1\)"),
    ("metrics/confusion_pairs.csv", "actual,predicted\na,b\n", r"confusion_pairs.csv: no column count"),
    ("reports/gradcam/index.csv", "file,id,label,predicted,confidence,kind\n../../x.png,1,a,b,0.5,mistake\n",
     r"index.csv: file '../../x.png' is outside"),
])
def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path, name, content, message):
    from vistage.errors import VistageError

    inputs = write_report_inputs(tmp_path, n_classes=10, n_test=100)
    (tmp_path / name).write_text(content)
    with pytest.raises(VistageError, match=message):
        build_report(Params(), inputs, CLASSIFY)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def _change_table(inputs) -> Table:
    from vistage.reporting.sections import change_section

    return change_section(Params(), inputs).blocks[-1]


def test_change_against_the_last_commit_and_other_revisions(tmp_path):
    inputs = write_report_inputs(tmp_path, n_classes=10, n_test=100)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "metrics/eval.json")
    _git(tmp_path, "commit", "-qm", "baseline run")
    scores = json.loads(inputs.metrics.read_text())
    before = dict(scores["test"])
    scores["test"].update(accuracy=before["accuracy"] + 0.05, loss=before["loss"] + 0.1)
    inputs.metrics.write_text(json.dumps(scores))
    table = _change_table(inputs)
    assert table.header[:4] == ["metric", "test: HEAD", "test: now", "change"]
    rows = {row[0]: row for row in table.rows}
    assert rows["accuracy"][3] == Change(pytest.approx(0.05), True)
    assert rows["loss"][3] == Change(pytest.approx(0.1), False)  # a higher loss is worse
    assert rows["images"][3] == Change(0, None)
    page, md, _ = _write(tmp_path, inputs)
    assert "baseline run" in _section(page, "Change") and "+0.0500 ✓" in page and "+0.1000 ✗" in md

    for rev, why in (("nope", "there is no revision 'nope'"), ("HEAD~1", "there is no revision 'HEAD~1'"),
                     ("", "no baseline revision asked for")):
        inputs.baseline = rev
        assert why in html.unescape(_write(tmp_path, inputs)[0])


def test_change_outside_git_says_so(tmp_path):
    page, md, _ = _write(tmp_path, write_report_inputs(tmp_path, n_classes=10, n_test=100))
    assert "is not in a git repository" in _section(page, "Change") and "is not in a git repository" in md


def _commit_as_baseline(root: Path, inputs, baseline) -> None:
    """Commit `baseline`'s metrics and per-class table in the place of `inputs`' (left as they were)."""
    kept = {path: path.read_bytes() for path in (inputs.metrics, inputs.per_class)}
    shutil.copy(baseline.metrics, inputs.metrics)
    shutil.copy(baseline.per_class, inputs.per_class)
    _git(root, "init", "-q")
    _git(root, "add", "metrics/eval.json", "metrics/per_class.csv")
    _git(root, "commit", "-qm", "the baseline run")
    for path, data in kept.items():
        path.write_bytes(data)


def _change(root: Path, inputs, layout=CLASSIFY) -> tuple[str, str]:
    """The change section: the page's as its text, the markdown's."""
    page, md, _ = _write(root, inputs, layout)
    text = html.unescape(re.sub(r"<[^>]+>", "\n", _section(page, "Change")))
    return text, md.split("## Change\n")[1].split("\n## ")[0]


@pytest.mark.parametrize(("now", "then", "why"), [
    ((3, 100), (10, 100), "other classes (3 now, 10 then)"),
    ((10, 100), (10, 300), "other split sizes (test: 100 images now, 300 then; val: 50 images now, 150 then)"),
])
def test_change_against_another_data_set_is_not_comparable(tmp_path, now, then, why):
    inputs = write_report_inputs(tmp_path / "now", *now)
    _commit_as_baseline(tmp_path / "now", inputs, write_report_inputs(tmp_path / "then", *then, seed=1))
    page, md = _change(tmp_path / "now", inputs)
    for text in (page, md):
        assert "Not comparable with HEAD (" in text and "the baseline run" in text and why in text, text
        assert "✓" not in text and "✗" not in text and "|" not in text  # one line, no table
    assert md.strip().count("\n") == 0


def test_change_against_the_other_task_is_not_comparable(tmp_path):
    inputs = write_vqa_report_inputs(tmp_path / "now", ["what is it?", "is it red?"], ["circle", "yes"])
    _commit_as_baseline(tmp_path / "now", inputs, write_report_inputs(tmp_path / "then", 10, 100))
    page, md = _change(tmp_path / "now", inputs, VQA)
    assert "another task (vqa now, classify then)" in page and "another task (vqa now, classify then)" in md
    assert "✗" not in page + md



def test_change_of_a_run_that_held_nothing_out_against_a_held_out_baseline_is_not_comparable(tmp_path):
    """Scores of the training images (split train) have no counterpart in a baseline of test and
    val: one line saying so, not a table of dashes."""
    inputs = write_report_inputs(tmp_path / "now", 10, 100)
    scores = json.loads(inputs.metrics.read_text())
    inputs.metrics.write_text(json.dumps({"train": scores["test"]}))
    _commit_as_baseline(tmp_path / "now", inputs, write_report_inputs(tmp_path / "then", 10, 100, seed=1))
    page, md = _change(tmp_path / "now", inputs)
    for text in (page, md):
        assert "Not comparable with HEAD (" in text and "no split in common (train now, test, val then)" in text
        assert "|" not in text

def test_change_against_the_same_data_set_shows_each_change(tmp_path):
    """The same classes and split sizes, other predictions (another seed): a table of changes."""
    inputs = write_report_inputs(tmp_path / "now", 10, 100)
    _commit_as_baseline(tmp_path / "now", inputs, write_report_inputs(tmp_path / "then", 10, 100, seed=1))
    page, md = _change(tmp_path / "now", inputs)
    assert "Against HEAD (" in page and "Not comparable" not in page + md
    scores = {name: json.loads(path.read_text())["test"]["accuracy"]
              for name, path in (("now", inputs.metrics), ("then", tmp_path / "then" / "metrics" / "eval.json"))}
    assert scores["now"] != scores["then"]
    mark = "✓" if scores["now"] > scores["then"] else "✗"
    assert f"{scores['now'] - scores['then']:+.4f} {mark}" in page and mark in md


def test_the_stage_writes_both_reports_with_a_baseline_from_the_command_line(tmp_path):
    write_report_inputs(tmp_path, n_classes=10, n_test=100)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "metrics")
    _git(tmp_path, "commit", "-qm", "first")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "second")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    args = ["--params", "params.yaml", "--metrics", "metrics/eval.json", "--live", "metrics/train",
            "--per-class", "metrics/per_class.csv", "--confusion", "metrics/confusion.csv",
            "--predictions", "reports/predictions.csv", "--store", "data/prepared", "--out", "out/index.html",
            "--markdown", "out/report.md", "--markdown-files", "out/report_files", "--baseline", "HEAD~1"]
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), *args], cwd=tmp_path, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Against HEAD~1 (" in (tmp_path / "out" / "index.html").read_text()
    assert "first" in (tmp_path / "out" / "report.md").read_text()


def test_offline_plots_template_inlines_vega_and_keeps_dvcs_placeholder():
    from vistage.offline_plots import offline_template

    page = offline_template()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # DVC's CDN script tags are left out
    assert "window.vegaEmbed" in page and not re.search(r"<script[^>]+src=", page)


def test_confusion_pairs_plot_template_reads_the_pairs():
    template = json.loads((ROOT / ".dvc" / "plots" / "confusion_pairs.json").read_text())
    text = json.dumps(template)
    assert template["data"]["values"] == "<DVC_METRIC_DATA>" and "<DVC_METRIC_X>" in text and "datum.count" in text
    assert "v5.json" in template["$schema"]  # the Vega-Lite major version the offline bundle renders
