"""The single-node section: readout accuracy and SNR against depth (attention and feed-forward
sub-blocks apart), the cluster-size distribution, ANDC against its random control, a head x
label coverage map and a few node matrices; the node matrices are also saved beside the report
(``single_node_matrices.npz``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnconv_pl.io.atomic import atomic_path
from attnconv_pl.reports.comparison import mean_and_std
from attnconv_pl.reports.document import Paragraph, Section
from attnconv_pl.reports.figures import ReportFigure, file_stem
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, runs_by_group
from attnconv_pl.reports.sections import family_figures, family_sections, figure_sections

NAME = "single_node"
OVERVIEW = ("single_node_overview", "Single-node performance: depth, clusters, pruning and heads")
MATRICES_FILE = "single_node_matrices.npz"
KIND_TITLES = {"mha_nodes": "attention (MHA) nodes", "ff_nodes": "feed-forward (FF) nodes"}


def last_artifacts(run: ProbedRun) -> dict | None:
    """The run's single-node artifacts at its last epoch (None when it was not analysed)."""
    by_epoch = run.artifacts.get(NAME) or {}
    return by_epoch[max(by_epoch)] if by_epoch else None


def sub_blocks(run: ProbedRun, kind: str) -> list[str]:
    """The run's sub-blocks of ``kind`` in depth order."""
    found = last_artifacts(run)
    return [module for module, k in found["kinds"].items() if k == kind] if found else []


def depth_figure(runs: list[ProbedRun]) -> Figure:
    """Readout accuracy and SNR against depth at the last epoch, MHA and FF panels apart; mean and
    sd over each group's seeds."""
    figure = Figure(figsize=(8.0, 5.2))
    axes = figure.subplots(2, 2, squeeze=False)
    for column, kind in enumerate(KIND_TITLES):
        for row, metric in enumerate(("snp_readout_acc", "snp_snr")):
            axis = axes[row][column]
            for index, (group, members) in enumerate(runs_by_group(runs).items()):
                series = [[run.value(run.last_epoch, block, metric) for block in sub_blocks(run, kind)]
                          for run in members]
                depth = min(map(len, series)) if series else 0
                if depth == 0:
                    continue
                mean, std = mean_and_std(np.array([values[:depth] for values in series], dtype=float))
                axis.errorbar(np.arange(1, depth + 1), mean, yerr=std, marker="o", markersize=4, capsize=3,
                              color=f"C{index}", label=group)
            axis.set_title(f"{metric}, {KIND_TITLES[kind]}", fontsize=9)
            axis.set_xlabel("encoder block", fontsize=8)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            axis.tick_params(labelsize=7)
    entries = {label: handle for axis in axes.flat for handle, label in zip(*axis.get_legend_handles_labels())}
    legend = legend_below(figure, list(entries.values()), list(entries))
    set_margins(figure, bottom=0.6 + legend, top=0.4, hspace=0.7)
    return figure


def cluster_size_figure(runs: list[ProbedRun]) -> Figure:
    """Histogram of the nodes' cluster sizes |C_k| at the last epoch, per group, MHA and FF apart."""
    figure = Figure(figsize=(8.0, 3.0))
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for axis, kind in zip(axes, KIND_TITLES):
        largest = 1
        pooled = {}
        for group, members in runs_by_group(runs).items():
            sizes = [last_artifacts(run)["sub_blocks"][block]["cluster_sizes"]
                     for run in members for block in sub_blocks(run, kind)]
            if sizes:
                pooled[group] = np.concatenate(sizes)
                largest = max(largest, int(pooled[group].max()))
        bins = np.arange(largest + 2) - 0.5
        for index, (group, sizes) in enumerate(pooled.items()):
            axis.hist(sizes, bins=bins, histtype="step", density=True, color=f"C{index}", label=group)
        axis.set_title(f"cluster size |C_k|, {KIND_TITLES[kind]}", fontsize=9)
        axis.set_xlabel("labels in the node's cluster", fontsize=8)
        axis.set_ylabel("fraction of nodes", fontsize=8)
        axis.tick_params(labelsize=7)
    entries = {label: handle for axis in axes for handle, label in zip(*axis.get_legend_handles_labels())}
    legend = legend_below(figure, list(entries.values()), list(entries))
    set_margins(figure, bottom=0.6 + legend, top=0.35)
    return figure


def andc_figure(runs: list[ProbedRun]) -> Figure:
    """Per sub-block at the last epoch: the full readout's accuracy, ANDC refitted, ANDC without
    refit and the random-mask control; mean over every run."""
    metrics = ("snp_readout_acc", "andc_acc_refit", "andc_random_acc", "andc_acc")
    blocks = list(dict.fromkeys(block for run in runs for kind in KIND_TITLES for block in sub_blocks(run, kind)))
    figure = Figure(figsize=(max(4.0, 0.9 * len(blocks) + 1.5), 3.4))
    axis = figure.subplots()
    width = 0.8 / len(metrics)
    for index, metric in enumerate(metrics):
        values = [np.nanmean([run.value(run.last_epoch, block, metric) for run in runs]) for block in blocks]
        axis.bar(np.arange(len(blocks)) + (index - 1.5) * width, values, width, color=f"C{index}", label=metric)
    axis.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right", fontsize=7)
    axis.set_ylabel("accuracy", fontsize=8)
    axis.set_title("ANDC: readouts pruned to each node's labels vs random pruning (last epoch)", fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    legend = legend_below(figure, *axis.get_legend_handles_labels(), fontsize=7)
    set_margins(figure, bottom=1.2 + legend, top=0.35)
    return figure


def heads_figure(run: ProbedRun) -> Figure | None:
    """Head x label coverage of every attention sub-block of ``run`` at its last epoch."""
    found = last_artifacts(run)
    blocks = [block for block in sub_blocks(run, "mha_nodes") if "head_sets" in found["sub_blocks"][block]]
    if not blocks:
        return None
    figure = Figure(figsize=(2.4 * len(blocks) + 0.6, 2.6))
    axes = figure.subplots(1, len(blocks), squeeze=False)[0]
    for axis, block in zip(axes, blocks):
        sets = found["sub_blocks"][block]["head_sets"]
        axis.imshow(sets, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        axis.set_title(block, fontsize=8)
        axis.set_xlabel("label", fontsize=7)
        axis.set_ylabel("head", fontsize=7)
        axis.tick_params(labelsize=6)
    figure.suptitle(f"{run.label}: labels of each head (black: in the head's set)", fontsize=9)
    set_margins(figure, bottom=0.55, top=0.55, left=0.5)
    return figure


def matrices_figure(run: ProbedRun) -> Figure | None:
    """A few normalised node matrices M_k / max|M_k| of the last attention and FF sub-blocks."""
    found = last_artifacts(run)
    blocks = [kind_blocks[-1] for kind_blocks in (sub_blocks(run, kind) for kind in KIND_TITLES) if kind_blocks]
    shown = [(block, int(node), matrix) for block in blocks
             for node, matrix in zip(found["sub_blocks"][block]["nodes"], found["sub_blocks"][block]["matrices"])]
    if not shown:
        return None
    columns = min(4, len(shown))
    rows = -(-len(shown) // columns)
    figure = Figure(figsize=(2.2 * columns + 0.6, 2.2 * rows + 0.6))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, (block, index, matrix) in zip(axes.flat, shown):
        axis.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        axis.set_title(f"{block}, node {index}", fontsize=7)
        axis.tick_params(labelsize=6)
    for axis in list(axes.flat)[len(shown):]:
        axis.set_visible(False)
    figure.suptitle(f"{run.label}: node matrices (true label rows x field columns; nodes with the largest "
                    "clusters)", fontsize=8)
    set_margins(figure, bottom=0.35, top=0.55, left=0.4, wspace=0.35, hspace=0.5)
    return figure


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The overview figures (when any run was analysed), then the metrics' figures."""
    analysed = [run for run in runs if last_artifacts(run) is not None]
    if analysed:
        key = OVERVIEW[0]
        yield (ReportFigure("single_node_depth", key, "Readout accuracy and SNR (mean cluster size over mean noise) "
                            "against depth at the last epoch; mean and sd over seeds."), depth_figure(analysed))
        yield (ReportFigure("single_node_cluster_sizes", key, "Distribution of the nodes' cluster sizes at the last "
                            "epoch, all sub-blocks of a kind pooled, per group."), cluster_size_figure(analysed))
        yield (ReportFigure("single_node_andc", key, "ANDC at the last epoch: each node's readout weights pruned to "
                            "its own labels (refitted and not) against random masks of the same sparsity "
                            "(refitted)."),
               andc_figure(analysed))
        for drawer, stem, caption in ((heads_figure, "heads", "Head x label coverage"),
                                      (matrices_figure, "matrices", "Node matrices")):
            for run in analysed[:1]:
                drawn = drawer(run)
                if drawn is not None:
                    yield (ReportFigure(f"single_node_{stem}_{file_stem(run.label)}", key,
                                        f"{caption} of {run.label} at its last epoch."), drawn)
    yield from family_figures(NAME, runs)


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The overview (with where the node matrices are), then the metric families."""
    overview = figure_sections(figures, [OVERVIEW])
    if overview:
        note = Paragraph((f"Every node matrix of the shown nodes, per run, sub-block and epoch: {MATRICES_FILE}.",))
        overview[0] = Section(overview[0].key, overview[0].title, (*overview[0].blocks, note))
    return overview + family_sections(NAME, figures)


def write_files(out_dir: Path, runs: list[ProbedRun]) -> None:
    """``single_node_matrices.npz``: per run, epoch and sub-block, the normalised node matrices
    (k, L, L) kept for the report, those nodes' indices (k,) and every node's cluster size (D,);
    keys ``<run label>/epoch=NNN/<sub-block>/matrices``, ``.../nodes`` and ``.../cluster_sizes``
    (run labels are distinct). Without single-node numbers, an earlier report's file is removed."""
    arrays = {}
    for run in runs:
        for epoch, found in sorted((run.artifacts.get(NAME) or {}).items()):
            for block, drawn in found["sub_blocks"].items():
                for name in ("matrices", "nodes", "cluster_sizes"):
                    arrays[f"{run.label}/epoch={epoch:03d}/{block}/{name}"] = drawn[name]
    if arrays:
        with atomic_path(out_dir / MATRICES_FILE) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    else:
        (out_dir / MATRICES_FILE).unlink(missing_ok=True)  # an earlier report's, stale now
