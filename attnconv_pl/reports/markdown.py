"""``report.md``: a :class:`~attnconv_pl.reports.document.Document` as Markdown, figures linked
as ``figures/<file_name>``, with a table of contents linking each section's anchor (folded
sections and sub-sections are shown in full)."""

from __future__ import annotations

from attnconv_pl.reports.document import Block, Code, Document, Inline, Link, Paragraph, Subsection, Table


def _inline(runs: tuple[Inline, ...]) -> str:
    return "".join(f"`{run.text}`" if isinstance(run, Code) else f"[{run.text}]({run.href})" if isinstance(run, Link)
                   else run for run in runs)


def _table(table: Table) -> list[str]:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(table.header), line(("---",) * len(table.header)), *map(line, table.rows)]


def _block(block: Block) -> list[str]:
    """The lines of a paragraph, table, sub-heading (``###``) with its blocks, or row of figures,
    each followed by a blank line."""
    if isinstance(block, Paragraph):
        return [_inline(block.runs), ""]
    if isinstance(block, Table):
        return [*_table(block), ""]
    if isinstance(block, Subsection):
        return [f"### {_inline(block.title)}", "", *(line for b in block.blocks for line in _block(b))]
    return [*(f"![{figure.caption}](figures/{figure.file_name})" for figure in block.figures), ""]


def render_markdown(document: Document) -> str:
    """The report as Markdown."""
    lines = [f"# {document.title}", "", f"{document.created} · `{document.command}`", "", "Contents:", "",
             *(f"- [{section.title.split(':')[0]}](#{section.key})" for section in document.sections), ""]
    for section in document.sections:
        lines += [f'<a id="{section.key}"></a>', "", f"## {section.title}", "",
                  *(line for block in section.blocks for line in _block(block))]
    return "\n".join(lines)
