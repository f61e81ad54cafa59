"""Tree shapes over ranks ``0..n-1``: NCCL's double binary tree (NCCL 2.4, ``src/graph/trees.cc``).

Tree 0 is an in-order binary tree: rank r's level is its lowest set bit, so
odd ranks are leaves. Tree 1 mirrors it (``r -> n-1-r``) when n is even and
shifts it by one (``r -> r+1 mod n``) when n is odd, so no rank is an inner
node of both trees when n is even (Sanders, Speck, Traeff 2009).

>>> parents, children = double_binary_tree(6)
>>> parents.tolist()
[[-1, 2, 4, 2, 0, 4], [1, 5, 3, 1, 3, -1]]
>>> children[0].tolist()
[[4, -1], [-1, -1], [1, 3], [-1, -1], [2, 5], [-1, -1]]
>>> tree_depths(parents[0]).tolist(), tree_heights(parents[0]).tolist()
([0, 3, 2, 3, 1, 2], [3, 0, 1, 0, 2, 0])
"""

import numpy as np


def _btree(n, rank):
    """NCCL ``ncclGetBtree``: (parent, child, child) of ``rank``, -1 for none."""
    bit = 1
    while bit < n and not bit & rank:
        bit <<= 1
    if rank == 0:
        return -1, (bit >> 1 if n > 1 else -1), -1
    up = (rank ^ bit) | (bit << 1)  # clear our level bit, set the next: the parent one level up
    if up >= n:
        up = rank ^ bit
    low = bit >> 1
    down0 = rank - low if low else -1
    while low and rank + low >= n:  # the right child may fall off the end; try lower levels
        low >>= 1
    down1 = rank + low if low else -1
    return up, down0, down1


def double_binary_tree(n):
    """Parents ``(2, n)`` and children ``(2, n, 2)`` (left-packed, -1 for none) of NCCL's two trees."""
    if n < 1:
        raise ValueError(f"a tree needs at least one rank, got {n}")
    parents = np.full((2, n), -1, np.int64)
    children = np.full((2, n, 2), -1, np.int64)
    for r in range(n):
        parents[0, r], *kids = _btree(n, r)
        children[0, r] = kids
    if n % 2:
        perm = (np.arange(n) + 1) % n
    else:
        perm = n - 1 - np.arange(n)
    # tree 1 is tree 0 with every rank renamed through perm (an involution only when mirrored)
    inv = np.argsort(perm)
    parents[1] = np.where(parents[0][inv] >= 0, perm[parents[0][inv]], -1)
    children[1] = np.where(children[0][inv] >= 0, perm[children[0][inv]], -1)
    return parents, children


def tree_depths(parent):
    """Distance of every rank from the root."""
    depth = np.zeros(len(parent), np.int64)
    has_parent = parent >= 0
    while True:
        new = np.where(has_parent, depth[np.maximum(parent, 0)] + 1, 0)
        if np.array_equal(new, depth):
            return depth
        depth = new


def tree_heights(parent):
    """Longest distance from every rank down to a leaf of its subtree."""
    height = np.zeros(len(parent), np.int64)
    has_parent = parent >= 0
    while True:
        new = np.zeros_like(height)
        np.maximum.at(new, parent[has_parent], height[has_parent] + 1)
        if np.array_equal(new, height):
            return height
        height = new
