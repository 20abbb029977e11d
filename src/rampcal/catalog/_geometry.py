"""Exact geometry and numpy-order arithmetic for the catalog kernels (private).

- :func:`pw32`/:func:`pw64`: numpy's pairwise summation (``np.add.reduce``), so that
  compiled sums give numpy's results bit for bit;
- :func:`rint`: ``np.rint``; :func:`dlae2`: the eigenvalues of a symmetric 2×2 matrix as
  LAPACK ``dsterf`` computes them (``np.linalg.eigvalsh``);
- :func:`overlap`: exact area of a pixel inside a circle;
- :func:`ellipse_weights`: exact area of each pixel of a grid inside an ellipse
  (photutils ``elliptical_overlap_grid``, Robitaille's triangle decomposition).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: LAPACK ``dlamch('E')`` squared (tridiagonal splitting test of ``dsterf``).
_EPS2 = (2.0**-53) ** 2
_JIT = {"cache": True, "fastmath": False, "error_model": "numpy"}
_NO_TRI = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

__all__: list[str] = []


# --------------------------------------------------------------------------- numerics


# numpy's pairwise summation (the inner loop of ``np.add.reduce``): blocks of at most
# 128 values summed with 8 accumulators, longer runs split in two (the first half a
# multiple of 8) and the halves added. numba cannot cache self-recursive functions, so
# the split tree is walked with an explicit stack.


@numba.njit(**_JIT)
def _block32(a, lo, n):  # pragma: no cover - compiled
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(**_JIT)
def _block64(a, lo, n):  # pragma: no cover - compiled
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(**_JIT)
def pw32(a, lo, n):  # pragma: no cover - compiled
    """numpy's float32 pairwise sum of ``a[lo:lo+n]``."""
    if n <= 128:
        return _block32(a, lo, n)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)
    vals = np.empty(64, np.float32)
    top = 0
    nv = 0
    starts[0], sizes[0], stage[0] = lo, n, 0
    while top >= 0:
        m = sizes[top]
        if m <= 128:
            vals[nv] = _block32(a, starts[top], m)
            nv += 1
            top -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        if stage[top] == 0:
            stage[top] = 1
            top += 1
            starts[top], sizes[top], stage[top] = starts[top - 1], n2, 0
        elif stage[top] == 1:
            stage[top] = 2
            top += 1
            starts[top], sizes[top], stage[top] = starts[top - 1] + n2, m - n2, 0
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


@numba.njit(**_JIT)
def pw64(a, lo, n):  # pragma: no cover - compiled
    """numpy's float64 pairwise sum of ``a[lo:lo+n]``."""
    if n <= 128:
        return _block64(a, lo, n)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)
    vals = np.empty(64)
    top = 0
    nv = 0
    starts[0], sizes[0], stage[0] = lo, n, 0
    while top >= 0:
        m = sizes[top]
        if m <= 128:
            vals[nv] = _block64(a, starts[top], m)
            nv += 1
            top -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        if stage[top] == 0:
            stage[top] = 1
            top += 1
            starts[top], sizes[top], stage[top] = starts[top - 1], n2, 0
        elif stage[top] == 1:
            stage[top] = 2
            top += 1
            starts[top], sizes[top], stage[top] = starts[top - 1] + n2, m - n2, 0
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


@numba.njit(**_JIT)
def rint(x):  # pragma: no cover - compiled
    """``np.rint``: nearest integer, halves to even (finite ``x``)."""
    f = math.floor(x)
    d = x - f
    if d > 0.5 or (d == 0.5 and f % 2.0 != 0.0):
        f += 1.0
    return int(f)


@numba.njit(**_JIT)
def dlae2(a, b, c):  # pragma: no cover - compiled
    """Eigenvalues (larger, smaller) of [[a, b], [b, c]] as LAPACK ``dsterf``/``dlae2``."""
    if b * b <= _EPS2 * abs(a * c):  # dsterf splits off a negligible off-diagonal
        return max(a, c), min(a, c)
    b = math.sqrt(b * b)  # dsterf works on e² and takes its root
    sm = a + c
    df = a - c
    adf = abs(df)
    tb = b + b
    ab = abs(tb)
    if abs(a) > abs(c):
        acmx, acmn = a, c
    else:
        acmx, acmn = c, a
    if adf > ab:
        rt = adf * math.sqrt(1.0 + (ab / adf) ** 2)
    elif adf < ab:
        rt = ab * math.sqrt(1.0 + (adf / ab) ** 2)
    else:
        rt = ab * math.sqrt(2.0)
    if sm < 0.0:
        rt1 = 0.5 * (sm - rt)
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    elif sm > 0.0:
        rt1 = 0.5 * (sm + rt)
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    else:
        rt1 = 0.5 * rt
        rt2 = -0.5 * rt
    return max(rt1, rt2), min(rt1, rt2)


# --------------------------------------------------------------------------- exact overlaps


@numba.njit(**_JIT)
def _g(x, h, r):  # pragma: no cover - compiled
    """∫ (sqrt(r² − t²) − h) dt up to ``x`` (|x| ≤ r)."""
    return (
        0.5 * (math.sqrt(max(0.0, 1.0 - x * x / (r * r))) * x * r + r * r * math.asin(x / r))
        - h * x
    )


@numba.njit(**_JIT)
def _area_above(x0, x1, h, r):  # pragma: no cover - compiled
    """Area of the disc (radius r, centre 0) above the line v = h ≥ 0, for x0 ≤ u ≤ x1."""
    if h >= r:
        return 0.0
    s = math.sqrt(r * r - h * h)
    a = max(-s, min(s, x0))
    b = max(-s, min(s, x1))
    return _g(b, h, r) - _g(a, h, r)


@numba.njit(**_JIT)
def overlap(x0, x1, y0, y1, r):  # pragma: no cover - compiled
    """Exact area of [x0, x1] × [y0, y1] inside the disc of radius r centred at 0."""
    nx_ = 0.0 if x0 <= 0.0 <= x1 else min(abs(x0), abs(x1))
    ny_ = 0.0 if y0 <= 0.0 <= y1 else min(abs(y0), abs(y1))
    if nx_ * nx_ + ny_ * ny_ >= r * r:
        return 0.0
    fx = max(abs(x0), abs(x1))
    fy = max(abs(y0), abs(y1))
    if fx * fx + fy * fy <= r * r:
        return (x1 - x0) * (y1 - y0)
    if y1 <= 0.0:
        y0, y1 = -y1, -y0
    if y0 >= 0.0:
        area = _area_above(x0, x1, y0, r) - _area_above(x0, x1, y1, r)
    else:
        area = 2.0 * _area_above(x0, x1, 0.0, r)
        area -= _area_above(x0, x1, -y0, r) + _area_above(x0, x1, y1, r)
    return max(area, 0.0)


# The ellipse–pixel overlap follows photutils.geometry (Robitaille's method): the pixel,
# mapped to the frame where the ellipse is the unit circle, is split into two triangles
# whose overlaps with the unit circle are summed. Same operations, same results.


@numba.njit(**_JIT)
def _tri_area(x1, y1, x2, y2, x3, y3):  # pragma: no cover - compiled
    return 0.5 * abs(x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))


@numba.njit(**_JIT)
def _arc_unit(x1, y1, x2, y2):  # pragma: no cover - compiled
    """Area of the unit-circle segment cut by the chord (x1, y1)–(x2, y2)."""
    a = math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    theta = 2.0 * math.asin(0.5 * a)
    return 0.5 * (theta - math.sin(theta))


@numba.njit(**_JIT)
def _in_triangle(x, y, x1, y1, x2, y2, x3, y3):  # pragma: no cover - compiled
    c = 0
    if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
        c += 1
    if (y2 > y) != (y3 > y) and x < (x3 - x2) * (y - y2) / (y3 - y2) + x2:
        c += 1
    if (y3 > y) != (y1 > y) and x < (x1 - x3) * (y - y3) / (y1 - y3) + x3:
        c += 1
    return c % 2 == 1


@numba.njit(**_JIT)
def _circle_line(x1, y1, x2, y2):  # pragma: no cover - compiled
    """Intersections of the line through two points with the unit circle (2 = none)."""
    dx = x2 - x1
    dy = y2 - y1
    if abs(dx) < 1e-10 and abs(dy) < 1e-10:
        return 2.0, 2.0, 2.0, 2.0
    if abs(dx) > abs(dy):
        a = dy / dx
        b = y1 - a * x1
        delta = 1.0 + a * a - b * b
        if delta > 0.0:
            delta = math.sqrt(delta)
            p1x = (-a * b - delta) / (1.0 + a * a)
            p1y = a * p1x + b
            p2x = (-a * b + delta) / (1.0 + a * a)
            p2y = a * p2x + b
            return p1x, p1y, p2x, p2y
        return 2.0, 2.0, 2.0, 2.0
    a = dx / dy
    b = x1 - a * y1
    delta = 1.0 + a * a - b * b
    if delta > 0.0:
        delta = math.sqrt(delta)
        p1y = (-a * b - delta) / (1.0 + a * a)
        p1x = a * p1y + b
        p2y = (-a * b + delta) / (1.0 + a * a)
        p2x = a * p2y + b
        return p1x, p1y, p2x, p2y
    return 2.0, 2.0, 2.0, 2.0


@numba.njit(**_JIT)
def _segment_single2(x1, y1, x2, y2):  # pragma: no cover - compiled
    """Intersection of the line with the unit circle closest to (x2, y2)."""
    p1x, p1y, p2x, p2y = _circle_line(x1, y1, x2, y2)
    dx1 = abs(p1x - x2)
    dy1 = abs(p1y - y2)
    dx2 = abs(p2x - x2)
    dy2 = abs(p2y - y2)
    if dx1 > dy1:
        if dx1 > dx2:
            return p2x, p2y
        return p1x, p1y
    if dy1 > dy2:
        return p2x, p2y
    return p1x, p1y


@numba.njit(**_JIT)
def _circle_segment(x1, y1, x2, y2):  # pragma: no cover - compiled
    """Intersections of the segment with the unit circle; off-segment ones → (2, 2)."""
    p1x, p1y, p2x, p2y = _circle_line(x1, y1, x2, y2)
    if (
        (p1x > x1 and p1x > x2)
        or (p1x < x1 and p1x < x2)
        or (p1y > y1 and p1y > y2)
        or (p1y < y1 and p1y < y2)
    ):
        p1x, p1y = 2.0, 2.0
    if (
        (p2x > x1 and p2x > x2)
        or (p2x < x1 and p2x < x2)
        or (p2y > y1 and p2y > y2)
        or (p2y < y1 and p2y < y2)
    ):
        p2x, p2y = 2.0, 2.0
    if p1x > 1.0 and p2x < 2.0:
        return p1x, p1y, p2x, p2y
    return p2x, p2y, p1x, p1y


@numba.njit(**_JIT)
def _tri_circle_core(x1, y1, x2, y2, x3, y3):  # pragma: no cover - compiled
    """Overlap of a triangle and the unit circle, or the split of an outside triangle.

    Returns (area, split, triangle a (6), triangle b (6)): with ``split`` the area is
    that of the two triangles (each with a vertex inside the circle).
    """
    d1 = x1 * x1 + y1 * y1
    d2 = x2 * x2 + y2 * y2
    d3 = x3 * x3 + y3 * y3
    # order the vertices by distance from the origin
    if d1 < d2:
        if d2 < d3:
            pass
        elif d1 < d3:
            x2, y2, d2, x3, y3, d3 = x3, y3, d3, x2, y2, d2
        else:
            x1, y1, d1, x2, y2, d2, x3, y3, d3 = x3, y3, d3, x1, y1, d1, x2, y2, d2
    else:
        if d1 < d3:
            x1, y1, d1, x2, y2, d2 = x2, y2, d2, x1, y1, d1
        elif d2 < d3:
            x1, y1, d1, x2, y2, d2, x3, y3, d3 = x2, y2, d2, x3, y3, d3, x1, y1, d1
        else:
            x1, y1, d1, x2, y2, d2, x3, y3, d3 = x3, y3, d3, x2, y2, d2, x1, y1, d1
    in1 = d1 < 1.0
    in2 = d2 < 1.0
    in3 = d3 < 1.0
    on1 = abs(d1 - 1.0) < 1e-10
    on2 = abs(d2 - 1.0) < 1e-10
    on3 = abs(d3 - 1.0) < 1e-10
    if on3 or in3:
        area = _tri_area(x1, y1, x2, y2, x3, y3)
        return area, False, _NO_TRI, _NO_TRI
    if in2 or on2:
        intersect13 = (not on1) or x1 * (x3 - x1) + y1 * (y3 - y1) < 0.0
        intersect23 = (not on2) or x2 * (x3 - x2) + y2 * (y3 - y2) < 0.0
        if intersect13 and intersect23 and not on2:
            q1x, q1y = _segment_single2(x1, y1, x3, y3)
            q2x, q2y = _segment_single2(x2, y2, x3, y3)
            area = (
                _tri_area(x1, y1, x2, y2, q1x, q1y)
                + _tri_area(x2, y2, q1x, q1y, q2x, q2y)
                + _arc_unit(q1x, q1y, q2x, q2y)
            )
            return area, False, _NO_TRI, _NO_TRI
        if intersect13:
            q1x, q1y = _segment_single2(x1, y1, x3, y3)
            area = _tri_area(x1, y1, x2, y2, q1x, q1y) + _arc_unit(x2, y2, q1x, q1y)
            return area, False, _NO_TRI, _NO_TRI
        if intersect23:
            q2x, q2y = _segment_single2(x2, y2, x3, y3)
            area = _tri_area(x1, y1, x2, y2, q2x, q2y) + _arc_unit(x1, y1, q2x, q2y)
            return area, False, _NO_TRI, _NO_TRI
        area = _arc_unit(x1, y1, x2, y2)
        return area, False, _NO_TRI, _NO_TRI
    if on1:
        area = 0.0
        return area, False, _NO_TRI, _NO_TRI
    if in1:
        p1x, p1y, p2x, p2y = _circle_segment(x2, y2, x3, y3)
        p3x, p3y = _segment_single2(x1, y1, x2, y2)
        p4x, p4y = _segment_single2(x1, y1, x3, y3)
        if p1x > 1.0:  # the far side does not cross the circle
            if ((0.0 - p3y) * (p4x - p3x) > (p4y - p3y) * (0.0 - p3x)) != (
                (y1 - p3y) * (p4x - p3x) > (p4y - p3y) * (x1 - p3x)
            ):
                area = _tri_area(x1, y1, p3x, p3y, p4x, p4y) + (
                    math.pi - _arc_unit(p3x, p3y, p4x, p4y)
                )
                return area, False, _NO_TRI, _NO_TRI
            area = _tri_area(x1, y1, p3x, p3y, p4x, p4y) + _arc_unit(p3x, p3y, p4x, p4y)
            return area, False, _NO_TRI, _NO_TRI
        if (p2x - x2) ** 2 + (p2y - y2) ** 2 < (p1x - x2) ** 2 + (p1y - y2) ** 2:
            p1x, p1y, p2x, p2y = p2x, p2y, p1x, p1y
        area = (
            _tri_area(x1, y1, p3x, p3y, p1x, p1y)
            + _tri_area(x1, y1, p1x, p1y, p2x, p2y)
            + _tri_area(x1, y1, p2x, p2y, p4x, p4y)
            + _arc_unit(p1x, p1y, p3x, p3y)
            + _arc_unit(p2x, p2y, p4x, p4y)
        )
        return area, False, _NO_TRI, _NO_TRI
    p1x, p1y, p2x, p2y = _circle_segment(x1, y1, x2, y2)
    p3x, p3y, p4x, p4y = _circle_segment(x2, y2, x3, y3)
    p5x, p5y, p6x, p6y = _circle_segment(x3, y3, x1, y1)
    if p1x <= 1.0:
        xp, yp = 0.5 * (p1x + p2x), 0.5 * (p1y + p2y)
        return 0.0, True, (x1, y1, x3, y3, xp, yp), (x2, y2, x3, y3, xp, yp)
    if p3x <= 1.0:
        xp, yp = 0.5 * (p3x + p4x), 0.5 * (p3y + p4y)
        return 0.0, True, (x3, y3, x1, y1, xp, yp), (x2, y2, x1, y1, xp, yp)
    if p5x <= 1.0:
        xp, yp = 0.5 * (p5x + p6x), 0.5 * (p5y + p6y)
        return 0.0, True, (x1, y1, x2, y2, xp, yp), (x3, y3, x2, y2, xp, yp)
    area = math.pi if _in_triangle(0.0, 0.0, x1, y1, x2, y2, x3, y3) else 0.0
    return area, False, _NO_TRI, _NO_TRI


@numba.njit(**_JIT)
def _tri_circle(x1, y1, x2, y2, x3, y3):  # pragma: no cover - compiled
    """Area of overlap of a triangle and the unit circle.

    A triangle with no vertex inside the circle but crossed by it is split at the middle
    of a chord into two triangles with a vertex inside (photutils recurses once).
    """
    area, split, ta, tb = _tri_circle_core(x1, y1, x2, y2, x3, y3)
    if not split:
        return area
    area_a = _tri_circle_core(ta[0], ta[1], ta[2], ta[3], ta[4], ta[5])[0]
    area_b = _tri_circle_core(tb[0], tb[1], tb[2], tb[3], tb[4], tb[5])[0]
    return area_a + area_b


@numba.njit(**_JIT)
def _ellipse_pixel(xmin, ymin, xmax, ymax, rx, ry, cos_m, sin_m):  # pragma: no cover
    """Area of [xmin, xmax] × [ymin, ymax] inside the ellipse (rx, ry, −θ rotation)."""
    x1 = (xmin * cos_m - ymin * sin_m) / rx
    y1 = (xmin * sin_m + ymin * cos_m) / ry
    x2 = (xmax * cos_m - ymin * sin_m) / rx
    y2 = (xmax * sin_m + ymin * cos_m) / ry
    x3 = (xmax * cos_m - ymax * sin_m) / rx
    y3 = (xmax * sin_m + ymax * cos_m) / ry
    x4 = (xmin * cos_m - ymax * sin_m) / rx
    y4 = (xmin * sin_m + ymax * cos_m) / ry
    return (_tri_circle(x1, y1, x2, y2, x3, y3) + _tri_circle(x1, y1, x4, y4, x3, y3)) * (rx * ry)


@numba.njit(**_JIT)
def ellipse_weights(xmin, xmax, ymin, ymax, nx, ny, rx, ry, theta, out):  # pragma: no cover
    """Exact ellipse overlap of each cell of a grid (photutils ``elliptical_overlap_grid``).

    The grid spans [xmin, xmax] × [ymin, ymax] in ``nx`` × ``ny`` cells; the ellipse is
    centred on 0 with semi-axes ``rx``, ``ry`` at angle ``theta`` (radians). ``out``
    (ny, nx) float64 receives the fraction of each cell inside the ellipse.
    """
    dx = (xmax - xmin) / nx
    dy = (ymax - ymin) / ny
    norm = 1.0 / (dx * dy)
    r = max(rx, ry)
    bxmin = -r - 0.5 * dx
    bxmax = r + 0.5 * dx
    bymin = -r - 0.5 * dy
    bymax = r + 0.5 * dy
    cos_m = math.cos(-theta)
    sin_m = math.sin(-theta)
    for j in range(ny):
        for i in range(nx):
            out[j, i] = 0.0
    for i in range(nx):
        pxmin = xmin + i * dx
        pxmax = pxmin + dx
        if pxmax > bxmin and pxmin < bxmax:
            for j in range(ny):
                pymin = ymin + j * dy
                pymax = pymin + dy
                if pymax > bymin and pymin < bymax:
                    out[j, i] = (
                        _ellipse_pixel(pxmin, pymin, pxmax, pymax, rx, ry, cos_m, sin_m) * norm
                    )
