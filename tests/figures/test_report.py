"""The figures stage and the report end to end on a fake finished run: the figures rules run through
Snakemake on the stage outputs, `snakemake --report` builds report.html, and headless Chromium opens
it: every embedded figure decodes to an image of its size, and a screenshot of the report's own
figure view is not blank."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pythia_repro.config import load_suite
from pythia_repro.figures.paper import paper_figures
from pythia_repro.figures.stage import section_outputs
from pythia_repro.testing.fake_results import write_fake_results

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

# Appended to a copy of the report: decode every embedded image result and record its size, then
# show the first evaluation figure in the report's own image view (what a click on it shows).
PROBE = """
<script>
window.addEventListener("load", function () {
  const paths = Object.keys(results).filter(p => /\\.png$/.test(p));
  const sizes = {};
  let left = paths.length;
  const done = () => {
    const pre = document.createElement("pre"); pre.id = "probe"; pre.style.display = "none";
    pre.textContent = JSON.stringify(sizes); document.body.appendChild(pre);
  };
  paths.forEach(p => {
    const img = new Image();
    img.onload = () => { sizes[p] = [img.naturalWidth, img.naturalHeight]; if (--left === 0) done(); };
    img.onerror = () => { sizes[p] = [0, 0]; if (--left === 0) done(); };
    img.src = results[p].data_uri;
  });
  const first = paths.find(p => /evaluation_.*\\.png$/.test(p)) || paths[0];
  const show = setInterval(() => {  // once the React app has mounted (it sets the global `app`)
    if (typeof app === "undefined") return;
    clearInterval(show);
    setTimeout(() => app.setView({content: "img", contentPath: results[first].data_uri, resultPath: first}), 300);
  }, 100);
});
</script>
"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,1000", "--virtual-time-budget=8000", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["results_dir"] = str(root / "results")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    suite = load_suite(str(config))
    write_fake_results(suite)
    targets = [str(p) for s in paper_figures(suite) for p in section_outputs(suite, s)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    base = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(REPO), "--configfile", str(config)]
    rules = ["figures_loss", "figures_evaluation", "figures_memorization", "figures_term_frequency",
             "figures_gender_bias"]
    run = subprocess.run([*base, "--cores", "2", "--allowed-rules", *rules, "--", *targets], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = suite.layout.report_html
    run = subprocess.run([*base, "--report", str(report), "--", *targets], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return suite, report


def test_every_figure_and_table_is_written(built):
    suite, _ = built
    sections = paper_figures(suite)
    assert {"loss", "evaluation", "memorization", "term_frequency", "gender_bias"} <= set(sections)
    for section in sections:
        for path in section_outputs(suite, section):
            assert path.is_file() and path.stat().st_size > 0, path
    assert (suite.layout.paper_figure("loss", "pdf")).read_bytes().startswith(b"%PDF")
    # The default suite's models are not Pythia's: an empty parity table, not a failure.
    assert suite.layout.parity_table.read_text().startswith("model,task,num_fewshot,metric")


def test_report_is_one_html_file_with_every_figure(built):
    suite, report = built
    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:2000]
    for section in paper_figures(suite):
        for path in section_outputs(suite, section):
            if path.suffix in (".png", ".html"):
                assert path.name in html, path.name
    for category in ("1 Training", "2 Evaluation", "3 Memorization", "4 Term frequency", "5 Gender bias"):
        assert category in html


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (make test installs it as root with apt-get)")
def test_report_renders_in_chromium(built, tmp_path):
    suite, report = built
    page = tmp_path / "probe.html"
    head, tag, tail = report.read_text().rpartition("</body>")  # the last one: embedded scripts hold others
    assert tag, "report.html has no </body>"
    page.write_text(head + PROBE + tag + tail)
    dom = _chromium("--dump-dom", page.as_uri())
    match = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    assert match, dom.stderr[-2000:]
    sizes = json.loads(match.group(1).replace("&quot;", '"'))
    pngs = [p.name for s in paper_figures(suite) for p in section_outputs(suite, s) if p.suffix == ".png"]
    assert set(pngs) <= {Path(k).name for k in sizes}
    from PIL import Image

    for key, (w, h) in sizes.items():
        assert w > 0 and h > 0, key
        local = suite.layout.figures_dir / Path(key).name
        if local.is_file():
            assert Image.open(local).size == (w, h), key

    shot = tmp_path / "report.png"
    run = _chromium(f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert rgb.shape == (1000, 1400, 3)
    assert rgb.std() > 10  # not a blank page
    # The figure view shows the evaluation figure: matplotlib's blue (C0) and orange (C1) lines.
    for color in ((31, 119, 180), (255, 127, 14)):
        near = (np.abs(rgb - np.array(color)).sum(axis=2) < 40).sum()
        assert near > 200, f"no {color} pixels: the figure did not render"
    keep = os.environ.get("PYTHIA_REPRO_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
