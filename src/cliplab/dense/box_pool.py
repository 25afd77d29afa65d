"""Pooling dense features over pixel boxes: each cell weighted by the share of it the box covers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def box_cell_cover(boxes: Tensor, grid: tuple[int, int], patch: float) -> Tensor:
    """(R, h*w) the share of each grid cell (0 to 1) that each box (R, 4) = x0, y0, x1, y1 in input pixels covers."""
    h, w = grid
    edges_y = torch.arange(h + 1, device=boxes.device, dtype=torch.float32) * patch
    edges_x = torch.arange(w + 1, device=boxes.device, dtype=torch.float32) * patch
    b = boxes.float()

    def overlap(lo: Tensor, hi: Tensor, edges: Tensor) -> Tensor:  # (R, cells) length of [lo, hi] inside each cell
        return (torch.minimum(hi[:, None], edges[None, 1:]) - torch.maximum(lo[:, None], edges[None, :-1])).clamp_min(0)

    area = overlap(b[:, 1], b[:, 3], edges_y)[:, :, None] * overlap(b[:, 0], b[:, 2], edges_x)[:, None, :]
    return area.flatten(1) / (patch * patch)


def box_cell_weights(boxes: Tensor, grid: tuple[int, int], patch: float) -> Tensor:
    """(R, h*w) weights of the grid cells under each box (R, 4) = x0, y0, x1, y1 in input pixels: the
    area of the cell the box covers, normalised to sum 1 (a box smaller than a cell still gets its cell)."""
    h, w = grid
    area = box_cell_cover(boxes, grid, patch)
    empty = area.sum(1) <= 0
    if empty.any():  # a degenerate box: the cell holding its centre
        b = boxes.float()
        cy = ((b[empty, 1] + b[empty, 3]) / 2 / patch).long().clamp(0, h - 1)
        cx = ((b[empty, 0] + b[empty, 2]) / 2 / patch).long().clamp(0, w - 1)
        area[empty] = F.one_hot(cy * w + cx, h * w).float()
    return area / area.sum(1, keepdim=True)


def pool_boxes(dense: Tensor, boxes: Tensor, patch: float) -> Tensor:
    """(R, E) box means of dense features ``dense`` (B, E, h, w) for ``boxes`` (R, 5) = image row, x0,
    y0, x1, y1 in input pixels (not normalised)."""
    _, _, h, w = dense.shape
    weights = box_cell_weights(boxes[:, 1:], (h, w), patch).to(dense.dtype)
    per_box = dense.flatten(2)[boxes[:, 0].long()]  # (R, E, hw)
    return torch.einsum("reh,rh->re", per_box, weights)
