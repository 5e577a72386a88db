"""``report.html``: a :class:`~attnconv_pl.reports.document.Document` as one self-contained page
(figures embedded as base64 PNGs), with a table of contents; every section and folded
sub-section is a collapsible ``<details>`` element (sections open unless folded)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from attnconv_pl.reports.document import Block, Code, Document, Inline, Link, Paragraph, Subsection, Table
from attnconv_pl.reports.figures import ReportFigure

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
nav ol { margin: 4px 0; padding-left: 22px; columns: 2; }
nav a { color: #2357c6; text-decoration: none; }
nav button { font-size: 12px; margin-right: 6px; }
summary { cursor: pointer; }
summary > h2, summary > h3 { display: inline-block; }
summary > h2 { border-bottom: none; }
details > details, details > div, details > p, details > figure { margin-left: 4px; }
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

SCRIPT = """
function openTarget() {
  var target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  for (var node = target; node; node = node.parentElement) { if (node.tagName === "DETAILS") node.open = true; }
  if (target) target.querySelectorAll(":scope > details").forEach(function (d) { d.open = true; });
}
function openAll(open) { document.querySelectorAll("details").forEach(function (d) { d.open = open; }); }
window.addEventListener("hashchange", openTarget);
window.addEventListener("DOMContentLoaded", openTarget);
"""
"""Opens the sections a link of the contents (or the address) points into."""


def _inline(runs: tuple[Inline, ...]) -> str:
    return "".join(f"<code>{escape(run.text)}</code>" if isinstance(run, Code)
                   else f'<a href="{escape(run.href)}">{escape(run.text)}</a>' if isinstance(run, Link)
                   else escape(run, quote=False) for run in runs)


def _table(table: Table) -> str:
    """An HTML table; cells of the numeric columns are right-aligned."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(cell)}</td>' if index in table.numeric_columns
                         else f"<td>{escape(cell)}</td>" for index, cell in enumerate(row)) + "</tr>"
        for row in table.rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(figure: ReportFigure, figure_dir: Path) -> str:
    encoded = base64.b64encode((figure_dir / figure.file_name).read_bytes()).decode("ascii")
    return (f'<figure id="fig-{escape(figure.name)}"><img alt="{escape(figure.caption)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{escape(figure.caption)}</figcaption></figure>')


def _block(block: Block, figure_dir: Path) -> list[str]:
    """The lines of a paragraph, table, sub-heading (``h3``) with its blocks, or row of figures."""
    if isinstance(block, Paragraph):
        return [f"<p>{_inline(block.runs)}</p>"]
    if isinstance(block, Table):
        return [_table(block)]
    if isinstance(block, Subsection):
        lines = [line for b in block.blocks for line in _block(b, figure_dir)]
        heading = f"<h3>{_inline(block.title)}</h3>"
        return [f"<details><summary>{heading}</summary>", *lines, "</details>"] if block.folded else [heading, *lines]
    return ['<div class="figures">' + "".join(_figure(f, figure_dir) for f in block.figures) + "</div>"]


def render_html(document: Document, figure_dir: Path) -> str:
    """The report page.

    Args:
        document: the report.
        figure_dir: folder of its figures' PNG files, embedded into the page.
    """
    title = f"{document.title}: {document.subject}" if document.subject else document.title
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body><main>",
        f"<h1>{escape(document.title)}</h1>",
        f'<p class="meta">{escape(document.created)} &middot; <code>{escape(document.command)}</code></p>',
        '<nav><strong>Contents</strong> <button type="button" onclick="openAll(true)">open all</button>'
        '<button type="button" onclick="openAll(false)">close all</button><ol>'
        + "".join(f'<li><a href="#{escape(s.key)}">{escape(s.title.split(":")[0])}</a></li>' for s in document.sections)
        + "</ol></nav>",
    ]
    for section in document.sections:
        parts.append(f'<section id="{escape(section.key)}"><details{"" if section.folded else " open"}>'
                     f"<summary><h2>{escape(section.title)}</h2></summary>")
        parts += [line for block in section.blocks for line in _block(block, figure_dir)]
        parts.append("</details></section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
