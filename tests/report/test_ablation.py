"""The report's ablation section: figure and tables from the shipped ablation result files."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from polaris_lib.report.ablation import (  # noqa: E402
    ablation_figure,
    ablation_section,
    arms_table,
    load_ablations,
)


def _summary(regime: str) -> dict:
    def vs(diffs):
        m = sum(diffs) / len(diffs)
        return dict(
            seeds=[0, 1, 2],
            diffs=diffs,
            mean=m,
            lo=m - 0.02,
            hi=m + 0.02,
            positive=sum(d > 0 for d in diffs),
        )

    return dict(
        regime=regime,
        prepared=dict(warm_acc=0.43, temperature=0.8),
        heldout_problems=128,
        samples_per_problem=4,
        optimizer="adamw_torch",
        regime_table=[dict(stage=1, frac_all0=0.5, frac_all1=0.1, frac_mixed=0.4, truncation=0.2)],
        summary={
            "full": dict(
                what="full",
                seeds=3,
                heldout_acc=0.62,
                vs_full=None,
                vs_plain=vs([-0.01, -0.03, 0.0]),
            ),
            "plain": dict(
                what="plain",
                seeds=3,
                heldout_acc=0.64,
                vs_full=vs([0.01, 0.03, 0.0]),
                vs_plain=None,
            ),
            "subst_off": dict(
                what="no substitution",
                seeds=3,
                heldout_acc=0.65,
                vs_full=vs([0.02, 0.04, 0.03]),
                vs_plain=None,
            ),
        },
    )


def test_section_shows_every_regime_with_figure_and_tables(tmp_path):
    for regime in ("tiny", "tiny-hard"):
        (tmp_path / f"ablation_{regime}.json").write_text(json.dumps(_summary(regime)))
    (tmp_path / "ablation_throughput.json").write_text("{}")  # other result files are ignored
    assert list(load_ablations(tmp_path)) == ["tiny", "tiny-hard"]
    fig = ablation_figure(load_ablations(tmp_path))
    assert len(fig.axes) == 2
    # one diamond per arm with a vs_full entry, at the mean difference in points
    means = sorted(
        round(float(c.get_offsets()[0][0]), 3)
        for c in fig.axes[0].collections
        if len(c.get_offsets()) == 1
    )
    assert means == [1.333, 3.0]
    out = tmp_path / "save"
    out.mkdir()
    page = ablation_section(out, tmp_path)
    assert page.count("<img") == 1 and (out / "fig_ablation.png").stat().st_size > 5000
    assert "tiny-hard: arms and regime" in page and "all-0 groups" in page
    row = arms_table(_summary("tiny")).set_index("arm").loc["subst_off"]
    assert row["arm − full (pts)"].startswith("+3.0 [+1.0, +5.0] (3/3 seeds > 0)")


def test_section_without_results_says_so(tmp_path):
    assert "no ablation results" in ablation_section(None, tmp_path)


def test_arms_keep_the_harness_order_not_the_files_sorted_keys():
    """Result files are written with sorted keys; tables and the figure follow `arm_order`."""
    a = _summary("tiny-hard") | {"arm_order": ["full", "subst_off", "plain"]}
    assert list(arms_table(a)["arm"]) == ["full", "subst_off", "plain"]
    fig = ablation_figure({"tiny-hard": a, "tiny-hard_sgd": a})
    assert [ax.get_title() for ax in fig.axes] == [
        "tiny-hard (3 seeds)",
        "tiny-hard, SGD (3 seeds)",
    ]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["subst_off", "plain"]  # full is the reference: no row of its own
    assert list(arms_table(_summary("tiny"))["arm"]) == ["full", "plain", "subst_off"]
