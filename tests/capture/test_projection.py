"""The fixed seeded random projection of wide points."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from attnconv_pl.capture import Projector, projection_matrix


def test_projection_matrix_is_the_same_in_another_process(tmp_path):
    out = tmp_path / "matrix.pt"
    code = (
        "import torch; from attnconv_pl.capture import projection_matrix; "
        f"torch.save(projection_matrix(300, 64, 7, 'blocks.0.attn'), {str(out)!r})"
    )
    other_hash_salt = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", code], check=True, env=other_hash_salt)
    here = projection_matrix(300, 64, 7, "blocks.0.attn")
    assert here.dtype == torch.float32 and here.shape == (300, 64)
    assert torch.equal(torch.load(out), here)
    assert torch.equal(projection_matrix(300, 64, 7, "blocks.0.attn"), here)
    assert not torch.equal(projection_matrix(300, 64, 8, "blocks.0.attn"), here)
    assert not torch.equal(projection_matrix(300, 64, 7, "blocks.1.attn"), here)


def test_projection_matrix_has_variance_one_over_out_dim():
    matrix = projection_matrix(2000, 100, 0, "layer")
    assert abs(matrix.mean().item()) < 1e-3  # 4.5 standard errors
    assert matrix.var().item() == pytest.approx(1 / 100, rel=0.02)


def test_projection_approximately_preserves_pairwise_distances():
    points = torch.randn(150, 4096, generator=torch.Generator().manual_seed(3))
    projected = Projector(project_dim=512, seed=0).project(points, "layer")
    assert projected.shape == (150, 512)
    upper = torch.triu_indices(150, 150, offset=1)
    before = torch.cdist(points, points)[upper[0], upper[1]]
    after = torch.cdist(projected, projected)[upper[0], upper[1]]
    relative_error = (after / before - 1).abs()
    # JL: the relative error of a distance has standard deviation ~ sqrt(1 / (2 * 512)) = 0.031
    assert relative_error.mean().item() < 0.05
    assert relative_error.max().item() < 0.2


def test_projector_leaves_narrow_points_and_projects_wide_ones_or_each_token():
    projector = Projector(project_dim=8, seed=5)
    narrow = torch.randn(3, 8)
    assert projector.project(narrow, "layer") is narrow
    wide = torch.randn(3, 20)
    torch.testing.assert_close(
        projector.project(wide, "layer"), wide @ projection_matrix(20, 8, 5, "layer")
    )
    tokens = torch.randn(3, 4, 10)
    per_token = projector.project(tokens.reshape(3, 40), "layer", group_width=10)
    expected = tokens @ projection_matrix(10, 8, 5, "layer")
    torch.testing.assert_close(per_token, expected.reshape(3, 32))
