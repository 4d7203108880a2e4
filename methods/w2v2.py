"""Base + Wav2vec2.0 (Table 1): a wav2vec 2.0 speech encoder pre-trained without labels, frozen, under Base.

Builds on: ``methods.base`` (the paper's row is Base on wav2vec 2.0 features) and ``methods.asr`` (the same conv
feature encoder and Transformer sizes, its corpus split and batching of waves).

The paper's row (§4.2, App. B.3): "The Base+Wav2vec2.0 adopts the 512-dimensional vectors obtained from the last
layer of pre-trained wav2vec2.0 (Baevski et al., 2020) model as the input speech features. It also follows the Base
architecture and reduces the layer number of Transformer encoder to 2 for stability", pre-trained on the same 960 h
of LibriSpeech as the other rows. Two stages:

1. **Self-supervised pre-training** (wav2vec 2.0, §2-3 of its paper) with ``transformers``' ``Wav2Vec2ForPreTraining``
   on the dataset's pre-training corpus (the LibriSpeech layout under ``corpus_root``; on ``synth`` its espeak-ng
   sentences), from random weights: the conv feature encoder turns the 16 kHz wave into latent frames ``z`` (50 per
   second), spans of them are masked (``_compute_mask_indices``: span starts drawn with probability ``mask_prob``,
   spans of ``mask_length`` frames, at least two per utterance: about half the frames), the Transformer reads the
   masked sequence and gives context vectors ``c``; a Gumbel-softmax product quantizer (G codebooks of V entries)
   turns the unmasked ``z`` into targets ``q``. The loss per masked frame t is the contrastive
   ``-log exp(sim(c_t, q_t)/kappa) / sum_{q' in {q_t} + Q_t} exp(sim(c_t, q')/kappa)`` (cosine similarity,
   kappa = 0.1, Q_t = K distractors drawn from the other masked frames of the same utterance by
   ``_sample_negative_indices``), plus 0.1 times the diversity loss ``(G V - perplexity) / (G V)`` of the codebooks'
   mean soft assignment over the batch's masked frames. The model returns both summed over the masked frames; the
   batch loss is their sum divided by the number of masked frames (transformers' example divides the gradients by
   it). The Gumbel temperature decays per update as ``max(2 * d^update, 0.5)``, see ``gumbel_decay``. The stage
   (:mod:`bench.stages`, name ``w2v2``) is cached by its configuration and the dataset's content hash, trained
   through :func:`bench.train.fit` (a killed build resumes), with its own seed (``w2v2.seed``, not the grounding
   run's), so every grounding seed reuses one encoder. Or, with ``--set w2v2.checkpoint=DIR``, a local
   ``save_pretrained`` directory of any wav2vec2 model (e.g. ``facebook/wav2vec2-base``) is used as it is.
2. **Grounding**: the encoder is frozen and each query's features are computed once and cached; a trainable FC layer
   maps them to d, Base's 2 Transformer layers read them (App. B.3's "2 layers for stability"; Base's own speech
   encoder with the log-mel front-end replaced by the features), then Base (``methods/base.py``: Bi-GRU, the
   interaction with the clips, the proposal map, eq. 10 + eq. 11) is trained weakly supervised, selected on val.

How to read the measured row: :func:`contrastive_logits` recomputes the model's logits, so the stage records what
the pre-training reached on its own objective on held-out corpus speakers: the contrastive loss per masked frame
(chance is ``log(K + 1)``), the accuracy of the positive among the K + 1 candidates (chance ``1 / (K + 1)``), the
diversity term and the codebook perplexity.

Choices the paper leaves open, and departures (wav2vec 2.0's paper and fairseq's BASE recipe decide where they can):

- Which features: "512-dimensional vectors from the last layer". wav2vec2-base's only 512-d vectors are its conv
  feature encoder's outputs (its Transformer is 768 wide), and the paper puts Base's own Transformer on top, so the
  default is those (``w2v2.features = "cnn"``: ``extract_features``, the layer-normed conv output); ``"context"``
  takes the Transformer's last hidden state instead (the reading "last layer of the whole model").
- App. B.3's recipe for the other pre-trained rows is "a trainable fully-connected layer with a Bi-GRU"; this row's
  sentence adds Base's 2 Transformer layers, so both are here: FC -> ``ground.speech_layers`` Transformer layers
  (sinusoidal positions, as Base's speech encoder) -> Base's Bi-GRU. ``--set ground.speech_layers=0`` is the FC +
  Bi-GRU recipe alone.
- Size: ``paper`` is wav2vec2 BASE (12 layers of 768, 7 conv layers of 512, G = 2, V = 320, K = 100, mask 0.65 /
  10, feature and input dropout 0.1, layerdrop 0.05), for a GPU. ``tiny`` and ``small`` use the architecture of the
  ASR model of ``methods/asr.py`` at the same profile (the same conv feature encoder and Transformer, read from
  :func:`methods.asr.asr_config`), with smaller codebooks and fewer distractors (``small``: V = 32, K = 20, 64-d
  targets) so that ``small`` pre-trains in minutes on 2 CPU cores; its held-out speakers are the ASR's.
- Gumbel temperature: wav2vec 2.0 decays it from 2 to 0.5 by 0.999995 per update (``paper``); over the few hundred
  updates of ``small`` that would leave it at 2.0, so ``tiny`` and ``small`` (``gumbel_decay = None``) use the same
  geometric decay compressed to the stage: the factor that reaches 0.5 at its last update. The update count is a
  buffer of the model, so a resumed build continues the schedule.
- Optimiser: the suite's Adam with linear warm-up then inverse square root (``bench.train``), not wav2vec 2.0's
  linear decay after warm-up; ``paper``: lr 5e-4 and 32,000 warm-up updates as BASE, batches of 32 utterances
  (BASE batches 1.4 M samples per GPU, about 87 s of audio) for 45 epochs of LibriSpeech 960 h (about 400 k updates,
  BASE's count). Not in ``transformers``' loss, so not here: fairseq's feature penalty (the squared conv features,
  weight 10) and its 0.1 scaling of the feature encoder's gradient. Utterances longer than ``max_seconds`` are left
  out rather than cropped (BASE crops to 250 k samples, 15.6 s); those shorter than ``2 * mask_length`` frames are
  left out too (``_sample_negative_indices`` needs two masked frames per utterance).
- Epoch selection: the lowest held-out loss (contrastive + 0.1 diversity per masked frame) on held-out corpus
  speakers, whose masks and distractors are drawn once with the stage's seed, so every epoch is scored on the same
  task; at evaluation the quantizer takes its argmax codes (``transformers``' eval mode).
- Input: each wave normalised to zero mean and unit variance over its own samples (the feature extractor's formula,
  :func:`methods.asr.normalise_wave`); the layer-norm feature encoder with an attention mask gives an utterance the
  same features in any batch. A group-norm checkpoint (wav2vec2-base) reads the padding, so its queries are
  encoded one at a time.
- The encoder is frozen in grounding. ``base+wav2vec2-ft`` (``--set finetune=true``) is Table 1's fine-tune
  column of this row: :class:`TunedEncoder` computes the same features inside the training graph from each query's
  normalised 16 kHz wave (attached to every split once, :func:`with_waves`), so the grounding loss trains the conv
  feature encoder (``cnn``, with its layer norm) or the whole model (``context``) with FC, Transformer and Base,
  one optimiser at the grounding learning rate (the paper gives no fine-tuning settings). The 16 kHz waves take
  64 kB a second of speech in memory and in the cache.

Measured on synth/small (seed 0, one thread on 2 cores with other jobs running): the stage took 806 s (3 epochs of
178 updates of 16 utterances) and stayed at chance for two epochs (held-out contrastive loss 3.040 and 3.039 per
masked frame against ln 21 = 3.045); in the third it left the plateau (2.922, accuracy 9.4 % against chance 4.8 %,
perplexity 52.5 of 64 codes), so a longer stage would likely reach further (not measured). Grounding on its ``cnn``
features (64-d, 50 frames a second, the cost of this row: about 2.5 minutes an epoch against Base's log-mel at 25)
chose epoch 1 on val; val_2 R@1 IoU=0.5 = 20.84 against the prior's 30.37, test-ood 3.83.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import dist, rng, stages
from bench.context import MethodSpec, RunContext, RunResult, finetuned, register
from bench.data import grounding, loader
from bench.data.errors import DataError
from bench.data.librispeech import SAMPLE_RATE, Utterance, load_audio
from bench.train import Task, fit
from methods import asr, base
from methods.parts import finetune, frozen, recipe
from methods.parts.encoders import FeatureEncoder, lengths_to_mask, sinusoid

METHOD = "base+wav2vec2"
STAGE = "w2v2"
FEATURES_VERSION = 1  # part of the cached query features' key: raise when the encoding computes something else
# the ASR configuration's fields that make the architecture (and its corpus split): shared with methods.asr
ARCH_FIELDS = ("hidden", "layers", "heads", "ff", "conv_dim", "conv_kernel", "conv_stride", "pos_conv", "pos_groups",
               "val_fraction", "max_seconds", "corpus_subset")  # fmt: skip


# -- configuration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class W2V2Config:
    """The wav2vec 2.0 encoder and its pre-training; ``paper``'s defaults are wav2vec2 BASE's."""

    checkpoint: str | None = None  # a local save_pretrained directory of a wav2vec2 model: used as is, no pre-training
    features: Literal["cnn", "context"] = "cnn"  # conv feature encoder's output (512-d in BASE) or Transformer's last
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    ff: int = 3072
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    pos_conv: int = 128
    pos_groups: int = 16
    groups: int = 2  # G codebooks
    entries: int = 320  # V entries per codebook
    codevector_dim: int = 256
    proj_dim: int = 256  # the space where c_t and q_t are compared
    negatives: int = 100  # K distractors per masked frame
    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2  # spans per utterance at least (transformers' pre-training example)
    logit_temperature: float = 0.1  # kappa
    diversity_weight: float = 0.1  # alpha
    gumbel_max: float = 2.0
    gumbel_min: float = 0.5
    gumbel_decay: float | None = 0.999995  # per update; None: the geometric factor reaching gumbel_min at the last one
    dropout: float = 0.1  # Transformer, attention, input (feat_proj) and target (feat_quantizer) dropout
    layerdrop: float = 0.05
    corpus_subset: str = "100%"
    val_fraction: float = 0.05  # whole corpus speakers held out for epoch selection
    max_seconds: float = 16.0  # longer corpus utterances are left out
    seed: int = 0  # the stage's seed: every grounding run shares the encoder of this seed
    eval_batch_size: int = 16
    train: cfg.TrainConfig = field(default_factory=lambda: PRETRAIN["paper"])


@dataclass(frozen=True)
class BaseW2V2Config:
    w2v2: W2V2Config
    ground: base.BaseConfig
    finetune: bool = False  # Table 1's "finetune" column: the encoder trained with the grounding (base+wav2vec2-ft)


PRETRAIN: dict[str, cfg.TrainConfig] = {
    "tiny": cfg.TrainConfig(epochs=1, batch_size=8, lr=1e-3, warmup_updates=2),
    # small: 3 epochs of about 175 updates of 16 corpus utterances (about 0.5 s each on 2 busy CPU cores)
    "small": cfg.TrainConfig(epochs=3, batch_size=16, lr=1e-3, warmup_updates=50),
    "paper": cfg.TrainConfig(epochs=45, batch_size=32, lr=5e-4, warmup_updates=32_000),
}
_PRETRAIN_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(entries=8, codevector_dim=16, proj_dim=16, negatives=5, layerdrop=0.0, gumbel_decay=None,
                 eval_batch_size=8),
    "small": dict(entries=32, codevector_dim=64, proj_dim=64, negatives=20, layerdrop=0.0, gumbel_decay=None),
    "paper": {},
}  # fmt: skip


def w2v2_config(profile: str, **kw: Any) -> W2V2Config:
    """The encoder of ``profile``: ``tiny`` / ``small`` take the ASR's architecture at that profile (see the module
    docstring), ``paper`` is wav2vec2 BASE."""
    cfg.check_profile(profile)
    arch = asr.asr_config(profile) if profile != "paper" else None
    sizes = {k: getattr(arch, k) for k in ARCH_FIELDS} if arch is not None else {}
    return W2V2Config(**{"train": PRETRAIN[profile], **sizes, **_PRETRAIN_SIZES[profile], **kw})


def method_config(profile: str) -> BaseW2V2Config:
    return BaseW2V2Config(w2v2=w2v2_config(profile), ground=base.base_config(profile, query="features"))


# -- the pre-training model and its loss --------------------------------------------------------------------------


def new_model(c: W2V2Config) -> Any:
    """A randomly initialised ``Wav2Vec2ForPreTraining`` of ``c``'s size (layer-norm feature encoder, stable layer
    norm: the form transformers' pre-training example needs)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    config = Wav2Vec2Config(
        **asr.architecture(c),
        hidden_dropout=c.dropout,
        attention_dropout=c.dropout,
        activation_dropout=0.0,
        feat_proj_dropout=c.dropout,
        feat_quantizer_dropout=c.dropout,
        layerdrop=c.layerdrop,
        mask_time_prob=c.mask_prob,
        mask_time_length=c.mask_length,
        num_codevector_groups=c.groups,
        num_codevectors_per_group=c.entries,
        codevector_dim=c.codevector_dim,
        proj_codevector_dim=c.proj_dim,
        num_negatives=c.negatives,
        contrastive_logits_temperature=c.logit_temperature,
        diversity_loss_weight=c.diversity_weight,
    )
    return Wav2Vec2ForPreTraining(config)


def gumbel_temperature(update: int, c: W2V2Config, total_updates: int) -> float:
    """``max(gumbel_max * d^update, gumbel_min)``; ``d = gumbel_decay``, or the factor reaching ``gumbel_min`` at
    update ``total_updates`` when it is None."""
    decay = c.gumbel_decay
    if decay is None:
        decay = (c.gumbel_min / c.gumbel_max) ** (1.0 / max(total_updates, 1))
    return max(c.gumbel_max * decay**update, c.gumbel_min)


class PreTrainer(nn.Module):
    """``Wav2Vec2ForPreTraining`` with its update count (a buffer, so a checkpoint carries the Gumbel schedule)."""

    def __init__(self, c: W2V2Config, total_updates: int) -> None:
        super().__init__()
        self.c = c
        self.total_updates = total_updates
        self.model = new_model(c)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """The batch loss (contrastive + alpha diversity, per masked frame) and what to log; a training call is
        one update of the Gumbel schedule."""
        temperature = gumbel_temperature(int(self.updates), self.c, self.total_updates)
        self.model.set_gumbel_temperature(temperature)
        if self.training:
            self.updates += 1
        mask, negatives = batch["mask_time_indices"], batch["sampled_negative_indices"]
        out = self.model(batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask,
                         sampled_negative_indices=negatives)  # fmt: skip
        n = mask.sum()
        logits = contrastive_logits(out.projected_states, out.projected_quantized_states, mask.bool(), negatives,
                                    self.c.logit_temperature)  # fmt: skip
        correct = (logits.argmax(1) == 0).sum()
        return out.loss / n, {
            "contrastive": out.contrastive_loss.item() / n.item(),
            "diversity": out.diversity_loss.item() / n.item(),
            "accuracy": correct.item() / n.item(),
            "perplexity": out.codevector_perplexity.item(),
            "gumbel_temperature": temperature,
            "masked_frames": n.item(),
        }


def contrastive_logits(context: Tensor, targets: Tensor, mask: Tensor, negatives: Tensor,
                       temperature: float) -> Tensor:  # fmt: skip
    """The logits ``[M, 1 + K]`` of the M masked frames: ``cos(c_t, [q_t; q~_1..q~_K]) / kappa``, the positive first.

    ``context`` and ``targets`` ``[B, T, D]`` are the model's ``projected_states`` and ``projected_quantized_states``;
    ``negatives`` ``[B, T, K]`` indexes the flattened ``B * T`` frames (``_sample_negative_indices``). A distractor
    equal to the positive (a collapsed codebook) gets ``-inf``, as in the model; ``cross_entropy(logits, 0)`` summed
    is its ``contrastive_loss``.
    """
    b, t, d = targets.shape
    positive = targets[mask]  # [M, D]
    distractors = targets.reshape(b * t, d)[negatives[mask].long()]  # [M, K, D]
    candidates = torch.cat([positive[:, None], distractors], 1)
    logits = F.cosine_similarity(context[mask][:, None].float(), candidates.float(), dim=-1) / temperature
    same = (distractors == positive[:, None]).all(-1)
    return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, float("-inf"))], 1)


def draw_masks(frames: Tensor, c: W2V2Config) -> tuple[Tensor, Tensor]:
    """``(mask_time_indices [B, T] bool, sampled_negative_indices [B, T, K])`` for utterances of ``frames`` latent
    frames each: transformers' span masking over each utterance's own frames and its distractor sampling (numpy's
    global stream, which the training loop checkpoints)."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    width = int(frames.max())
    frame_mask = lengths_to_mask(frames.cpu(), width).long()
    mask = _compute_mask_indices((len(frames), width), c.mask_prob, c.mask_length, attention_mask=frame_mask,
                                 min_masks=c.min_masks)  # fmt: skip
    if (mask.sum(1) < 2).any():
        raise ValueError(f"an utterance of {int(frames.min())} frames has fewer than 2 masked frames; "
                         f"pre-training keeps only those of at least {2 * c.mask_length} frames")  # fmt: skip
    negatives = _sample_negative_indices((len(frames), width), c.negatives, mask)
    return torch.from_numpy(mask), torch.from_numpy(negatives.astype(np.int64))


def make_batch(model: Any, waves: list[Tensor], c: W2V2Config, device: Any) -> dict[str, Tensor]:
    """A pre-training batch: normalised, padded waves, their attention mask, masks and distractors."""
    values, attention = asr.pad_batch(waves)
    frames = model._get_feat_extract_output_lengths(attention.sum(-1))
    mask, negatives = draw_masks(frames, c)
    batch = {"input_values": values, "attention_mask": attention, "mask_time_indices": mask,
             "sampled_negative_indices": negatives}  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


# -- the pre-training stage ---------------------------------------------------------------------------------------


def _frames(model: Any, utts: list[Utterance]) -> list[int]:
    import soundfile as sf

    samples = [round(sf.info(str(u.path)).duration * SAMPLE_RATE) for u in utts]
    return model._get_feat_extract_output_lengths(torch.tensor(samples)).tolist()


def _usable(model: Any, utts: list[Utterance], c: W2V2Config) -> tuple[list[Utterance], list[int], int]:
    """The utterances pre-training keeps (at least ``2 * mask_length`` frames, at most ``max_seconds``), their frame
    counts, and how many were left out."""
    frames = _frames(model, utts)
    longest = model._get_feat_extract_output_lengths(torch.tensor(round(c.max_seconds * SAMPLE_RATE))).item()
    keep = [i for i, n in enumerate(frames) if 2 * c.mask_length <= n <= longest]
    return [utts[i] for i in keep], [frames[i] for i in keep], len(utts) - len(keep)


def _build(sctx: stages.StageContext, c: W2V2Config, data: Any) -> dict[str, Any]:
    """Pre-train on the corpus with the shared loop; save the selected model with ``save_pretrained``."""
    train_utts, held_utts = asr.corpus_split(Path(data.corpus_root), asr.ASRConfig(
        corpus_subset=c.corpus_subset, val_fraction=c.val_fraction))  # fmt: skip
    trainer = PreTrainer(c, total_updates=0).to(sctx.device)
    model = trainer.model
    train_utts, frames, dropped = _usable(model, train_utts, c)
    held_utts, _, held_dropped = _usable(model, held_utts, c)
    if not train_utts or not held_utts:
        raise DataError(data.corpus_root, f"{len(train_utts)} training and {len(held_utts)} held-out utterances of "
                        f"{2 * c.mask_length} frames to {c.max_seconds} s", "use a larger corpus")  # fmt: skip
    n_batches = -(-len(train_utts) // c.train.batch_size)
    trainer.total_updates = c.train.epochs * n_batches
    n_params = sum(p.numel() for p in model.parameters())
    sctx.log.log_params({"parameters": n_params, "train_utterances": len(train_utts), "heldout_utterances":
                         len(held_utts), "dropped_utterances": dropped + held_dropped})  # fmt: skip
    with rng.kept():  # the held-out task: drawn once with the stage's seed, the same at every epoch
        np.random.seed(c.seed)
        held = [make_batch(model, [load_audio(u.path) for u in held_utts[i : i + c.eval_batch_size]], c, sctx.device)
                for i in range(0, len(held_utts), c.eval_batch_size)]  # fmt: skip

    def batches(generator: torch.Generator, shard: dist.Shard) -> Iterator[dict[str, Tensor]]:
        per_rank = shard.batch_size(c.train.batch_size)
        for batch in asr._epoch_batches(frames, c.train.batch_size, generator):
            mine = batch[shard.rank * per_rank : (shard.rank + 1) * per_rank]
            if mine:
                yield make_batch(model, [load_audio(train_utts[i].path) for i in mine], c, sctx.device)

    def held_out() -> dict[str, float]:
        sums: dict[str, float] = {}
        for b in held:
            loss, parts = trainer(b)
            n = parts["masked_frames"]
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + (v * n if k not in ("masked_frames", "gumbel_temperature") else v)
        total = sums.pop("masked_frames")
        out = {k: v / total for k, v in sums.items() if k != "gumbel_temperature"}
        out.update(neg_loss=-out["loss"], chance_loss=math.log(c.negatives + 1), chance_accuracy=1 / (c.negatives + 1))
        return out

    task = Task(model=trainer, loss=trainer, batches=batches, n_batches=n_batches, validate=held_out,
                test=lambda path: held_out())  # fmt: skip
    out = fit(task, c.train, sctx, select_on="neg_loss")
    if dist.init(sctx.device).main:
        _quiet_transformers()
        model.save_pretrained(sctx.out / "model")
    return {"selected_epoch": out.selected_epoch, "heldout": out.val_best, "parameters": n_params,
            "updates": trainer.total_updates, "train_utterances": len(train_utts),
            "heldout_utterances": len(held_utts)}  # fmt: skip


def _stage_config(c: W2V2Config) -> dict[str, Any]:
    """What the pre-trained weights depend on: everything but the checkpoint and the features read from them (the
    held-out batch size stays: it changes the held-out task's draws, and so the epoch selected)."""
    data = cfg.to_dict(c)
    for key in ("checkpoint", "features"):
        data.pop(key)
    return data


def w2v2_stage(cache_dir: str | Path, c: W2V2Config, dataset_hash: str) -> stages.Stage:
    """The cached pre-training stage of ``c`` on the dataset whose content hash is ``dataset_hash``."""
    return stages.stage(cache_dir, STAGE, _stage_config(c), {"dataset": dataset_hash})


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # a pre-training checkpoint read as the bare model: its heads are unused


def encoder_source(ctx: RunContext, c: W2V2Config) -> tuple[Path, str]:
    """The directory of the encoder's weights and a tag naming them: the local checkpoint (``ckpt-<fingerprint>``),
    or the pre-training stage, built on first use (``w2v2-<stage key>``). A dataset with its own checkpoint (a real
    root's ``wav2vec2/``) has it used when ``c`` names none."""
    own = getattr(ctx.data, "wav2vec2_checkpoint", None)
    if own and not c.checkpoint:
        c = dataclasses.replace(c, checkpoint=str(own))
    if c.checkpoint:
        directory = Path(c.checkpoint)
        check_checkpoint(directory)
        return directory, f"ckpt-{asr.checkpoint_fingerprint(directory)}"
    data = ctx.data
    st = w2v2_stage(ctx.cache_dir, c, data.content_hash)
    stages.run_stage(st, lambda sctx: _build(sctx, c, data), config=_stage_config(c),
                     inputs={"dataset": data.content_hash}, device=ctx.device, seed=c.seed, log=ctx.log)  # fmt: skip
    return st.path / "model", f"{STAGE}-{st.key}"


def check_checkpoint(directory: Path) -> None:
    """A local wav2vec2 directory must hold ``config.json`` of ``model_type`` wav2vec2 and its weights."""
    fix = "point w2v2.checkpoint to a directory written by save_pretrained of a wav2vec2 model"
    config = directory / "config.json"
    if not config.is_file():
        raise DataError(config, "missing (no wav2vec2 checkpoint here)", fix)
    try:
        kind = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        raise DataError(config, "not a JSON object", fix) from None
    if kind != "wav2vec2":
        raise DataError(config, f"model_type is {kind!r}, not 'wav2vec2'", fix)
    names = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
    if not any((directory / n).is_file() for n in names):
        raise DataError(directory, f"no weights ({', '.join(names[:2])})", fix)


def load_encoder(directory: Path, device: Any) -> Any:
    """The bare ``Wav2Vec2Model`` of a pre-training (or any wav2vec2) directory, in eval mode."""
    from transformers import Wav2Vec2Model

    _quiet_transformers()
    return Wav2Vec2Model.from_pretrained(str(directory), local_files_only=True).to(device).eval()


# -- the frozen features of the grounding queries ------------------------------------------------------------------


@torch.no_grad()
def encode(encoder: Any, waves: list[Tensor], features: str, device: Any) -> list[Tensor]:
    """Each wave's frozen features ``[frames, D]``: the conv encoder's (``cnn``) or the Transformer's last layer's
    (``context``). A layer-norm encoder takes the waves in one padded batch with its attention mask; a group-norm one
    (which reads the padding) one at a time."""
    if encoder.config.feat_extract_norm != "layer" and len(waves) > 1:
        return [r for w in waves for r in encode(encoder, [w], features, device)]
    values, attention = asr.pad_batch(waves)
    out = encoder(values.to(device), attention_mask=attention.to(device))
    feats = out.extract_features if features == "cnn" else out.last_hidden_state
    frames = encoder._get_feat_extract_output_lengths(attention.sum(-1))
    return [feats[i, : int(frames[i])].cpu() for i in range(len(waves))]


def with_features(ctx: RunContext, data: grounding.GroundingData, directory: Path, tag: str,
                  c: W2V2Config) -> grounding.GroundingData:  # fmt: skip
    """The grounding splits with each query's frozen features as ``sem`` / ``sem_len``, encoded once per encoder."""
    from tqdm import tqdm

    encoder = None

    def encode_split(name: str, split: grounding.GroundingSplit, wavs: dict[str, Path]) -> list[Tensor]:
        nonlocal encoder
        encoder = encoder or load_encoder(directory, ctx.device)
        order = sorted(range(len(split)), key=lambda i: wavs[split.qids[i]].stat().st_size)  # similar lengths
        rows: list[Tensor | None] = [None] * len(split)
        for lo in tqdm(range(0, len(order), c.eval_batch_size), desc=f"w2v2 {name}", unit="batch", leave=False,
                       disable=None):  # fmt: skip
            idx = order[lo : lo + c.eval_batch_size]
            waves = [load_audio(wavs[split.qids[i]], resample=True) for i in idx]
            for i, r in zip(idx, encode(encoder, waves, c.features, ctx.device), strict=True):
                rows[i] = r
        return rows  # type: ignore[return-value]

    def key(name: str) -> str:
        return loader.content_key(tag, c.features, data.content_hash, name, FEATURES_VERSION)

    return frozen.with_query_features(ctx, data, "w2v2", key, encode_split)


# -- the fine-tuned encoder (Table 1's fine-tune column) --------------------------------------------------------

WAVES_VERSION = 1  # bump when read_wave changes


def read_wave(path: Path) -> dict[str, Tensor]:
    """A query's encoder input as the frozen features read it: the 16 kHz wave, normalised over its samples."""
    return {"wave16": asr.normalise_wave(load_audio(path, resample=True))}


def with_waves(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
    """Every split with each query's normalised 16 kHz wave as ``wave16`` / ``wave16_len`` (cached once)."""
    return finetune.with_speech_inputs(ctx, data, read_wave, ("wave16",), "wave16", str(WAVES_VERSION))


class TunedEncoder(nn.Module):
    """:func:`encode`'s features, differentiable: the conv encoder's layer-normed output (``cnn``) or the
    Transformer's last layer (``context``) of each ``wave16`` in the batch, and their frame counts."""

    def __init__(self, encoder: Any, features: str) -> None:
        super().__init__()
        self.model = encoder
        self.features = features

    def grounding_features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        values, lengths = batch["wave16"], batch["wave16_len"]
        if self.model.config.feat_extract_norm != "layer" and len(lengths) > 1:  # group norm reads the padding
            rows = [self.grounding_features({"wave16": values[i : i + 1, : n], "wave16_len": lengths[i : i + 1]})
                    for i, n in enumerate(lengths.tolist())]  # fmt: skip
            return loader.pad_stack([f[0, : n[0]] for f, n in rows])
        frames = self.model._get_feat_extract_output_lengths(lengths)
        if self.features == "cnn":  # the conv encoder alone (its output ignores the attention mask in any case)
            conv = self.model.feature_extractor(values).transpose(1, 2)
            return self.model.feature_projection(conv)[1], frames
        attention = lengths_to_mask(lengths, values.shape[1]).long()
        return self.model(values, attention_mask=attention).last_hidden_state, frames


def feature_width(directory: Path, features: str) -> int:
    """The width of the encoder's ``features`` from its configuration (no weights loaded)."""
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config.from_pretrained(str(directory), local_files_only=True)
    return config.conv_dim[-1] if features == "cnn" else config.hidden_size


# -- grounding -----------------------------------------------------------------------------------------------------


class W2V2Grounding(nn.Module):
    """FC -> ``speech_layers`` Transformer layers over the frozen features -> Base (its Bi-GRU, fusion, proposals)."""

    def __init__(self, c: base.BaseConfig, video_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.fc = FeatureEncoder(feature_dim, c.d)
        self.layers = None
        if c.speech_layers > 0:
            layer = nn.TransformerEncoderLayer(c.d, c.heads, 4 * c.d, c.dropout, batch_first=True, norm_first=True)
            self.layers = nn.TransformerEncoder(layer, c.speech_layers, enable_nested_tensor=False,
                                                norm=nn.LayerNorm(c.d))  # fmt: skip
        self.base = base.BaseNet(c, video_dim, query_dim=c.d)

    def query(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with ``sem`` replaced by its d-wide encoding (what Base's ``features`` query reads)."""
        s, mask = self.fc(batch["sem"], batch["sem_len"])
        if self.layers is not None:
            s = self.layers(s + sinusoid(s.shape[1], s.shape[2], s.device), src_key_padding_mask=~mask)
        return {**batch, "sem": s}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.base(self.query(batch))


def run(ctx: RunContext) -> RunResult:
    """Pre-train (or reuse, or load) the encoder, encode the queries once, train Base on them, select on val, test."""
    c: BaseW2V2Config = ctx.config
    directory, tag = encoder_source(ctx, c.w2v2)
    ctx.log.log_params({"w2v2.encoder": tag, "w2v2.pretrain_seed": "-" if tag.startswith("ckpt-") else c.w2v2.seed})

    def prepare(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
        return with_features(ctx, data, directory, tag, c.w2v2)

    def build(data: grounding.GroundingData) -> W2V2Grounding:
        width = feature_width(directory, c.w2v2.features) if c.finetune else data.train.queries["sem"].shape[-1]
        return W2V2Grounding(c.ground, data.train.videos.shape[-1], width)

    def loss(m: W2V2Grounding, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return base.weak_loss(m.base, m.query(batch))

    if c.finetune:
        tune = finetune.Finetune(lambda: TunedEncoder(load_encoder(directory, ctx.device), c.w2v2.features), with_waves)
        return recipe.ground(ctx, c.ground, build, loss, finetune=tune)
    return recipe.ground(ctx, c.ground, build, loss, prepare=prepare)


W2V2 = register(
    MethodSpec(
        METHOD,
        "Base + Wav2vec2.0",
        ("pretrain", "ground"),
        "speech",
        "weak",
        "Base on a frozen wav2vec 2.0 encoder (Wav2Vec2ForPreTraining on the corpus, or a local checkpoint)",
        run=run,
        config=method_config,
        issue=17,
    )
)
register(finetuned(W2V2))
