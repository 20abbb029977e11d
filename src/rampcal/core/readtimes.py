"""When each pixel of a WFI frame is read: the pixel read-time model (ALGORITHMS.md §5.1).

The 4096 columns are read by 32 channels of 128 columns in parallel; alternate
channels read in opposite directions. Within a channel, pixel ``(row, col)`` is the
``n = col + row·(128 + 14)``-th pixel-clock cycle (14 pad cycles per row, one cycle
4.915263 µs). The time left in a frame after the science readout is spent on
guide-window reads, modelled as 16 excursions (one every 256 rows), each lasting
``gw_pseudotime_factor`` times its share of that time; the whole is then scaled to
span one frame time.
"""

from __future__ import annotations

import numpy as np

#: Pixel clock period (s).
PIXEL_TIME = 4.915263e-6
#: Pad clock cycles at the end of each row of a channel.
ROW_PAD_CYCLES = 14
#: Number of science readout channels.
N_CHANNELS = 32
#: Full detector frame (rows, columns) the timing model describes.
FULL_SHAPE = (4096, 4096)
_CHANNEL_COLUMNS = FULL_SHAPE[1] // N_CHANNELS

__all__ = [
    "FULL_SHAPE",
    "N_CHANNELS",
    "PIXEL_TIME",
    "ROW_PAD_CYCLES",
    "frame_read_times",
    "sca_number",
]


def sca_number(sca: int | str) -> int:
    """Detector number 1..18 from an int or a name such as ``"WFI07"``."""
    if isinstance(sca, str):
        text = sca.strip().upper()
        if text.startswith("WFI"):
            text = text[3:]
        if not text.isdigit():
            raise ValueError(f"cannot read a detector number from {sca!r}")
        number = int(text)
    else:
        number = int(sca)
    if not 1 <= number <= 18:
        raise ValueError(f"detector number must be 1..18, got {sca!r}")
    return number


def frame_read_times(
    frame_time: float,
    sca: int | str,
    *,
    frame_number: float = 0,
    stride_gw: int = 256,
    gw_pseudotime_factor: float = 1.5,
    shape: tuple[int, int] = FULL_SHAPE,
) -> np.ndarray:
    """Time at which every pixel of a frame is read.

    Parameters
    ----------
    frame_time : float
        Frame (read) time of the exposure (s), ``meta.exposure.frame_time``.
    sca : int or str
        Detector, 1..18 or ``"WFInn"``; sets the science→detector orientation.
    frame_number : float, optional
        Frame index added as ``frame_number · frame_time`` (may be fractional).
    stride_gw : int, optional
        Rows between guide-window excursions (full-frame rows).
    gw_pseudotime_factor : float, optional
        Factor applied to each excursion's share of the guide-window time.
    shape : (int, int), optional
        Output shape (rows, columns); ``columns`` must be a multiple of 32.

    Returns
    -------
    ndarray (ny, nx) float32
        Read time of each pixel (s) in the orientation of the data arrays (the
        readout order flipped to the science frame), ``[y, x]`` indexing.

    Notes
    -----
    Full frame, one channel: ``n = col + row·142``, ``S = max n``; total cycles
    ``T = frame_time / 4.915263 µs``; ``c = max(T − S, 0) / n_gw · gw_pseudotime_factor``
    with ``n_gw = 4096 // stride_gw``; rows ``≥ i·stride_gw`` (``i = 1 … n_gw−1``) get
    ``+c``; ``t = frame_time · n / (max n + c)``. Channels alternate direction; the
    frame is reversed along columns when ``sca % 3 == 0`` and along rows otherwise.
    (Without guide-window time, ``frame_time < S·4.915263 µs``, the science readout
    is compressed to fill the frame.)

    Other shapes (tests, subarrays of a simulation) sample the full-frame model:
    output row ``y`` takes full row ``⌊y·4096/ny⌋`` and channel column ``j`` of a
    ``nx/32``-column channel takes full channel column ``⌊j·128/(nx/32)⌋``. The
    readout still spans one frame time, with 32 channels of ``nx/32`` columns and
    the guide-window excursions every ``ny/16`` rows (for ``ny`` a multiple of 16).
    """
    frame_time = float(frame_time)
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise ValueError(f"frame_time must be a positive number of seconds, got {frame_time!r}")
    sca = sca_number(sca)
    ny, nx = (int(v) for v in shape)
    if ny < 1 or nx < N_CHANNELS or nx % N_CHANNELS:
        raise ValueError(f"shape must have >= 1 row and a multiple of 32 columns, got {shape}")
    full_rows = FULL_SHAPE[0]
    stride_gw = int(stride_gw)
    if not 1 <= stride_gw <= full_rows:
        raise ValueError(f"stride_gw must be in 1..{full_rows}, got {stride_gw}")
    if gw_pseudotime_factor < 0:
        raise ValueError("gw_pseudotime_factor must be >= 0")

    row_cycles = _CHANNEL_COLUMNS + ROW_PAD_CYCLES
    science_cycles = (_CHANNEL_COLUMNS - 1) + (full_rows - 1) * row_cycles
    total_cycles = frame_time / PIXEL_TIME
    n_gw = full_rows // stride_gw
    cycles_per_gw = max(total_cycles - science_cycles, 0.0) / n_gw * gw_pseudotime_factor
    n_max = science_cycles + (n_gw - 1) * cycles_per_gw
    scale = frame_time / (n_max + cycles_per_gw)

    width = nx // N_CHANNELS
    rows = (np.arange(ny, dtype=np.int64) * full_rows) // ny
    cols = (np.arange(width, dtype=np.int64) * _CHANNEL_COLUMNS) // width
    row_start = rows * row_cycles + np.minimum(rows // stride_gw, n_gw - 1) * cycles_per_gw
    channel = (row_start[:, None] + cols[None, :]) * scale + float(frame_number) * frame_time

    if sca % 3 != 0:  # these detectors are read out bottom row last: flip the rows
        channel = channel[::-1]
    # Detectors with sca % 3 == 0 are read right to left instead. Reversing a whole row
    # maps channel c (forward on even c, reversed on odd c) onto channel 31 − c with the
    # opposite direction, which is the same layout again: nothing to flip there.
    times = np.empty((ny, N_CHANNELS, width), dtype=np.float32)
    times[:, 0::2, :] = channel[:, None, :]
    times[:, 1::2, :] = channel[:, None, ::-1]
    return times.reshape(ny, nx)
