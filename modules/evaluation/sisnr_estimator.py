"""The blind SI-SNR estimator of SpeechBrain's REAL-M recipe: architecture, checkpoint loading, scoring.

Subakan et al., "REAL-M: Towards Speech Separation on Real Mixtures",
ICASSP 2022; SpeechBrain ``recipes/REAL-M/sisnr-estimation`` (the published
model: ``speechbrain/REAL-M-sisnr-estimator``, which users download themselves).
The estimator predicts the SI-SNR of a separated signal from that signal and
the mixture alone:

* each of the two signals is standardised over time (zero mean, unit standard
  deviation; the recipe's ``separation_norm_type: stnorm``) and they are
  stacked as two channels ``[separated, mixture]``;
* ``encoder``: five Conv1d layers (kernel 4, 128 channels, strides 1, 2, 2, 2,
  2, no padding) with a ReLU after each of the first four;
* statistics pooling over time (mean and standard deviation, 256 features);
* ``encoder_out``: Linear 256 -> 256, ReLU, Linear 256 -> 1, sigmoid; the
  output in [0, 1] maps linearly to [``snr_min``, ``snr_max``] = [0, 10] dB.

Training (:class:`modules.evaluation.sisnr_training.SISNREstimatorBrain`): L1
between that output and the oracle SI-SNR clipped to [0, 10] dB and scaled to
[0, 1], the oracle SI-SNR of each separated stream being against its best
matching reference. 329,857 parameters at full size (about 0.33M).

The submodules carry the recipe's names and SpeechBrain layer classes
(``speechbrain.nnet.containers.Sequential`` of ``speechbrain.nnet.CNN.Conv1d``
named ``cnn1`` ... ``cnn5``, ``speechbrain.nnet.linear.Linear`` named
``layer1``, ``layer2``), so the published ``encoder.ckpt`` and
``encoder_out.ckpt`` load as they are (:meth:`BlindSISNREstimator.load_speechbrain`).

Departure: SpeechBrain's ``StatisticsPooling`` adds random noise of 1e-5 to
9e-5 to the mean at every call, in evaluation too, so the published
estimator is not deterministic; here the mean is left as it is (the standard
deviation gets the same 1e-5 floor), an effect far below the estimator's
resolution, and the scores are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from speechbrain.nnet.CNN import Conv1d
from speechbrain.nnet.containers import Sequential
from speechbrain.nnet.linear import Linear

__all__ = ["BlindSISNREstimator", "compress_snr", "expand_snr", "standardise"]

SNR_MIN, SNR_MAX = 0.0, 10.0


def standardise(signals, eps=1e-8):
    """Zero mean, unit standard deviation over the last axis (the recipe's ``stnorm``).

    Example
    -------
    >>> x = standardise(torch.tensor([[1.0, 2.0, 3.0]]))
    >>> [round(v, 4) for v in x[0].tolist()]
    [-1.0, 0.0, 1.0]
    """
    signals = signals - signals.mean(dim=-1, keepdim=True)
    return signals / (signals.std(dim=-1, keepdim=True) + eps)


def compress_snr(snr, snr_min=SNR_MIN, snr_max=SNR_MAX):
    """SI-SNR (dB) clipped to ``[snr_min, snr_max]`` and mapped to [0, 1] (the training target).

    Example
    -------
    >>> compress_snr(torch.tensor([-3.0, 5.0, 20.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return (snr.clamp(min=snr_min, max=snr_max) - snr_min) / (snr_max - snr_min)


def expand_snr(value, snr_min=SNR_MIN, snr_max=SNR_MAX):
    """The estimator's [0, 1] output back in dB.

    Example
    -------
    >>> expand_snr(torch.tensor([0.25])).tolist()
    [2.5]
    """
    return value * (snr_max - snr_min) + snr_min


class BlindSISNREstimator(torch.nn.Module):
    """SpeechBrain's REAL-M SI-SNR estimator (see the module docstring).

    Arguments
    ---------
    latent_dim : int
        Channels of the convolutions (128 in the recipe).
    hidden : int
        Width of the first linear layer (256 in the recipe, twice ``latent_dim``).
    snr_min, snr_max : float
        The range the output is mapped to (0 and 10 dB).

    Example
    -------
    >>> full = BlindSISNREstimator()
    >>> sum(p.numel() for p in full.parameters())
    329857
    >>> tiny = BlindSISNREstimator(latent_dim=8, hidden=16)
    >>> snr = tiny(torch.randn(3, 4000), torch.randn(3, 4000))
    >>> snr.shape, bool(((snr >= 0) & (snr <= 10)).all())
    (torch.Size([3]), True)
    """

    def __init__(self, latent_dim=128, hidden=256, snr_min=SNR_MIN, snr_max=SNR_MAX):
        super().__init__()
        self.snr_min, self.snr_max = snr_min, snr_max
        layers = {}
        in_channels = 2
        for i, stride in enumerate((1, 2, 2, 2, 2), start=1):
            layers[f"cnn{i}"] = Conv1d(
                in_channels=in_channels,
                out_channels=latent_dim,
                kernel_size=4,
                stride=stride,
                padding="valid",
                skip_transpose=True,
            )
            if i < 5:
                layers[f"relu{i}"] = torch.nn.ReLU()
            in_channels = latent_dim
        self.encoder = Sequential(input_shape=[None, 2, None], **layers)
        self.encoder_out = Sequential(
            input_shape=[None, 2 * latent_dim],
            layer1=Linear(input_size=2 * latent_dim, n_neurons=hidden),
            relu=torch.nn.ReLU(),
            layer2=Linear(input_size=hidden, n_neurons=1),
            sigm=torch.nn.Sigmoid(),
        )

    def compressed(self, separated, mixture):
        """The output in [0, 1]: ``separated``, ``mixture`` ``[B, T]`` -> ``[B]``."""
        inputs = torch.stack([standardise(separated.float()), standardise(mixture.float())], dim=1)  # [B, 2, T]
        features = self.encoder(inputs)  # [B, C, T']
        stats = torch.cat([features.mean(dim=-1), features.std(dim=-1) + 1e-5], dim=-1)  # [B, 2C]
        return self.encoder_out(stats[:, None, :])[:, 0, 0]

    def forward(self, separated, mixture):
        """Estimated SI-SNR in dB (``[B]``) of each separated signal given its mixture."""
        return expand_snr(self.compressed(separated, mixture), self.snr_min, self.snr_max)

    def load_speechbrain(self, source, map_location="cpu"):
        """Loads weights saved in SpeechBrain's format.

        Arguments
        ---------
        source : str or Path
            A folder with ``encoder.ckpt`` and ``encoder_out.ckpt`` (the
            published model's files, or a ``CKPT+...`` folder of the REAL-M
            recipe), or a folder or file with ``estimator.ckpt`` (this
            collection's recipe, ``recipes/REALM/sisnr_estimator``).

        Returns
        -------
        BlindSISNREstimator
            ``self``, in evaluation mode.
        """
        source = Path(source)
        if source.is_file():
            self.load_state_dict(torch.load(source, map_location=map_location))
        elif (source / "encoder.ckpt").is_file() and (source / "encoder_out.ckpt").is_file():
            self.encoder.load_state_dict(torch.load(source / "encoder.ckpt", map_location=map_location))
            self.encoder_out.load_state_dict(torch.load(source / "encoder_out.ckpt", map_location=map_location))
        elif (source / "estimator.ckpt").is_file():
            self.load_state_dict(torch.load(source / "estimator.ckpt", map_location=map_location))
        else:
            raise FileNotFoundError(f"{source}: no encoder.ckpt + encoder_out.ckpt, nor estimator.ckpt")
        return self.eval()
