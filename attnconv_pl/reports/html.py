"""``report.html``: one self-contained page (figures embedded as base64 PNGs).

Order: what was probed (with the training records and robustness of each run), the comparison
figure, the robustness figure, one section per metric family (each metric against depth and
against epoch), persistence diagrams, then the last-epoch table.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from attnconv_pl.reports.comparison import comparison_metrics
from attnconv_pl.reports.figures import ReportFigure, report_sections
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.tables import RECORDS_NOTE, has_records, last_epoch_table, probed_table, records_table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2330;
       background: #f6f7f9; font-size: 14px; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e6eb; }
h3 { font-size: 15px; margin: 22px 0 6px; }
p.meta { color: #5b6475; margin: 0 0 16px; font-size: 13px; }
code { background: #f0f2f5; padding: 1px 4px; border-radius: 3px; font-size: 12px; }
nav { font-size: 13px; margin: 12px 0; }
nav a { margin-right: 14px; color: #2357c6; text-decoration: none; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border: 1px solid #dde1e7; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 6px 0; display: table; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceef2; }
figcaption { display: table-caption; caption-side: bottom; font-size: 12px; color: #5b6475; padding-top: 2px; }
.scroll { overflow-x: auto; }
"""


def _table(header: list[str], rows: list[list[str]], numeric: range) -> str:
    """An HTML table; cells of the ``numeric`` columns are right-aligned."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(cell)}</td>' if index in numeric
                         else f"<td>{escape(cell)}</td>" for index, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(figure: ReportFigure, figure_dir: Path) -> str:
    encoded = base64.b64encode((figure_dir / figure.file_name).read_bytes()).decode("ascii")
    return (f'<figure id="fig-{escape(figure.name)}"><img alt="{escape(figure.caption)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{escape(figure.caption)}</figcaption></figure>')


def render_html(runs: list[ProbedRun], figures: list[ReportFigure], figure_dir: Path, context: dict[str, Any]) -> str:
    """The report page.

    Args:
        runs: the probed runs.
        figures: the report's figures (comparison first), saved in ``figure_dir``.
        figure_dir: folder of the PNG files, embedded into the page.
        context: ``command`` (the command line) and ``created`` (a timestamp).
    """
    sections = report_sections(figures)
    navigation = [("probed", "What was probed"), *[(s.key, s.title) for s in sections], ("table", "Last-epoch table")]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Probe report: {escape(', '.join(run.label for run in runs))}</title>",
        f"<style>{STYLE}</style></head><body><main>",
        "<h1>Probe report</h1>",
        f'<p class="meta">{escape(context.get("created", ""))} &middot; <code>{escape(context.get("command", ""))}'
        "</code></p>",
        "<nav>" + "".join(f'<a href="#{key}">{escape(title.split(":")[0])}</a>' for key, title in navigation)
        + "</nav>",
        '<section id="probed"><h2>What was probed</h2>', _table(*probed_table(runs), numeric=range(6, 7)),
        "<p>Each run's checkpoints were probed in epoch order through the training callback's pipeline "
        "(<code>callbacks.FeatureDynamics</code>): the same probe set, projections and probes, so with default "
        "options the numbers equal the ones the run logged.</p>",
    ]
    if has_records(runs):
        header, rows = records_table(runs)
        parts += ["<h3>Training records and robustness</h3>", _table(header, rows, numeric=range(2, len(header))),
                  f"<p>{escape(RECORDS_NOTE)}</p>"]
    parts.append("</section>")
    for section in sections:
        parts.append(f'<section id="{section.key}"><h2>{escape(section.title)}</h2>')
        for metric, metric_figures in section.figures_by_metric.items():
            if metric:
                parts.append(f"<h3><code>{escape(metric)}</code></h3>")
            parts.append('<div class="figures">' + "".join(_figure(f, figure_dir) for f in metric_figures)
                         + "</div>")
        parts.append("</section>")
    header, rows = last_epoch_table(runs, comparison_metrics(runs))
    parts += ['<section id="table"><h2>Last-epoch table</h2>', _table(header, rows, numeric=range(3, len(header))),
              '<p>Every number of every epoch: <a href="dynamics.csv">dynamics.csv</a> (columns run, epoch, layer, '
              'metric, value); per run: <a href="summary.json">summary.json</a>.</p></section>',
              "</main></body></html>"]
    return "\n".join(parts) + "\n"

