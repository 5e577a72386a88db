"""write_tables / write_report: the files of a report folder, the page and its figures."""

import base64
import csv
import dataclasses
import json
import re

from attnconv_pl.reports.report import write_report, write_tables


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tables_are_rewritten_with_the_runs_of_this_report(tmp_path, make_run):
    write_tables(tmp_path, [make_run("old/run", "g")], {"command": "first"})
    runs = [make_run("a/s0", "attention_net"), make_run("b/s0", "conv_net", scale=2.0)]
    write_tables(tmp_path, runs, {"command": "second"})
    rows = read_csv(tmp_path / "dynamics.csv")
    assert list(rows[0]) == ["run", "epoch", "layer", "metric", "value"]
    assert {row["run"] for row in rows} == {"a/s0", "b/s0"}
    assert len(rows) == sum(len(run.rows) for run in runs)
    value = next(float(r["value"]) for r in rows if r["run"] == "b/s0" and r["epoch"] == "2"
                 and r["layer"] == "mixer" and r["metric"] == "variance")
    assert value == runs[1].value(2, "mixer", "variance")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["command"] == "second" and [run["label"] for run in summary["runs"]] == ["a/s0", "b/s0"]
    first = summary["runs"][0]
    assert first["final_accuracy"] == 0.5 and first["last_epoch"] == 2 and first["group"] == "attention_net"
    assert first["last_epoch_metrics"]["head"]["variance"] == runs[0].value(2, "head", "variance")
    assert first["dataset"]["name"] == "digits"
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_summary_is_strict_json_without_nan(tmp_path, make_run):
    run = make_run("a", "g")
    write_tables(tmp_path, [dataclasses.replace(run, rows=[*run.rows, (2, "stem", "id_mle", float("nan"))])], {})
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["runs"][0]["last_epoch_metrics"]["stem"]["id_mle"] is None


def test_report_embeds_every_figure_with_the_comparison_first(tmp_path, make_run, capsys):
    runs = [make_run("attn/s0", "attention_net"), make_run("attn/s1", "attention_net", scale=1.5),
            make_run("conv/s0", "conv_net", layers=("stem", "conv", "pool", "head"), scale=3.0)]
    write_report(tmp_path, [make_run("old/run", "g")], {})
    assert capsys.readouterr().err == ""  # no progress unless asked for
    figures = write_report(tmp_path, runs, {"command": "python probe.py ...", "created": "today"}, progress=True)
    shown = capsys.readouterr().err.splitlines()  # not a terminal: a line as each section's figures begin
    titles = {"comparison": "comparison", "compactness": "Compactness", "stability": "Stability", "drift": "Drift",
              "topology": "Topology", "persistence": "persistence"}
    firsts = [(index, entry) for index, entry in enumerate(figures, start=1)
              if index == 1 or figures[index - 2].section != entry.section]
    assert [re.sub(r" \(\d+:\d\d\)", "", line) for line in shown[:-1]] == [
        f"figures {index}: {titles[entry.section]}: {entry.file_name}" for index, entry in firsts]
    assert len(firsts) == len(titles)
    assert re.fullmatch(rf"figures: {len(figures)} drawn in \d+:\d\d", shown[-1])
    files = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    metrics = {"variance", "id_twonn", "stability_h0_w1", "stability_h0_w2", "stability_h0_bottleneck",
               "drift_prev_w2", "h0_bars"}
    families = ("compactness", "stability", "drift", "topology")
    expected = {"comparison.png", *(f"epochs_{m}.png" for m in metrics),
                *(f"depth_{family}_{group}.png" for family in families for group in ("attention_net", "conv_net")),
                "persistence_attn_s0.png", "persistence_attn_s1.png", "persistence_conv_s0.png"}
    assert set(files) == expected and sorted(f.file_name for f in figures) == files
    page = (tmp_path / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert sorted(embedded) == sorted(base64.b64encode((tmp_path / "figures" / f).read_bytes()).decode()
                                      for f in files)
    assert not re.search(r'src="(?!data:)', page), "the page must not load files"
    assert embedded[0] == base64.b64encode((tmp_path / "figures" / "comparison.png").read_bytes()).decode()
    assert page.index('id="probed"') < page.index('id="comparison"') < page.index('id="compactness"') \
        < page.index('id="table"')
    for run in runs:
        assert run.label in page
    markdown = (tmp_path / "report.md").read_text()
    linked = re.findall(r"\]\(figures/([^)]+)\)", markdown)
    assert sorted(linked) == files and markdown.index("comparison.png") < markdown.index("depth_")
