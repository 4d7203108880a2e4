"""Base + VILT (Table 1): Base on a single-stream speech-text Transformer pre-trained with ViLT's two tasks, frozen.

Builds on: ``methods.sil`` (the paper gives this row "the same word embedding and speech input features as our
SIL": the corpus, its held-out split and word vectors, the log-mel front-end and Transformer stacks of SIL's
pre-training) and ``methods.base`` (the grounding network).

The paper's row (§4.2, App. B.3): "The Base+VILT follows the text-video multi-modal pre-training strategy (Kim et
al., 2021) to build an 8-layer cross-modal Transformer encoder encoding both text and speech modalities. It develops
two tasks, where the text-speech matching identifies whether this textual sentence corresponds to the speech and the
language modeling randomly masks 15% of words for prediction. [...] We first pretrain the encoder with 30 epochs and
fix it. During grounding training, we apply another trainable fully-connected layer with a Bi-GRU to encode speech
and adopt the Base architecture." No public speech version exists; ViLT's own recipe decides the rest:

- **One stream** (ViLT §3.1): ``[CLS ; words ; speech frames]``, each modality with its own positions (sinusoidal
  here, learned in ViLT) and a modality-type embedding added (0 text, 1 speech; the ``[CLS]`` token is text's, as
  in ViLT), ``layers`` pre-norm Transformer layers, a final LayerNorm. The words are the dataset's word vectors
  (GloVe on the real data) through a linear map; the speech is SIL's log-mel front-end (two stride-2 convolutions,
  an 80 ms step). ``paper``: 8 layers of 256 (SIL's width, App. B.2); ``small`` and ``tiny`` the widths and total
  depths of SIL's encoder at those profiles.
- **Speech-text matching** (ViLT's image-text matching): half of each batch (exactly ``B // 2`` rows, drawn at
  random) is given another utterance's transcript (the batch partner, a random cyclic shift); a linear head on the
  ``[CLS]`` output tells matched from mismatched, cross-entropy over the two classes.
- **Masked language modelling**: 15 % of each transcript's words (at least one; whole words, as ViLT's whole-word
  masking; :func:`methods.sil.mask_words`, uniform) are replaced: 80 % by a learned mask vector, 10 % by a random
  word's vector, 10 % left as they are (BERT's rule, which ViLT keeps); a head (dense, GELU, LayerNorm, dense, as
  BERT's) predicts each masked word among the vocabulary from its text position. As in ViLT, the two tasks run as
  two passes over the same speech, MLM on the matched pairs only; the loss is their sum.
- **Epochs**: 30 at the paper profile, where SIL's encoder has 40; smaller profiles keep that ratio of their
  pre-training budget. Epoch selection on held-out corpus utterances (SIL's split), whose masks and mismatches are
  drawn once with the stage's seed, so every epoch is scored on the same task.
- **Grounding**: only speech exists at grounding time, so the frozen encoder reads ``[CLS ; speech frames]`` and its
  outputs at the speech positions are the query's features (cached once per stage). Base's query Bi-GRU reads them
  directly: its input weights are the trainable linear map that App. B.3's "fully-connected layer with a Bi-GRU"
  puts in front (a separate FC before them would compose to one linear map), as for SIL's and LUT's rows. The
  encoder is frozen; ``base+vilt-ft`` (``--set finetune=true``) is Table 1's fine-tune column of this row, the
  encoder's speech-only view trained with Base (:mod:`methods.parts.finetune`).

The stage records what pre-training reached on its own objectives on held-out utterances: the MLM loss and accuracy
(chance: one in the vocabulary) and the matching loss and accuracy (chance 50 %).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import rng, stages
from bench.context import MethodSpec, RunContext, RunResult, finetuned, register
from bench.data import grounding, loader
from bench.train import Task, fit
from methods import base, sil
from methods.parts import finetune, frozen, recipe
from methods.parts.encoders import Conv2dSubsampling, lengths_to_mask, sinusoid
from methods.parts.losses import partner

METHOD = "base+vilt"
STAGE = "vilt"
VILT_VERSION = 1  # part of the stage key: raise whenever the encoder or its pre-training computes something else
PAPER_EPOCHS = 30  # App. B.3, against SIL's 40 (App. B.2)
TEXT, SPEECH = 0, 1  # modality types


@dataclass(frozen=True)
class VILTConfig:
    """The single-stream encoder and its pre-training (``paper``: App. B.3 at SIL's width)."""

    d: int = 256
    layers: int = 8
    heads: int = 4
    mel_channels: int = 64
    mlm_ratio: float = 0.15
    dropout: float = 0.1
    heldout: float = 0.05
    corpus_subset: str = "100%"
    seed: int = 0  # the stage's seed: every grounding run shares the encoder of this seed
    train: cfg.TrainConfig = field(default_factory=lambda: cfg.PRETRAIN_TRAIN["paper"])


@dataclass(frozen=True)
class BaseVILTConfig:
    vilt: VILTConfig
    ground: base.BaseConfig
    finetune: bool = False  # Table 1's "finetune" column: the encoder trained with Base (base+vilt-ft)


def vilt_config(profile: str) -> VILTConfig:
    """SIL's encoder width and total depth at ``profile`` (8 layers at ``paper``), 30/40 of its pre-training epochs."""
    train = cfg.PRETRAIN_TRAIN[cfg.check_profile(profile)]
    epochs = max(1, round(train.epochs * PAPER_EPOCHS / cfg.PRETRAIN_TRAIN["paper"].epochs))
    a = sil.sil_config(profile).asp
    return VILTConfig(d=a.d, layers=a.n_a + a.n_s, heads=a.heads, mel_channels=a.mel_channels, dropout=a.dropout,
                      train=dataclasses.replace(train, epochs=epochs))  # fmt: skip


def method_config(profile: str) -> BaseVILTConfig:
    return BaseVILTConfig(vilt=vilt_config(profile), ground=base.base_config(profile, query="features"))


# -- the encoder ---------------------------------------------------------------------------------------------------


class VILTEncoder(nn.Module):
    """``[CLS ; words ; speech]`` with positions and modality types -> ``layers`` Transformer layers -> LayerNorm."""

    def __init__(self, c: VILTConfig, word_dim: int) -> None:
        super().__init__()
        self.word_in = nn.Linear(word_dim, c.d)
        self.front = Conv2dSubsampling(80, c.mel_channels, c.d)
        self.cls = nn.Parameter(torch.randn(c.d) * 0.02)
        self.types = nn.Embedding(2, c.d)
        self.stack = sil.transformer(c.d, c.heads, c.layers, c.dropout)

    def text(self, vectors: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Word vectors ``[B, L, Dw]`` -> text tokens ``[B, L, d]`` and their mask."""
        x = self.word_in(vectors)
        x = x + sinusoid(x.shape[1], x.shape[2], x.device) + self.types.weight[TEXT]
        return x, lengths_to_mask(lengths, x.shape[1])

    def speech(self, mel: Tensor, mel_len: Tensor) -> tuple[Tensor, Tensor]:
        """Log-mel ``[B, T, 80]`` -> speech tokens ``[B, T', d]`` (80 ms step) and their mask."""
        x = self.front(mel)
        x = x + sinusoid(x.shape[1], x.shape[2], x.device) + self.types.weight[SPEECH]
        return x, lengths_to_mask(Conv2dSubsampling.out_lengths(mel_len), x.shape[1])

    def forward(self, *parts: tuple[Tensor, Tensor]) -> Tensor:
        """The joint stream ``[CLS ; part 1 ; part 2 ...]`` through the Transformer: ``[B, 1 + sum of widths, d]``."""
        b = parts[0][0].shape[0]
        cls = (self.cls + self.types.weight[TEXT]).expand(b, 1, -1)
        x = torch.cat([cls, *(p for p, _ in parts)], 1)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), *(m for _, m in parts)], 1)
        return self.stack(x, src_key_padding_mask=~mask)

    @torch.no_grad()
    def features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The frozen encoder's :meth:`grounding_features`."""
        return self.grounding_features(batch)

    def grounding_features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Grounding's speech-only view: ``[CLS ; speech]``, the outputs at the speech positions and their lengths."""
        speech = self.speech(batch["mel"], batch["mel_len"])
        return self(speech)[:, 1:], speech[1].sum(1)


class VILTModel(nn.Module):
    """The encoder with ViLT's two heads and the (fixed) word vectors it reads and predicts."""

    def __init__(self, c: VILTConfig, vectors: Tensor) -> None:
        super().__init__()
        self.c = c
        self.register_buffer("vectors", vectors.float())  # [V + 1, Dw], row 0 zero (padding)
        dw = vectors.shape[1]
        self.encoder = VILTEncoder(c, dw)
        self.mask_vector = nn.Parameter(torch.randn(dw) * 0.02)
        self.mlm_head = nn.Sequential(nn.Linear(c.d, c.d), nn.GELU(), nn.LayerNorm(c.d), nn.Linear(c.d, len(vectors)))
        self.stm_head = nn.Linear(c.d, 2)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return vilt_loss(self, batch)


def mlm_inputs(words: Tensor, masked: Tensor, vectors: Tensor, mask_vector: Tensor) -> Tensor:
    """The text side of the MLM pass ``[B, L, Dw]``: each masked word becomes the mask vector (80 %), a random
    word's vector (10 %) or stays itself (10 %); the others stay."""
    roll = torch.rand(words.shape, device=words.device)
    random_words = torch.randint(1, len(vectors), words.shape, device=words.device)
    out = vectors[words]
    out = torch.where((masked & (roll >= 0.8) & (roll < 0.9))[..., None], vectors[random_words], out)
    return torch.where((masked & (roll < 0.8))[..., None], mask_vector.expand_as(out), out)


def stm_pairs(words: Tensor, words_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Speech-text matching pairs: exactly ``B // 2`` random rows get their batch partner's transcript.

    Returns the paired words ``[B, L]``, their lengths ``[B]`` and ``matched`` ``[B]`` (1 where the row keeps its own
    transcript)."""
    b = words.shape[0]
    other, _ = partner(torch.arange(b, device=words.device))
    wrong = torch.zeros(b, dtype=torch.bool, device=words.device)
    wrong[torch.randperm(b, device=words.device)[: b // 2]] = True
    paired = torch.where(wrong[:, None], words[other], words)
    return paired, torch.where(wrong, words_len[other], words_len), (~wrong).long()


def vilt_loss(model: VILTModel, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """MLM (matched pairs, masked words) + speech-text matching (half the rows mismatched), two passes."""
    c, enc = model.c, model.encoder
    words, n_w = batch["words"], batch["words_len"]
    width = words.shape[1]
    speech = enc.speech(batch["mel"], batch["mel_len"])
    masked = sil.mask_words(n_w, width, c.mlm_ratio)
    out = enc(enc.text(mlm_inputs(words, masked, model.vectors, model.mask_vector), n_w), speech)
    mlm_logits = model.mlm_head(out[:, 1 : 1 + width][masked])
    mlm = F.cross_entropy(mlm_logits, words[masked])
    paired, paired_len, matched = stm_pairs(words, n_w)
    stm_logits = model.stm_head(enc(enc.text(model.vectors[paired], paired_len), speech)[:, 0])
    stm = F.cross_entropy(stm_logits, matched)
    return mlm + stm, {
        "mlm": mlm.item(),
        "stm": stm.item(),
        "mlm_accuracy": (mlm_logits.argmax(-1) == words[masked]).float().mean().item(),
        "stm_accuracy": (stm_logits.argmax(-1) == matched).float().mean().item(),
    }


# -- the pre-training stage ---------------------------------------------------------------------------------------


def _build(sctx: stages.StageContext, data, c: VILTConfig, cache_dir: Path) -> dict:
    """Pre-train on the corpus with the shared loop, select on held-out utterances, save the encoder."""
    cs = sil.corpus_splits(data, cache_dir, c.corpus_subset, None, c.heldout, c.seed, sctx.device)
    model = VILTModel(c, cs.vectors).to(sctx.device)
    sctx.log.log_params({"corpus_utterances": len(cs.train), "heldout_utterances": len(cs.held),
                         "vocab": len(cs.vocab), "parameters": sum(p.numel() for p in model.encoder.parameters()),
                         **cs.dropped})  # fmt: skip

    def held_out() -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0
        with rng.kept():  # the same masks and mismatches at every epoch
            torch.manual_seed(c.seed)
            for b in loader.BatchIterator(cs.held, c.train.batch_size):
                loss, parts = vilt_loss(model, b)
                for k, v in {"loss": loss.item(), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v * len(b["index"])
                count += len(b["index"])
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out.update(neg_loss=-out["loss"], chance_mlm=math.log(len(cs.vectors)), chance_stm=math.log(2))
        return out

    task = Task(
        model=model,
        loss=lambda batch: vilt_loss(model, batch),
        batches=lambda gen, shard: loader.BatchIterator(cs.train, shard.batch_size(c.train.batch_size), shuffle=True,
                                                        generator=gen, rank=shard.rank, world_size=shard.world),
        n_batches=-(-len(cs.train) // c.train.batch_size),
        validate=held_out,
        test=lambda path: held_out(),
    )  # fmt: skip
    out = fit(task, c.train, sctx, select_on="neg_loss")
    saved = {"config": cfg.to_dict(c), "word_dim": cs.vectors.shape[1], "encoder": model.encoder.state_dict()}
    loader.save_atomic(saved, sctx.out / "encoder.pt")
    return {"selected_epoch": out.selected_epoch, "heldout": out.val_best, "vocab": len(cs.vocab), **cs.dropped}


def _inputs(dataset_hash: str) -> dict[str, str]:
    return {"dataset": dataset_hash, "vilt_version": str(VILT_VERSION)}


def vilt_stage(cache_dir: str | Path, c: VILTConfig, dataset_hash: str) -> stages.Stage:
    """The cached pre-training stage of ``c`` on the dataset whose content hash is ``dataset_hash``."""
    return stages.stage(cache_dir, STAGE, c, _inputs(dataset_hash))


def load_encoder(st: stages.Stage, c: VILTConfig, device) -> VILTEncoder:
    saved = st.load("encoder.pt")
    enc = VILTEncoder(c, saved["word_dim"])
    enc.load_state_dict(saved["encoder"])
    return enc.to(device).eval()


def with_features(ctx: RunContext, data: grounding.GroundingData, st: stages.Stage, c: VILTConfig,
                  batch_size: int = 32) -> grounding.GroundingData:  # fmt: skip
    """The grounding splits with each query's frozen speech-only encoding as ``sem`` / ``sem_len``, once per stage."""
    return frozen.with_stage_speech_features(ctx, data, STAGE, st.key, lambda: load_encoder(st, c, ctx.device),
                                             batch_size)


# -- grounding -----------------------------------------------------------------------------------------------------


def run(ctx: RunContext) -> RunResult:
    """Pre-train (or reuse) the encoder, encode the queries once, train Base on them, select on val, test."""
    c: BaseVILTConfig = ctx.config
    data = ctx.data
    st = vilt_stage(ctx.cache_dir, c.vilt, data.content_hash)
    stages.run_stage(st, lambda sctx: _build(sctx, data, c.vilt, ctx.cache_dir), config=c.vilt,
                     inputs=_inputs(data.content_hash), device=ctx.device, seed=c.vilt.seed, log=ctx.log)  # fmt: skip
    ctx.log.log_params({"vilt.stage": st.key, "vilt.pretrain_seed": c.vilt.seed})

    def prepare(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
        return with_features(ctx, data, st, c.vilt)

    def build(data: grounding.GroundingData) -> base.BaseNet:
        return base.BaseNet(c.ground, data.train.videos.shape[-1], query_dim=c.vilt.d)

    if c.finetune:
        tune = finetune.Finetune(lambda: load_encoder(st, c.vilt, ctx.device))
        return recipe.ground(ctx, c.ground, build, base.weak_loss, finetune=tune)
    return recipe.ground(ctx, c.ground, build, base.weak_loss, prepare=prepare)


VILT = register(
    MethodSpec(
        METHOD,
        "Base + VILT",
        ("pretrain", "ground"),
        "speech",
        "weak",
        "Base on a frozen single-stream speech-text Transformer pre-trained with speech-text matching and masked "
        "language modelling (ViLT's recipe moved to speech)",
        run=run,
        config=method_config,
        issue=17,
    )
)
register(finetuned(VILT))
