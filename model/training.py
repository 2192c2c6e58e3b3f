"""The training loop: a function, with callbacks for progress, checkpoints and cancellation.

Every source of randomness is derived from ``train_config.seed``: the validation split,
the initial weights, and the batch order of epoch e (seeded with (seed, e)), so the same
seed gives the same model twice on the CPU and a resumed run replays the batch order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rnnlm.model.batching import length_sorted_batches, num_batches
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus
from rnnlm.model.dataset import prepare, target_counts
from rnnlm.model.engines import Engine, create_engine
from rnnlm.model.interpolation import NgramPart, add_ngram_part, check_vocab_overlap, perplexity
from rnnlm.model.lm import LanguageModel
from rnnlm.model.ngram import NgramModel
from rnnlm.model.progress import ProgressEvent, Work
from rnnlm.model.state import (
    STATUS_CANCELLED,
    STATUS_COMPLETED,
    STATUS_EARLY_STOPPED,
    STATUS_RUNNING,
    TrainingState,
    check_resumable,
    plateau_reached,
)

if TYPE_CHECKING:  # torch is imported only by runs that use it
    from rnnlm.model.data_parallel import DataParallel

log = logging.getLogger("rnnlm.model")

# With log_every unset, a step event comes after the first step and then about this often,
# so that a watcher sees progress (and an ETA) from the start whatever a step costs.
PROGRESS_SECONDS = 2.0
# Step events report tokens/s averaged over about this many seconds of training: the first
# steps (warm-up, allocation) are slow, and a per-window figure jumps from event to event.
RATE_HORIZON_SECONDS = 10.0


ProgressCallback = Callable[[ProgressEvent], None]
CheckpointCallback = Callable[[LanguageModel], None]


def evaluate(
    engine: Engine,
    sequences: list[np.ndarray],
    batch_size: int = 64,
    group: DataParallel | None = None,
) -> tuple[float, int]:
    """Summed negative log-likelihood and token count of framed sequences; the ranks of a
    data-parallel ``group`` each score every world-th batch and add up their sums."""
    loss, tokens = 0.0, 0
    for i, (_, batch) in enumerate(length_sorted_batches(sequences, batch_size)):
        if group is not None and i % group.world != group.rank:
            continue
        loss -= float(engine.token_log_probs(batch).sum())
        tokens += batch.num_tokens
    if group is not None:
        loss, total = group.sum(loss, tokens)
        tokens = round(total)
    return loss, tokens


@dataclass
class _Trainer:
    """One training run; holds what the epoch loop and the callbacks share."""

    lm: LanguageModel
    train_seqs: list[np.ndarray]
    valid_seqs: list[np.ndarray]
    state: TrainingState
    on_progress: ProgressCallback | None
    on_checkpoint: CheckpointCallback | None
    should_stop: Callable[[], bool] | None
    group: DataParallel | None = None  # this rank's place in a data-parallel run

    def __post_init__(self) -> None:
        assert self.lm.train_config is not None  # train() sets it before a run starts
        self.engine, self.config = self.lm.engine, self.lm.train_config
        batches = num_batches(len(self.train_seqs), self.config.batch_size)
        self.total_steps = batches * self.config.epochs
        self.started = time.perf_counter()
        self.steps_this_run = 0
        # Training steps since the last step event, and of this epoch (throughput leaves
        # validation time out).
        self._window = Work()
        self._epoch_work = Work()
        self._last_grad_norm = 0.0
        self._last_event = self.started  # when the last step event was sent
        self._rate: float | None = None  # tokens/s, smoothed over RATE_HORIZON_SECONDS

    def run(self) -> LanguageModel:
        cfg, state = self.config, self.state
        while state.epoch < cfg.epochs and state.status == STATUS_RUNNING:
            self._run_epoch()
        if state.status == STATUS_RUNNING:
            state.status = STATUS_COMPLETED
        finished = state.status in (STATUS_COMPLETED, STATUS_EARLY_STOPPED)
        if finished and self.lm.best_weights is not None and state.best_epoch != state.epoch:
            # The finished model is the best validation epoch's, not the last one's.
            self.engine.load_state_dict(self.lm.best_weights)
        if finished:
            self.lm.best_weights = None
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.lm)
        return self.lm

    def _run_epoch(self) -> None:
        cfg, state = self.config, self.state
        rng = np.random.default_rng([cfg.seed, state.epoch])
        self._epoch_work = Work()
        for i, (_, batch) in enumerate(length_sorted_batches(self.train_seqs, cfg.batch_size, rng)):
            if i < state.epoch_step:  # resuming: these batches were trained before the stop
                continue
            if self._stop_asked():
                state.status = STATUS_CANCELLED
                return
            step_started = time.perf_counter()
            stats = self.engine.train_step(batch)
            seconds = time.perf_counter() - step_started
            if not math.isfinite(stats.loss_sum):
                raise FloatingPointError(
                    f"training diverged at step {state.global_step + 1} (loss {stats.loss_sum}); "
                    "lower train_config.learning_rate or set train_config.clip"
                )
            state.global_step += 1
            state.epoch_step += 1
            self.steps_this_run += 1
            state.epoch_loss_sum += stats.loss_sum
            state.epoch_tokens += stats.num_tokens
            self._window.add(stats, seconds)
            self._epoch_work.add(stats, seconds)
            if self._step_event_due():
                window, self._window = self._window, Work()
                loss = window.loss_sum / window.tokens
                self._emit("step", loss, self._smoothed_rate(window), stats.grad_norm)
            if (
                cfg.checkpoint_every
                and state.global_step % cfg.checkpoint_every == 0
                and self.on_checkpoint is not None
            ):
                self.on_checkpoint(self.lm)
            self._last_grad_norm = stats.grad_norm
        self._end_epoch()

    def _stop_asked(self) -> bool:
        """Polled before every step; in a data-parallel run every rank stops at the step
        where one was asked to (rank 0, which the job's cancel reaches)."""
        asked = self.should_stop is not None and self.should_stop()
        return asked if self.group is None else self.group.any(asked)

    def _step_event_due(self) -> bool:
        """Every log_every steps; unset, after the first step and then by the clock."""
        if self.config.log_every is not None:
            return self.state.global_step % self.config.log_every == 0
        now = time.perf_counter()
        if self.steps_this_run > 1 and now - self._last_event < PROGRESS_SECONDS:
            return False
        self._last_event = now
        return True

    def _smoothed_rate(self, window: Work) -> float:
        """Tokens/s, an average weighted towards the last RATE_HORIZON_SECONDS of steps."""
        rate = window.tokens_per_second
        if self._rate is None:
            self._rate = rate
        else:
            weight = 1.0 - math.exp(-window.seconds / RATE_HORIZON_SECONDS)
            self._rate += weight * (rate - self._rate)
        return self._rate

    def _end_epoch(self) -> None:
        cfg, state = self.config, self.state
        train_loss = state.epoch_loss_sum / max(state.epoch_tokens, 1)
        valid_loss = None
        if self.valid_seqs:
            total, tokens = evaluate(self.engine, self.valid_seqs, group=self.group)
            valid_loss = total / tokens
        if plateau_reached(state, valid_loss if valid_loss is not None else train_loss, cfg):
            state.learning_rate *= cfg.lr_decay
            self.engine.set_learning_rate(state.learning_rate)
        state.epoch += 1
        if valid_loss is not None:
            if state.best_valid_loss is None or valid_loss < state.best_valid_loss:
                state.best_valid_loss, state.best_epoch = valid_loss, state.epoch
                state.bad_epochs = 0
                self.lm.best_weights = self.engine.state_dict()
            else:
                state.bad_epochs += 1
                if cfg.patience is not None and state.bad_epochs >= cfg.patience:
                    state.status = STATUS_EARLY_STOPPED
        state.history.append(
            {
                "epoch": state.epoch,
                "train_loss": train_loss,
                "train_perplexity": perplexity(train_loss),
                "valid_loss": valid_loss,
                "valid_perplexity": perplexity(valid_loss) if valid_loss is not None else None,
                "learning_rate": state.learning_rate,
                "steps": state.global_step,
            }
        )
        state.epoch_step, state.epoch_loss_sum, state.epoch_tokens = 0, 0.0, 0
        log.info(
            "epoch %d/%d: train ppl %.2f%s, lr %.4g",
            state.epoch,
            cfg.epochs,
            perplexity(train_loss),
            f", valid ppl {perplexity(valid_loss):.2f}" if valid_loss is not None else "",
            state.learning_rate,
        )
        rate = self._epoch_work.tokens_per_second
        self._emit("epoch", train_loss, rate, self._last_grad_norm, valid_loss)

    def _emit(
        self,
        kind: str,
        loss: float,
        tokens_per_second: float,
        grad_norm: float,
        valid_loss: float | None = None,
    ) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.started
        remaining = self.total_steps - self.state.global_step
        pace = elapsed / self.steps_this_run if self.steps_this_run else 0.0
        event = ProgressEvent(
            kind=kind,
            epoch=min(self.state.epoch + (kind == "step"), self.config.epochs),
            epochs=self.config.epochs,
            step=self.state.global_step,
            total_steps=self.total_steps,
            loss=loss,
            perplexity=perplexity(loss),
            tokens_per_second=tokens_per_second,
            learning_rate=self.state.learning_rate,
            grad_norm=grad_norm,
            elapsed_seconds=elapsed,
            eta_seconds=max(remaining, 0) * pace,
            valid_loss=valid_loss,
            valid_perplexity=perplexity(valid_loss) if valid_loss is not None else None,
        )
        self.on_progress(event)


def train(
    corpus: Corpus | str,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: LanguageModel | None = None,
    ngram: NgramModel | None = None,
    ngram_source: str = "arpa",
    distributed: DataParallel | None = None,
    add_ngram: bool = True,
) -> LanguageModel:
    """Train a language model on ``corpus`` (a ``Corpus`` or raw text).

    ``on_progress`` receives a ``ProgressEvent`` every ``log_every`` steps and after each
    epoch; ``on_checkpoint`` receives the model (``lm.to_bytes(resumable=True)`` gives a
    resumable checkpoint) every ``checkpoint_every`` steps and at the end; ``should_stop``
    is polled before every step and ends the run early (status 'cancelled').
    ``resume_from`` continues a run from such a checkpoint, with its vocabulary and
    tokenizer, on the same corpus and configuration. A finished run gets its n-gram part:
    ``ngram`` (e.g. ``NgramModel.from_arpa``, described by ``ngram_source``) or, by default,
    a Kneser-Ney model of ``model_config.ngram_order`` estimated on the training split; the
    interpolation weight is tuned on the validation split.

    ``train_config.processes`` > 1 trains data-parallel in that many local processes
    (``local_launch``), which report through the same callbacks. ``distributed`` is for a
    process that already is a rank of a run (``data_parallel``): rank 0 calls ``train`` as
    usual and gets the model; the others call ``distributed.follow``. ``add_ngram``
    False leaves the n-gram part to the caller (``local_launch`` does, for an ARPA model).
    """
    model_config = model_config or (resume_from.config if resume_from else ModelConfig())
    train_config = (
        train_config or (resume_from.train_config if resume_from else None) or TrainConfig()
    )
    train_config.check_compatible(model_config)
    if isinstance(corpus, str):
        corpus = Corpus.from_text(corpus)
    if not isinstance(corpus, Corpus):
        raise ValueError(f"corpus must be a Corpus or a str of text, got {type(corpus).__name__}")
    if train_config.processes > 1 and distributed is None:
        from rnnlm.model.local_launch import train_in_processes

        return train_in_processes(
            corpus,
            model_config,
            train_config,
            on_progress=on_progress,
            on_checkpoint=on_checkpoint,
            should_stop=should_stop,
            resume_from=resume_from,
            ngram=ngram,
            ngram_source=ngram_source,
        )
    corpus_sha256 = hashlib.sha256(corpus.text.encode("utf-8")).hexdigest()
    if resume_from is not None:
        stored = (resume_from.config, resume_from.train_config, resume_from.training_state)
        check_resumable(stored, model_config, train_config, corpus_sha256)
    prepared = prepare(corpus, model_config, train_config, resume_from)
    tokenizer, vocab, train_seqs, valid_seqs, warnings, valid_sentences = prepared
    if ngram is not None:  # a foreign ARPA model is refused now, not after training
        check_vocab_overlap(NgramPart(ngram, ngram_source), vocab)

    if resume_from is not None:
        lm = resume_from
        state = lm.training_state or TrainingState(train_config.effective_learning_rate)
        before = lm.train_config
        if before is None or before.effective_learning_rate != train_config.effective_learning_rate:
            state.learning_rate = train_config.effective_learning_rate  # asked for a new rate
        state.status = STATUS_RUNNING
        lm.train_config = train_config
    else:
        engine = create_engine(
            model_config,
            len(vocab),
            seed=train_config.seed,
            device=train_config.device,
            word_counts=target_counts(train_seqs, len(vocab)),
        )
        state = TrainingState(train_config.effective_learning_rate, corpus_sha256=corpus_sha256)
        lm = LanguageModel(model_config, tokenizer, vocab, engine, train_config, state)
    lm.engine.configure_training(
        train_config.optimizer,
        state.learning_rate,
        train_config.clip,
        train_config.bptt_truncate,
        train_config.effective_weight_decay,
    )
    # What a resumable checkpoint brought (a new model has none).
    if lm.resume_tensors.get("optimizer"):
        lm.engine.load_optimizer_state_dict(lm.resume_tensors["optimizer"])
    lm.best_weights = lm.resume_tensors.get("best") or None
    lm.resume_tensors = {}
    lm.training_state = state
    state.warnings = warnings  # prepare logged them; kept for the job record
    if distributed is not None:
        _join(distributed, lm, corpus, model_config, train_config)
    trainer = _Trainer(
        lm, train_seqs, valid_seqs, state, on_progress, on_checkpoint, should_stop, distributed
    )
    if distributed is None:
        lm = trainer.run()
    else:
        from rnnlm.model.data_parallel import run_as_rank

        lm = run_as_rank(trainer.run)
    leader = distributed is None or distributed.leader
    if add_ngram and leader and state.status in (STATUS_COMPLETED, STATUS_EARLY_STOPPED):
        add_ngram_part(lm, train_seqs, valid_sentences, ngram, ngram_source)
    return lm


def _join(
    group: DataParallel,
    lm: LanguageModel,
    corpus: Corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
) -> None:
    """Start a rank's part of a data-parallel run. Rank 0 sends the others its starting
    point (a resumable checkpoint of the model as it is now); every rank then wraps its
    engine for data-parallel steps."""
    if not hasattr(lm.engine, "data_parallel"):
        raise ValueError(f"cell {model_config.cell!r} trains in one process only")
    assert lm.training_state is not None
    if group.leader:
        group.share_start(corpus, model_config, train_config, lm.to_bytes(resumable=True))
    lm.engine.data_parallel(group, lm.training_state.global_step)
