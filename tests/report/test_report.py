"""The report: rebuilt from a stored run folder alone, every figure present, none broken.

The stored run folder is synthetic (tests/synthetic.py: the files each step writes, per
docs/architecture.md). The page is also rendered with headless Chromium (Debian's `chromium`) to
test-artifacts/report*.png, and the browser itself says whether every <img> decoded.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from synthetic import make_run_folder

from polaris_lib.report.ablation import load_ablations
from polaris_lib.report.build import build_compare_report, build_report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
# the kit's shipped ablation figure: in every single-run report while its result files exist
ABLATION = {"ablation"} if load_ablations() else set()
# report-made figures, then one per step figure file the synthetic steps write
REPORT_FIGS = {"probe_overlay", "difficulty", "training", "easy_drop", "pass_at_k", *ABLATION}
STEP_FIGS = {
    *(f"01_temperature_probe_stage{k}/fig_probe" for k in (1, 2, 3)),
    "02_curate_by_difficulty/fig_pass_rates",
    *(f"03_grpo_stage_stage{k}/fig_rewards" for k in (1, 2, 3)),
    "04_length_extrapolation/fig_avg_vs_length",
    "05_eval_aime/fig_avg_by_checkpoint",
}
COMPARE_FIGS = {"probe_overlay", "difficulty", "training", "easy_drop", "yarn", "eval", "pass_at_k"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = make_run_folder(root / "runA", seed=0)
    b = make_run_folder(root / "runB", seed=1, skip=("04_length_extrapolation", "05_eval_aime"))
    return a, b


def images(html: str) -> dict[str, Image.Image]:
    """Every embedded image by its data-figure id, decoded (raises if any is not a valid PNG)."""
    out = {}
    for fig_id, b64 in re.findall(
        r'<img data-figure="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', html
    ):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()
        out[fig_id] = im
    assert len(out) == html.count("<img"), "an <img> without an embedded PNG"
    return out


def test_report_has_every_figure_decodable(runs):
    path = build_report(runs[0])
    html = path.read_text()
    imgs = images(html)
    assert set(imgs) == REPORT_FIGS | STEP_FIGS
    assert all(im.width > 100 and im.height > 100 for im in imgs.values())
    assert "not run" not in html
    assert "http://" not in html and "https://" not in html  # self-contained
    for text in ("1. Temperature probe", "5. Evaluation", "avg@k", "1.400", "toy", "runA"):
        assert text in html
    # the report figures are also kept in the 06 folder when it exists (built inside the run)
    assert not (runs[0] / "06_report").exists()


def test_missing_steps_are_shown_as_not_run(runs, tmp_path):
    html = build_report(runs[1]).read_text()
    assert "04_length_extrapolation</b>: skipped" in html and "05_eval_aime</b>: skipped" in html
    assert "pass_at_k" not in images(html)
    # a run folder with nothing in it still builds
    empty = tmp_path / "empty"
    empty.mkdir()
    html = build_report(empty).read_text()
    assert html.count('class="notrun"') >= 4 and html.count("<img") == len(ABLATION)


def test_incomplete_step_is_not_shown_as_done(runs, tmp_path):
    run = shutil.copytree(runs[0], tmp_path / "partial")
    (run / "05_eval_aime" / "_done.json").unlink()
    html = build_report(run).read_text()
    assert "05_eval_aime</b>: incomplete" in html and "pass_at_k" not in images(html)


def test_compare_report_overlays_runs(runs, tmp_path):
    path = build_compare_report(list(runs), tmp_path / "compare-runA-runB")
    html = path.read_text()
    assert set(images(html)) == COMPARE_FIGS
    assert "runA" in html and "runB" in html
    with pytest.raises(ValueError):
        build_compare_report([runs[0]], tmp_path / "x")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(html: Path, png: Path) -> str:
    """Screenshot the page and return the DOM after the page's own load script ran."""
    browser = _chromium()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*flags, "--window-size=1280,6000", f"--screenshot={png}", html.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dom.stdout


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("which", ["single", "compare"])
def test_rendered_page_shows_every_figure(runs, tmp_path, which):
    if which == "single":
        path, expected = build_report(runs[0]), REPORT_FIGS | STEP_FIGS
    else:
        path, expected = build_compare_report(list(runs), tmp_path / "cmp"), COMPARE_FIGS
    png = ARTIFACTS / f"report_{which}.png"
    dom = _render(path, png)
    body = re.search(r'<body data-images-ok="(\d+)" data-images-total="(\d+)"', dom)
    assert body, "the page's load script did not run"
    assert int(body.group(1)) == int(body.group(2)) == len(expected)
    marks = re.findall(r'<img[^>]*data-ok="([01])"', dom)
    assert marks.count("1") == len(expected) and "0" not in marks
    shot = Image.open(png)
    assert shot.size == (1280, 6000)
    # the screenshot is not blank: a page with figures has many distinct colours
    assert len(shot.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


@pytest.mark.slow
@pytest.mark.notebook
def test_report_notebook_builds_the_page(runs, tmp_path, run_notebook):
    """06_report.ipynb under papermill (as the runner runs it) on a stored run folder."""
    from polaris_lib import artifacts

    run = shutil.copytree(runs[1], tmp_path / "nbrun")
    out = run / "06_report"
    out.mkdir()
    run_notebook("06_report.ipynb", out / "notebook.ipynb", RUN_DIR=str(run))
    assert artifacts.step_done(out)
    index = artifacts.read_json(out / "report_index.json")
    assert set(index["figures"]) == {
        "probe_overlay",
        "difficulty",
        "training",
        "easy_drop",
        *ABLATION,
    }
    assert set(index["not_run"]) == {"04_length_extrapolation", "05_eval_aime"}
    assert len(images((run / "report.html").read_text())) == 4 + 3 + 1 + 3 + len(
        ABLATION
    )  # report figures (no eval in runB) + probe/curate/stage figs (+ the kit's ablation)


def test_dollar_signs_in_run_names_are_drawn_literally(runs, tmp_path, monkeypatch):
    """Issue 13 item 10: a `$...$` in a run id was parsed as mathtext in the figures (`a$b$c`
    garbled, `r$\\x$` failed the whole report)."""
    from matplotlib.text import Text

    from polaris_lib.report import html

    drawn: list[Text] = []
    real_png_of = html.png_of

    def spy(fig, *a, **k):
        png = real_png_of(fig, *a, **k)
        drawn.extend(t for t in fig.findobj(Text) if "$" in t.get_text())
        return png

    monkeypatch.setattr(html, "png_of", spy)
    odd = [make_run_folder(tmp_path / name) for name in ("a$b$c", "r$\\x$")]
    for run in odd:
        assert run.name in build_report(run).read_text()
    html = build_compare_report(odd, tmp_path / "compare").read_text()
    assert set(images(html)) == COMPARE_FIGS
    named = [t for t in drawn if "a\\$b\\$c" in t.get_text() or "r\\$\\x\\$" in t.get_text()]
    assert len(named) >= 4  # legends, titles, captions
    assert all(t._preprocess_math(t.get_text())[1] is False for t in named)  # not mathtext


def _card(html: str) -> str:
    return html[html.index('<div class="card">') : html.index('<h2 id="probe">')]


def test_summary_card_numbers_come_from_the_run_files(runs, tmp_path):
    """Issue 16 item 10: headline numbers, temperatures, data sizes and a verdict at the top."""
    import pandas as pd

    from polaris_lib import artifacts

    run = shutil.copytree(runs[0], tmp_path / "card")
    # an all-0 benchmark as an older run stored it: a zero-width bootstrap interval
    summary = pd.read_parquet(run / "05_eval_aime" / "summary.parquet")
    zero = summary["benchmark"] == "aime24"
    summary.loc[zero, ["avg", "ci_lo", "ci_hi"]] = 0.0
    artifacts.write_parquet(run / "05_eval_aime" / "summary.parquet", summary)
    html = build_report(run).read_text()
    assert html.index('<div class="card">') < html.index('<h2 id="probe">')
    card = _card(html)
    m3 = artifacts.read_json(run / "03_grpo_stage_stage3" / "metrics.json")
    gain = f"{m3['train/heldout_gain']:+.3f}"
    lo, hi = m3["train/heldout_gain_lo"], m3["train/heldout_gain_hi"]
    assert f"{gain} <span" in card and f"[{lo:.3f}, {hi:.3f}]" in card
    assert (
        "Training helped: held-out accuracy 0.400 → 0.550 (+0.150, 95% interval [0.120, 0.180])"
        " after 3 stage(s)." in card
    )
    pool = artifacts.read_json(run / "02_curate_by_difficulty" / "metrics.json")
    kept = [
        len(pd.read_parquet(run / f"03_grpo_stage_stage{k}" / "next_stage_data.parquet"))
        for k in (1, 2, 3)
    ]
    sizes = [pool["curate/pool_size"], pool["curate/kept"], *kept]
    assert " → ".join(f"<b>{n}</b>" for n in sizes) in card
    for k in (1, 2, 3):
        assert f"stage {k}: <b>T {1.0 + 0.2 * (k - 1):g}</b>" in card
    toy = summary[(summary["benchmark"] == "toy") & (summary["checkpoint"] == "stage3")].iloc[0]
    assert f"<b>{toy['avg']:.3f}</b>" in card and "toy avg@8 over 10 problems" in card
    # all 0 of 10 problems: Wilson [0, z^2 / (10 + z^2)] = [0, 0.278], not [0.000, 0.000]
    assert "[0.000, 0.278] Wilson" in card and "[0.000, 0.000]" not in html
    assert "≈ 0 expected on the toy" in card  # AIME on the toy says so where it appears
    assert "expected ≈ 0 on the toy" in html[html.index('<h2 id="eval">') :]
    assert "expected ≈ 0 on the toy: a 128-position" in html[html.index('<h2 id="yarn">') :]


def test_report_built_by_step_06_shows_the_run_as_done(runs, tmp_path):
    """Step 06 builds the page while the manifest still says running (06 itself is running)."""
    from polaris_lib import artifacts

    run = shutil.copytree(runs[0], tmp_path / "during06")
    man = artifacts.read_json(run / "manifest.json")
    man["status"] = "running"
    man["steps"][-1].update(step="06_report", status="running")
    artifacts.write_json(run / "manifest.json", man)
    html = build_report(run).read_text()
    sub = re.search(r'<p class="sub">([^<]*)</p>', html).group(1)
    assert "status done" in sub and "running" not in sub
    assert "06_report running" not in html and "done (this report)" in html
    assert "not finished" not in _card(html)  # the verdict does not call the run unfinished
    # while an earlier step is still unfinished the run is not shown as done
    man["steps"][0]["status"] = "running"
    artifacts.write_json(run / "manifest.json", man)
    html = build_report(run).read_text()
    assert "status running" in html and "status done" not in html
    assert "the run is not finished (status running)." in _card(html)


def test_figures_rate_axes_span_0_to_1_and_steps_are_integers(runs):
    """Issue 16 item 11: rates on 0-1 axes, integer optimizer-step ticks, one colour per stage."""
    import matplotlib.pyplot as plt

    from polaris_lib.figure_style import PALETTE, stage_color
    from polaris_lib.report import figures
    from polaris_lib.report.runs import Run, probe_curves, temperatures, training

    run = Run.load(runs[0])
    steps, bounds = training([run])
    fig = figures.training_timeline(steps, bounds, "cap")
    fig.canvas.draw()
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    for metric in figures.RATE_METRICS:
        assert axes[metric].get_ylim() == (0.0, 1.0), metric
    for ax in axes.values():
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        # single run: each stage's segment is drawn in that stage's colour
        assert [line.get_color() for line in ax.get_lines() if len(line.get_xdata()) > 2] == [
            stage_color(k) for k in (1, 2, 3)
        ]
    plt.close(fig)
    fig = figures.probe_overlay(probe_curves([run]), temperatures([run]), "cap")
    acc, div = fig.axes
    assert acc.get_ylim() == div.get_ylim() == (0.0, 1.0)
    labels = [line.get_label() for line in acc.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["stage 1", "stage 2", "stage 3"]  # the three stages on one plot
    assert {line.get_color() for line in acc.get_lines()} >= {
        PALETTE[f"stage{k}"] for k in (1, 2, 3)
    }
    plt.close(fig)


def test_report_layout_wide_figures_captions_and_constant_clip(runs, tmp_path):
    """Multi-panel figures take the full width; captions, not file paths; a constant clip
    fraction figure becomes a sentence."""
    import numpy as np
    import pandas as pd

    from polaris_lib import artifacts

    run = shutil.copytree(runs[0], tmp_path / "layout")
    stage = run / "03_grpo_stage_stage1"
    steps = pd.read_parquet(stage / "steps.parquet")
    steps["clip_ratio/low_mean"] = steps["clip_ratio/high_mean"] = np.zeros(len(steps))
    artifacts.write_parquet(stage / "steps.parquet", steps)
    shutil.copy(stage / "fig_rewards.png", stage / "fig_clip_entropy.png")
    html = build_report(run).read_text()
    wide = re.findall(r'<figure class="wide"><img data-figure="([^"]+)"', html)
    assert {"probe_overlay", "training"} <= set(wide)
    assert "fig_rewards.png" not in html and ".png</figcaption>" not in html
    assert "stage 2 · reward per optimizer step</figcaption>" in html
    assert "03_grpo_stage_stage1/fig_clip_entropy" not in images(html)
    assert "Clip fractions are not drawn: they are 0 at every step" in html
    # the other stages have no clip columns: nothing to replace
    assert html.count("Clip fractions are not drawn") == 1


def test_a_skipped_benchmark_is_named_in_the_report(tmp_path):
    """A harness check 05 skipped for lack of data is named in the card and section 5."""
    from synthetic import make_run_folder

    from polaris_lib import artifacts
    from polaris_lib.evaluate import SKIPPED_NOTE

    run = make_run_folder(tmp_path / "skip")
    artifacts.update_metrics(run / "05_eval_aime", {"eval/aime25/skipped": SKIPPED_NOTE})
    page = build_report(run).read_text()
    assert page.count("aime25: not evaluated: a harness check on the toy model") == 2


def test_evaluation_section_shows_two_intervals_paired_audit_protocol_and_selection(tmp_path):
    """Section 5: both intervals per number with a protocol mark and its legend, each checkpoint
    paired against base, the grader audit with a link to its disagreements, the reported
    checkpoint; the compare report pairs run B against run A and marks differing protocols."""
    import pandas as pd

    from polaris_lib import artifacts

    a = make_run_folder(tmp_path / "runA", seed=0)
    b = make_run_folder(tmp_path / "runB", seed=1)
    step = a / "05_eval_aime"
    agree = pd.DataFrame(
        dict(
            checkpoint=["stage3"],
            benchmark=["toy"],
            graded=[80],
            agreement=[0.975],
            kit_only=[0],
            authors_only=[2],
            kit_avg=[0.5],
            authors_avg=[0.525],
        )
    )
    rows = pd.DataFrame(
        dict(
            checkpoint=["stage3"] * 2,
            benchmark=["toy"] * 2,
            problem_id=["toy/1", "toy/2"],
            sample_idx=[0, 3],
            answers=[["7"], ["9"]],
            kit_answer=[None, None],
            kit_correct=[0.0, 0.0],
            kit_reason=["no_think_close"] * 2,
            authors_answer=["7", "9"],
            authors_correct=[1.0, 1.0],
            authors_reason=["correct"] * 2,
        )
    )
    artifacts.write_parquet(step / "grader_audit.parquet", agree)
    artifacts.write_parquet(step / "grader_disagreements.parquet", rows)
    html = build_report(a).read_text()
    sec = html[html.index('id="eval"') :]
    for text in (
        "problems fixed: lo",
        "over problems: lo",
        "protocols — ",
        "Paired: each checkpoint",
    ):
        assert text in sec, text
    assert "T 1 · top-p 1 · top-k off · ≤ 80 new tokens · YaRN off · 8 samples/problem" in sec
    assert "reported checkpoint: the last evaluated one (stage3)" in sec
    # a selection by score is stated as 05 recorded it (eval.selection = "best")
    artifacts.update_metrics(step, {"eval/selection": "reported checkpoint: stage2, SELECTED by"})
    assert "reported checkpoint: stage2, SELECTED by" in build_report(a).read_text()
    assert '<a href="05_eval_aime/grader_disagreements.parquet">' in sec
    assert "2 disagreements" in sec and "0.975" in sec
    # run B evaluated at another temperature: its numbers carry another mark in the compare
    cfg = artifacts.read_json(b / "05_eval_aime" / "config.json")
    cfg["eval"]["temperature"] = 0.7
    artifacts.write_json(b / "05_eval_aime" / "config.json", cfg)
    page = build_compare_report([a, b], tmp_path / "cmp").read_text()
    overlay = page[page.index('id="eval"') : page.index('id="passk"')]
    # k differs by benchmark (toy 8, aime24 2): two marks per run, two more for run B's T 0.7
    assert "protocol C: T 0.7" in overlay and "runA AB; runB CD" in overlay
    paired = page[page.index('id="paired"') :]
    assert "≠ protocols differ" in paired and "T 0.7" in paired and "T 1 " in paired
    assert paired.count("runB") >= 8  # one row per checkpoint x benchmark: 4 x 2
