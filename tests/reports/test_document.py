"""The report's document: its sections in order, and the HTML and Markdown renderings of it
holding the same headings, figures and table cells."""

import re
from html import unescape

from test_records_report import with_records

from attnconv_pl.reports.document import Code, Document, Figures, Link, Paragraph, Section, Subsection, Table
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.html import render_html
from attnconv_pl.reports.markdown import render_markdown
from attnconv_pl.reports.report import build_document, write_report
from attnconv_pl.reports.sections import PER_METRIC_NOTE

CONTEXT = {"command": "python probe.py runs/* --out report", "created": "today"}


def html_content(page):
    """Headings (h2, h3), figure file names and table cells of the page, in order."""
    text = lambda fragment: unescape(re.sub(r"<[^>]+>", "", fragment))  # noqa: E731
    return ([text(h) for h in re.findall(r"<h[23]>(.*?)</h[23]>", page)],
            [f"{name}.png" for name in re.findall(r'<figure id="fig-([^"]+)"', page)],
            [text(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", page)])


def markdown_content(markdown):
    """Headings (##, ###), linked figures and table cells of the Markdown, in order."""
    lines = markdown.splitlines()
    cells = [cell.strip().replace("\\|", "|") for line in lines if line.startswith("| ") and "| --- |" not in line
             for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
    return ([line.lstrip("#").strip().replace("`", "") for line in lines if re.match(r"#{2,3} ", line)],
            re.findall(r"\]\(figures/([^)]+)\)", markdown), cells)


def test_html_and_markdown_show_the_same_sections_figures_and_tables(tmp_path, make_run):
    curves = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.2, "train_acc": 0.3, "val_acc": 0.25}]
    runs = [with_records(make_run("attn/s0", "attention_net"), curves=curves),
            make_run("attn/s1", "attention_net", scale=1.5),
            make_run("conv|s0", "conv_net", layers=("stem", "conv", "pool", "head"), scale=3.0)]
    figures = write_report(tmp_path, runs, CONTEXT)
    page, markdown = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    headings, figure_files, cells = html_content(page)
    assert (headings, figure_files, cells) == markdown_content(markdown)
    assert headings[:4] == ["What was probed", "Training curves", "Training records and robustness", "Comparison"]
    assert headings[-6:] == ["Persistence diagrams", "attn/s0", "attn/s1", "conv|s0",  # a sub-heading per run
                             "Robustness: accuracy under Gaussian input noise", "Last-epoch table"]
    assert "variance total variance" in headings and "conv|s0" in cells and "acc σ=0.5" in cells
    assert figure_files == [figure.file_name for figure in figures]
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == len(figures) and all(src.startswith("data:image/png;base64,") for src in sources)
    assert sorted(figure_files) == sorted(path.name for path in (tmp_path / "figures").glob("*.png"))
    for paragraph in ("Each run's checkpoints were probed", "Training records from each run's metrics.csv",
                      "Every number of every epoch"):
        assert paragraph in unescape(page) and paragraph in markdown


def test_sections_follow_the_analyses_order_and_leave_out_what_the_runs_lack(make_run):
    keys = lambda document: [section.key for section in document.sections]  # noqa: E731
    run = make_run("a/s0", "attention_net")
    metric = ReportFigure("depth_variance", "compactness", "variance against depth", "variance")
    figures = [ReportFigure("comparison", "comparison", "comparison"), metric,
               ReportFigure("persistence_a_s0", "persistence", "diagrams")]
    assert keys(build_document([run], figures, CONTEXT)) == ["probed", "comparison", "compactness", "persistence",
                                                             "table"]
    figures.insert(1, ReportFigure("robustness", "robustness", "accuracy under noise"))
    document = build_document([with_records(run)], figures, CONTEXT)
    assert keys(document) == ["probed", "records", "comparison", "compactness", "persistence", "robustness", "table"]
    assert document.sections[3].blocks == (Paragraph((PER_METRIC_NOTE,)),
                                           Subsection((Code("variance"), " total variance"), (Figures((metric,)),),
                                                      folded=True))
    assert (document.title, document.subject, document.command) == ("Probe report", "a/s0", CONTEXT["command"])


def test_renderers_escape_text_and_render_code_links_and_numeric_cells(tmp_path):
    figure = ReportFigure("f", "s", "a <caption>")
    (tmp_path / "f.png").write_bytes(b"png")
    document = Document("Report", "x & y", "now", "run --a", (
        Section("one", "One: the first", (Paragraph(("a < b, ", Code("x|y"), " see ", Link("data", "d.csv"))),
                                          Table(("name", "value"), (("p|q", "1.5"),), numeric_columns=(1,)))),
        Section("two", "Two", (Subsection(("metric ", Code("m")), (Figures((figure,)),), folded=True),), folded=True),
    ))
    page = render_html(document, tmp_path)
    assert "<title>Report: x &amp; y</title>" in page
    assert '<li><a href="#one">One</a></li><li><a href="#two">Two</a></li>' in page
    assert '<section id="one"><details open><summary><h2>One: the first</h2></summary>' in page
    assert '<section id="two"><details><summary><h2>Two</h2></summary>' in page
    assert '<p>a &lt; b, <code>x|y</code> see <a href="d.csv">data</a></p>' in page
    assert "<td>p|q</td><td class=\"num\">1.5</td>" in page
    assert "<details><summary><h3>metric <code>m</code></h3></summary>" in page
    assert 'alt="a &lt;caption&gt;" src="data:image/png;base64,cG5n"' in page
    assert render_markdown(document) == "\n".join([
        "# Report", "", "now · `run --a`", "", "Contents:", "", "- [One](#one)", "- [Two](#two)", "",
        '<a id="one"></a>', "", "## One: the first", "", "a < b, `x|y` see [data](d.csv)", "",
        "| name | value |", "| --- | --- |", "| p\\|q | 1.5 |", "", '<a id="two"></a>', "", "## Two", "",
        "### metric `m`", "",
        "![a <caption>](figures/f.png)", ""])
