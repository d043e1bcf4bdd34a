"""`dvc plots show` (or `diff`) as a page that renders without a network.

DVC's page loads Vega, Vega-Lite and vega-embed from a CDN, so offline it stays blank. DVC takes
an HTML template of our own (`--html-template`); this one inlines the three libraries, bundled by
the vl-convert-python package (installed from PyPI with vistage), and leaves out DVC's `{scripts}`
(the CDN tags).

    python -m vistage.offline_plots                 # dvc plots show -> reports/plots/index.html
    python -m vistage.offline_plots diff HEAD~1     # dvc plots diff HEAD~1
"""

import subprocess
import sys
import tempfile
from pathlib import Path

# Vega-Lite 5 renders DVC's templates (their $schema is vega-lite v5) and ours in .dvc/plots/
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>DVC plots</title>
<script>
/* Vega {vega}, Vega-Lite {vega_lite} and vega-embed {embed}, bundled by vl-convert-python: no network needed.
   In a function, so that the bundle's top-level names cannot clash with DVC's plot scripts. */
(function () {{
{bundle}
}})();
</script>
<style>body {{ font-family: system-ui, sans-serif; }} table {{ border-spacing: 15px; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def offline_template() -> str:
    """DVC's HTML page with the Vega libraries inlined; `{plot_divs}` is left for DVC to fill."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    if "</script" in bundle.lower() or "{plot_divs}" in bundle:  # would end the tag, or be filled by DVC
        raise RuntimeError("the Vega bundle of vl-convert-python cannot be inlined in a <script> tag")
    return PAGE.format(
        bundle=bundle, vega=vl_convert.get_vega_version(), vega_lite=VEGA_LITE_VERSION,
        embed=vl_convert.get_vega_embed_version())


def write_template(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(offline_template(), encoding="utf-8")
    return path


# DVC writes each plot's spec into a <script> tag as json.dumps(spec), so a `</` in the data (a
# class named "</script><script>...") would end the tag and run what follows, and a `<!--` would
# change how the tag ends. JSON has `<` only inside strings, where `\u003c` is the same character
# to JSON and to JavaScript and is no markup: dvc runs with its Vega renderer writing that.
RUN_DVC = r"""
import sys
import dvc_render.vega as vega
plain = vega.VegaRenderer.partial_html
vega.VegaRenderer.partial_html = lambda self, **kwargs: plain(self, **kwargs).replace("<", "\\u003c")
from dvc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def show(dvc_args: list[str], out: str = "reports/plots") -> int:
    """Run `dvc plots ARGS --html-template T -o OUT` with the offline template; dvc's exit code."""
    Path(out).mkdir(parents=True, exist_ok=True)  # dvc makes only the last folder
    with tempfile.TemporaryDirectory() as tmp:
        template = write_template(Path(tmp) / "offline.html")
        args = dvc_args or ["show"]
        cmd = [sys.executable, "-c", RUN_DVC, "plots", *args, "--html-template", str(template), "-o", out]
        return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(show(sys.argv[1:]))
