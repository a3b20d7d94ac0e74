"""Reference-free evaluation of separated speech (REAL-M): WER, DNSMOS, the blind SI-SNR estimator.

* :mod:`modules.evaluation.wer`: text normalisation, stream-to-transcription assignment, WER (``jiwer``);
* :mod:`modules.evaluation.asr`: offline recognisers (PocketSphinx, a local SpeechBrain ``EncoderDecoderASR``);
* :mod:`modules.evaluation.dnsmos`: DNSMOS through ``speechmos``;
* :mod:`modules.evaluation.sisnr_estimator`: SpeechBrain's REAL-M SI-SNR estimator, and
  :mod:`modules.evaluation.sisnr_training` its training on our own separations;
* :mod:`modules.evaluation.realm`: systems scored on a REAL-M manifest (``python -m modules.evaluation.realm``).

The heavy packages (``jiwer``, ``pocketsphinx``, ``speechmos``) are imported when used.
"""
