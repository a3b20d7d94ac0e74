"""REAL-M recognisers through SpeechBrain's ASR interfaces: tiny random model folders, nothing downloaded.

An ``EncoderASR`` folder (Fbank -> linear -> CTC, a character ``CTCTextEncoder``, like
``speechbrain/asr-wav2vec2-librispeech``), an ``EncoderDecoderASR`` folder (Fbank -> linear ->
attentional GRU decoder, a sentencepiece tokenizer) and a ``WhisperASR`` folder (a one-layer random
Whisper built from a ``transformers`` config with a byte-level tokenizer of 256 tokens and Whisper's
special tokens, English-only), each with the ``hyperparams.yaml`` and ``pretrainer`` files that
``from_hparams`` loads.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modules.audio import resample
from modules.evaluation.asr import ASRLoadError, SpeechBrainASR, detect_interface, make_asr, parse_asr_spec
from modules.evaluation.realm import evaluate_systems, main, read_manifest, read_options
from modules.evaluation.wer import mixture_errors

REPO = Path(__file__).resolve().parents[1]
CHARS = list("abcdefghijklmnopqrstuvwxyz' ")

CTC_ASR = """
sample_rate: 16000
blank_index: 0
tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 20
ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 20
    n_neurons: 29
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    ctc_lin: !ref <ctc_lin>
    log_softmax: !ref <log_softmax>
decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: !ref <blank_index>
modules:
    encoder: !ref <encoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        asr: !ref <ctc_lin>
        tokenizer: !ref <tokenizer>
"""

SEQ2SEQ_ASR = """
sample_rate: 16000
tokenizer: !new:sentencepiece.SentencePieceProcessor
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 20
enc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 20
    n_neurons: 16
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    - !ref <compute_features>
    - !ref <enc_lin>
emb: !new:speechbrain.nnet.embedding.Embedding
    num_embeddings: 30
    embedding_dim: 8
dec: !new:speechbrain.nnet.RNN.AttentionalRNNDecoder
    enc_dim: 16
    input_size: 8
    rnn_type: gru
    attn_type: content
    hidden_size: 16
    attn_dim: 16
    num_layers: 1
seq_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: 30
decoder: !new:speechbrain.decoders.S2SRNNGreedySearcher
    embedding: !ref <emb>
    decoder: !ref <dec>
    linear: !ref <seq_lin>
    bos_index: 1
    eos_index: 2
    min_decode_ratio: 0.0
    max_decode_ratio: 0.1
model: !new:torch.nn.ModuleList
    - [!ref <enc_lin>, !ref <emb>, !ref <dec>, !ref <seq_lin>]
modules:
    encoder: !ref <encoder>
    decoder: !ref <decoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        tokenizer: !ref <tokenizer>
        model: !ref <model>
"""


def ctc_folder(folder):
    """A tiny ``EncoderASR`` model card folder: random CTC layer, a character tokenizer (blank = index 0)."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CTCTextEncoder

    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(CTC_ASR)
    tokenizer = CTCTextEncoder()
    tokenizer.insert_blank(index=0)
    tokenizer.update_from_iterable(CHARS)
    tokenizer.save(folder / "tokenizer.ckpt")
    torch.manual_seed(0)
    ctc_lin = load_hyperpyyaml(CTC_ASR)["ctc_lin"]
    with torch.no_grad():
        ctc_lin.w.bias[0] += 1.0  # mostly blanks, as a CTC model emits
    torch.save(ctc_lin.state_dict(), folder / "asr.ckpt")
    return folder


def seq2seq_folder(folder):
    """A tiny ``EncoderDecoderASR`` model card folder: random attentional GRU, a 30-piece sentencepiece model."""
    import sentencepiece
    from hyperpyyaml import load_hyperpyyaml

    folder.mkdir(parents=True)
    text = folder.parent / f"{folder.name}_text.txt"
    text.write_text("the cat sat on the mat\ngood morning to you\nthe quick brown fox jumps over the lazy dog\n" * 20)
    options = {"vocab_size": 30, "bos_id": -1, "eos_id": -1, "minloglevel": 2}  # 30 pieces: the model's 30 outputs
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "tok"), **options)
    (folder / "tok.model").rename(folder / "tokenizer.ckpt")
    (folder / "hyperparams.yaml").write_text(SEQ2SEQ_ASR)
    torch.manual_seed(1)
    torch.save(load_hyperpyyaml(SEQ2SEQ_ASR)["model"].state_dict(), folder / "model.ckpt")
    return folder


WHISPER_ASR = """
sample_rate: 16000
language: english
normalized_transcripts: False
whisper: !new:speechbrain.integrations.huggingface.whisper.Whisper
    source: {hf}
    save_path: {hf}
    freeze: True
    language: !ref <language>
    task: transcribe
decoder: !new:speechbrain.decoders.seq2seq.S2SWhisperGreedySearcher
    model: !ref <whisper>
    min_decode_ratio: 0
    max_decode_ratio: 0.01
modules:
    whisper: !ref <whisper>
    decoder: !ref <decoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        whisper: !ref <whisper>
"""


def whisper_folder(folder):
    """A tiny ``WhisperASR`` model card folder: the Hugging Face files of a random one-layer Whisper under ``hf/``
    (the source its ``hyperparams.yaml`` names, as a card names ``openai/whisper-...``) and ``whisper.ckpt``."""
    import json

    from hyperpyyaml import load_hyperpyyaml
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import bytes_to_unicode

    hf = folder / "hf"
    hf.mkdir(parents=True)
    (hf / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (hf / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(hf / "vocab.json", hf / "merges.txt", unk_token=end, bos_token=end, eos_token=end,
                                 pad_token=end)  # fmt: skip
    specials = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": [*specials, "<|nospeech|>", "<|notimestamps|>",
                                                                "<|0.00|>"]})  # fmt: skip
    tokenizer.save_pretrained(hf)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf)
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=8, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=1, decoder_attention_heads=1, encoder_ffn_dim=8, decoder_ffn_dim=8,
        max_target_positions=32, decoder_start_token_id=sot, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(2)
    WhisperForConditionalGeneration(config).save_pretrained(hf)
    text = WHISPER_ASR.format(hf=hf)
    (folder / "hyperparams.yaml").write_text(text)
    torch.save(load_hyperpyyaml(text)["whisper"].state_dict(), folder / "whisper.ckpt")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr_models")
    return {"ctc": ctc_folder(root / "tiny-ctc"), "s2s": seq2seq_folder(root / "tiny-s2s")}


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    """A mini REAL-M test set of two mixtures, with REAL-M's reference separations."""
    from data_prep.mini import make_mini_realm
    from data_prep.realm import prepare_realm

    root = tmp_path_factory.mktemp("realm_asr")
    data = make_mini_realm(root, seed=0, n_train=1, n_valid=1, n_test=1)
    return {"data": data, "test": prepare_realm(data, root / "prep", with_separations=True)["test"]}


def interface_transcripts(cls, folder, signal, rate):
    """What SpeechBrain's interface itself returns for a signal resampled to 16 kHz."""
    model = cls.from_hparams(source=str(folder))
    wavs = torch.as_tensor(resample(np.asarray(signal, dtype=np.float64), rate, 16000), dtype=torch.float32)[None]
    words, _ = model.transcribe_batch(wavs, torch.ones(1))
    return words[0]


def test_spec_parsing_and_interface_detection(folders):
    assert parse_asr_spec("w2v=encoder:speechbrain/asr-wav2vec2-librispeech") == (
        "w2v", "encoder", "speechbrain/asr-wav2vec2-librispeech"
    )  # fmt: skip
    assert parse_asr_spec("whisper:/m/whisper-tiny") == ("whisper-tiny", "whisper", "/m/whisper-tiny")
    assert parse_asr_spec("ps=pocketsphinx") == ("ps", "pocketsphinx", None)
    with pytest.raises(ASRLoadError, match="unknown interface 'ctc'"):
        parse_asr_spec("ctc:/m/x")
    assert detect_interface((folders["ctc"] / "hyperparams.yaml").read_text()) == "encoder"
    assert detect_interface((folders["s2s"] / "hyperparams.yaml").read_text()) == "encoder_decoder"
    whisper = "language: english\nsample_rate: 16000\nwhisper: !new:x.Whisper\nmodules:\n  whisper: !ref <whisper>\n"
    assert detect_interface(whisper + "  decoder: !ref <d>\n") == "whisper"
    assert detect_interface("tokenizer: 1\nmodules:\n  encoder: 1\n") is None
    # the papers' recognisers as the recipe's yaml lists them
    papers = read_options(["--config", str(REPO / "recipes/REALM/evaluate/asr_papers.yaml"), "--manifest", "m.csv"])
    assert [parse_asr_spec(spec)[:2] for spec in papers.asr] == [
        ("e2e", "encoder_decoder"), ("w2v", "encoder"), ("pocketsphinx", "pocketsphinx")
    ]  # fmt: skip


def test_encoder_and_encoder_decoder_folders_transcribe_as_the_interfaces_do(folders, tmp_path):
    from speechbrain.inference.ASR import EncoderASR, EncoderDecoderASR

    signal = np.random.default_rng(0).standard_normal(12000) * 0.1  # 1.5 s at 8 kHz
    ctc = make_asr(str(folders["ctc"]))  # interface read from hyperparams.yaml
    s2s = make_asr(f"speechbrain:{folders['s2s']}")
    assert isinstance(ctc, SpeechBrainASR) and (ctc.interface, ctc.name) == ("encoder", "tiny-ctc")
    assert isinstance(s2s.model, EncoderDecoderASR) and (s2s.interface, s2s.name) == ("encoder_decoder", "tiny-s2s")
    assert isinstance(ctc.model, EncoderASR)
    text = ctc.transcribe(signal, 8000)
    assert text and text == interface_transcripts(EncoderASR, folders["ctc"], signal, 8000)
    assert s2s.transcribe(signal, 8000) == interface_transcripts(EncoderDecoderASR, folders["s2s"], signal, 8000)
    # the wrong interface named by the user: one clear line
    with pytest.raises(ASRLoadError, match="does not fit SpeechBrain's EncoderASR"):
        make_asr(f"encoder:{folders['s2s']}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ASRLoadError, match=r"no hyperparams\.yaml"):
        make_asr(str(tmp_path / "empty"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "hyperparams.yaml").write_text("tokenizer: 1\nmodules:\n  encoder: 1\n")
    with pytest.raises(ASRLoadError, match="prefix the source with encoder:"):
        make_asr(str(tmp_path / "odd"))


def test_hub_id_without_internet_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "nobody-here/asr-not-cached-anywhere"
    with pytest.raises(ASRLoadError) as err:
        make_asr(f"e2e=encoder_decoder:{hub_id}")
    message = str(err.value)
    assert "\n" not in message and hub_id in message and "--asr <folder>" in message
    (tmp_path / "m.csv").write_text("ID,mix_wav,sentence1,sentence2\na,a.wav,hello,world\n")
    code = main(["--manifest", str(tmp_path / "m.csv"), "--asr", hub_id, "--output_folder", str(tmp_path)])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and hub_id in lines[0] and "huggingface-cli download" in lines[0], lines


def test_unresolvable_hub_is_looked_up_in_the_cache_only(monkeypatch):
    """Without HF_HUB_OFFLINE, a hub whose host name does not resolve is not tried (no retries), only the cache."""
    import socket

    for key in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror("no resolver here")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(ASRLoadError, match=r"LocalEntryNotFoundError.*--asr <folder>"):
        make_asr("nobody-here/asr-not-cached-anywhere")


def test_realm_evaluation_gives_a_wer_column_per_recogniser(folders, realm, tmp_path):
    from speechbrain.inference.ASR import EncoderASR, EncoderDecoderASR

    config = tmp_path / "eval.yaml"
    config.write_text(
        f"manifest: {realm['test']}\ndata_folder: {realm['data']}\nasr:\n  - {folders['ctc']}\n"
        f"  - seq2seq=encoder_decoder:{folders['s2s']}\nsystem: [reference]\nnoprogressbar: true\n"
    )
    out = tmp_path / "eval"
    assert main(["--config", str(config), "--output_folder", str(out), "--asr_savedir", str(tmp_path / "sb")]) == 0
    assert sorted(p.name for p in (tmp_path / "sb").iterdir()) == ["seq2seq", "tiny-ctc"]  # one savedir each
    header = (out / "comparison.md").read_text().splitlines()[0]
    assert "WER tiny-ctc (%)" in header and "WER seq2seq (%)" in header
    rows = read_manifest(realm["test"], realm["data"])
    with open(out / "mixture" / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    for row, result in zip(rows, results, strict=True):
        mixture, rate = soundfile.read(row["mix_wav"])
        refs = [row["sentence1"], row["sentence2"]]
        for name, cls, folder in (("tiny-ctc", EncoderASR, "ctc"), ("seq2seq", EncoderDecoderASR, "s2s")):
            expected = interface_transcripts(cls, folders[folder], mixture, rate)
            assert expected and result[f"{name}_hyp"] == expected  # the tiny models do emit words
            assert (int(result[f"{name}_errors"]), int(result[f"{name}_words"])) == mixture_errors(expected, refs)
    summary = json.loads((out / "reference" / "summary.json").read_text())
    assert {"tiny-ctc_wer", "seq2seq_wer"} <= set(summary)
    with pytest.raises(ValueError, match="named alike"):
        evaluate_systems(realm["test"], ["mixture"], tmp_path / "x", data_folder=realm["data"],
                         asr=[str(folders["ctc"]), f"speechbrain:{folders['ctc']}"], use_dnsmos=False)  # fmt: skip


def test_whisper_folder_is_a_recogniser_too(folders, realm, tmp_path):
    from speechbrain.inference.ASR import WhisperASR

    folder = whisper_folder(tmp_path / "tiny-whisper")
    assert detect_interface((folder / "hyperparams.yaml").read_text()) == "whisper"
    asr = make_asr(str(folder))
    assert isinstance(asr.model, WhisperASR) and (asr.interface, asr.name) == ("whisper", "tiny-whisper")
    signal = np.random.default_rng(0).standard_normal(12000) * 0.1
    text = asr.transcribe(signal, 8000)
    assert text and text == interface_transcripts(WhisperASR, folder, signal, 8000)
    summaries = evaluate_systems(realm["test"], ["mixture"], tmp_path / "eval", data_folder=realm["data"],
                                 asr=[asr, str(folders["ctc"])], use_dnsmos=False, limit=1)  # fmt: skip
    assert {"tiny-whisper_wer", "tiny-ctc_wer"} <= set(summaries["mixture"])
