"""Figures written at test time."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch


def spectrogram_figure(path, signals, sample_rate, n_fft=512, hop=128):
    """Saves log-magnitude spectrograms of named signals, one panel each, as a PNG.

    Like Figure 4 of the NASS paper: mixture, separated speakers, estimated noise.

    Arguments
    ---------
    path : str
        Output PNG file.
    signals : dict of str -> torch.Tensor
        Panel title -> 1-D signal.
    sample_rate : int
    n_fft, hop : int
        STFT size and hop (samples).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "fig.png")
    >>> spectrogram_figure(path, {"mix": torch.randn(8000), "s1_hat": torch.randn(8000)}, 8000)
    >>> os.path.getsize(path) > 0
    True
    """
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), sharex=True, squeeze=False)
    window = torch.hann_window(n_fft)
    for ax, (name, raw) in zip(axes[:, 0], signals.items()):
        signal = raw.detach().float().cpu()
        spec = torch.stft(signal, n_fft, hop, window=window, return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp(min=1e-8))
        top = float(db.max())
        duration = signal.shape[-1] / sample_rate
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, duration, 0, sample_rate / 2 / 1000),
        )
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bar_chart(path, labels, series, ylabel="", title=""):
    """Saves grouped bars as a PNG: one group per label, one bar per series (e.g. the WER of each recogniser).

    Arguments
    ---------
    path : str
        Output PNG file.
    labels : list of str
        The groups (systems), left to right.
    series : dict of str -> list of float
        Bar name -> one value per label (NaN: no bar).
    ylabel, title : str

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "bars.png")
    >>> bar_chart(path, ["End to end", "Hybrid"], {"e2e_wer": [51.1, 46.3]}, "WER (%)")
    >>> os.path.getsize(path) > 0
    True
    """
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 1.1 * len(labels)), 3.2))
    for k, (name, values) in enumerate(series.items()):
        positions = [i + (k - (n - 1) / 2) * width for i in range(len(labels))]
        bars = ax.bar(positions, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
