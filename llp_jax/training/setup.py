"""Setting up a training run: `setup(config, workdir)` -> `Run`, everything the loop needs.

Every config error comes before any data is read or anything compiles; then the run takes the
workdir's lock (storage/workdir.py), sets a previous run aside under `resume=False`, loads the
data (checked against the workdir's data record), checks the validation split holds a window,
builds the sharded train state and its jitted steps, and restores the newest intact checkpoint
(damaged steps are set aside) — or, on a fresh run with `train.init_from`, loads the weights
of another run (fine-tuning, context extension).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax import nnx

from llp_jax import models, paths
from llp_jax.data import DataConfig, DataError, Datasets, build_datasets, tokenizers, workdir_store
from llp_jax.errors import LLPError
from llp_jax.storage import Checkpointer, CheckpointNotFoundError, WorkdirLock, set_aside
from llp_jax.storage.damaged import DAMAGED
from llp_jax.storage.workdir import check_path
from llp_jax.training import finetune, sequence_parallel
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import resume as resume_lib
from llp_jax.training import train_step as steps
from llp_jax.training.config import MeshConfig, TrainConfig, read_sections
from llp_jax.training.distributed import any_process
from llp_jax.training.optimizer import make_optimizer, make_schedule
from llp_jax.training.validation import check_validation


def resolve_model_config(model_fields: dict, vocab_size: int, eod_id: int = -1,
                         tokenizer: str = "the tokenizer"):  # fmt: skip
    """The model section with vocab_size 0 and eod_id -1 meaning "the tokenizer's", validated."""
    fields = dict(model_fields)
    if fields.get("document_mask") and fields.get("eod_id", -1) < 0:
        if eod_id < 0:
            raise models.ConfigError(
                f"model.document_mask=true needs an end-of-document token, and {tokenizer} has "
                "none of its own (a BERT [SEP] ends every line); set "
                "--config.model.document_mask=false"
            )
        fields["eod_id"] = eod_id
    if not fields.get("vocab_size"):
        fields["vocab_size"] = vocab_size
    elif fields["vocab_size"] < vocab_size:
        raise models.ConfigError(
            f"model.vocab_size={fields['vocab_size']} is smaller than the tokenizer's "
            f"{vocab_size}; set it to 0 to use the tokenizer's"
        )
    return models.ModelConfig.from_any(fields)


@dataclasses.dataclass
class Run:
    """Everything a training run holds between set-up and the end of the loop."""

    config: Any  # the experiment ConfigDict as given
    workdir: str
    train: TrainConfig
    mesh_config: MeshConfig
    data_config: DataConfig
    data: Datasets
    model_cfg: models.ModelConfig
    mesh: jax.sharding.Mesh
    graphdef: nnx.GraphDef
    state: steps.TrainState
    train_step: Any
    eval_step: Any
    train_iter: Any
    ckpt: Checkpointer
    start_step: int
    lock: WorkdirLock | None = None

    def close(self) -> None:
        """Waits for the last save, closes the checkpoints and releases the workdir."""
        try:
            self.ckpt.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def load_data(workdir: str, data_config: DataConfig, seq_len: int, *, resume: bool,
              allow_data_change: bool, init_from: str = "") -> Datasets:  # fmt: skip
    """The run's data. A workdir keeps a record of its data (data config, tokenizer, training
    fingerprint): a resumed run reuses its tokenizer (token ids never change under it) and must
    train on the same data unless `allow_data_change`; the record is (re)written otherwise. A
    fresh run from `init_from` takes the source run's tokenizer (`finetune.source_tokenizer`)."""
    record = workdir_store.read_record(workdir) if resume else None
    if record is not None and not allow_data_change:
        diffs = workdir_store.differences(record, data_config, workdir=workdir)
        if diffs:
            raise models.ConfigError(
                f"{workdir} was trained on other data: {'; '.join(diffs)}; use another "
                "--workdir, --noresume, or --allow_data_change to continue on this data"
            )
    own = None
    if record is not None and not data_config.is_tfds:
        own = workdir_store.tokenizer(workdir, record)
    elif record is None and init_from:
        own = finetune.source_tokenizer(init_from, data_config)
        if own is not None and jax.process_index() == 0:
            print(f"tokenizer {own.name}: train.init_from's (its weights' token ids), not one "
                  "trained on this data")  # fmt: skip
    if own is None and not data_config.is_tfds:
        tokenizers.check_spec(data_config.tokenizer)  # before the text is read
    try:
        data = build_datasets(data_config, seq_len, tokenizer=own)
    except DataError as e:
        if record is None or data_config.is_tfds:
            raise
        raise DataError(f"{workdir}: a resuming run reads its training text again (a workdir "
                        f"keeps only its validation and test splits): {str(e).rstrip('.')}; "
                        "if it moved, give --config.data.corpus=<where it is now> (the same "
                        "training tokens resume)") from None  # fmt: skip
    if record is None and init_from and own is None:  # (the source's own needs no check)
        finetune.check_tokenizer(init_from, data.tokenizer)
    if record is not None and not allow_data_change:
        diffs = workdir_store.differences(record, data_config, data, workdir=workdir)
        if diffs:
            raise models.ConfigError(
                f"{workdir} was trained on other data: {'; '.join(diffs)}; use another "
                "--workdir, --noresume, or --allow_data_change to continue on this data"
            )
    if record is not None and not allow_data_change and workdir_store.moved(record, data_config):
        if jax.process_index() == 0:  # the record follows the text (--split=train reads it)
            print(f"data.corpus is now {data_config.corpus!r} (was {record['data']['corpus']!r}): "
                  "the same training tokens")  # fmt: skip
            workdir_store.save(workdir, data)
    elif (record is None or allow_data_change) and jax.process_index() == 0:
        workdir_store.save(workdir, data)
    elif record is not None and jax.process_index() == 0:  # the same data: mend what it kept
        for name in workdir_store.repair(workdir, record, data):
            print(f"{workdir}/data/{name} was missing or damaged: written again from the corpus")
    return data


def setup(config: Any, workdir: str, *, resume: bool = True, devices=None,
          allow_data_change: bool = False) -> Run:  # fmt: skip
    """Validates the config, loads data, builds the sharded state and restores a checkpoint."""
    # Every config error comes before any data is read or anything compiles.
    check_path(workdir)
    if not isinstance(resume, (bool, np.bool_)):  # "no" was truthy: the run resumed
        raise models.ConfigError(f"resume={resume!r} must be True or False")
    model_fields, data_config, train, mesh_config = read_sections(config)
    probe = models.ModelConfig.from_any({**model_fields, "vocab_size": 1 << 20})
    mesh = mesh_lib.make_mesh(mesh_config, devices=devices)
    local_batch = mesh_lib.check_batch(train, mesh)
    sequence_parallel.check_config(probe, mesh)
    finetune.check_source(train.init_from, workdir, resume=resume)
    lock = _own(workdir)
    try:
        if not resume and jax.process_index() == 0:
            aside = set_aside(workdir)
            if aside:
                print(f"--noresume: the previous run in {workdir} is kept in {aside}")
        any_process(False)  # every process past the set-aside before anyone reads the workdir
        run = _build(config, workdir, model_fields, data_config, train, mesh_config, mesh,
                     local_batch, probe, resume=resume, allow_data_change=allow_data_change)  # fmt: skip
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    return run


def _own(workdir: str) -> WorkdirLock | None:
    """The workdir's lock (process 0 takes it; every process fails together if it is busy)."""
    lock, error = None, None
    if jax.process_index() == 0:
        paths.makedirs(workdir)
        try:
            lock = WorkdirLock(workdir).acquire()
        except LLPError as e:
            error = e
    if any_process(error is not None):
        raise error or LLPError(f"{workdir} is in use (see process 0's message)")
    return lock


def _build(config, workdir, model_fields, data_config, train, mesh_config, mesh, local_batch,
           probe, *, resume, allow_data_change) -> Run:  # fmt: skip
    data = load_data(workdir, data_config, probe.seq_len, resume=resume,
                     allow_data_change=allow_data_change, init_from=train.init_from)  # fmt: skip
    check_validation(data.eval_tokens("validation"), probe.seq_len,
                     mesh_lib.batch_sharding(mesh), data.corpus.name)  # fmt: skip
    model_cfg = resolve_model_config(model_fields, data.tokenizer.vocab_size, data.tokenizer.eod_id,
                                     f"tokenizer {data.tokenizer.name}")  # fmt: skip

    schedule = make_schedule(train, train.num_steps)
    factory = lambda: models.build(model_cfg, seed=train.seed)  # noqa: E731
    with nnx.use_eager_sharding(False):
        abstract_params = nnx.split(nnx.eval_shape(factory))[1]
    tx, trained = finetune.optimizer(make_optimizer(train, train.num_steps), abstract_params, train)
    graphdef, state, shardings = steps.init_train_state(
        factory, tx, mesh, train.seed, batch_tokens=local_batch * (model_cfg.seq_len + 1)
    )
    train_step = steps.make_train_step(
        graphdef,
        tx,
        schedule,
        mesh,
        shardings,
        grad_accum_steps=train.grad_accum_steps,
        dropout=model_cfg.dropout > 0,
        trained=trained,
    )
    eval_step = steps.make_eval_step(graphdef, mesh, shardings["params"])
    train_iter = data.train_iterator(local_batch)
    ckpt = Checkpointer(
        paths.join(workdir, "checkpoints"),
        save_every=train.checkpoint_every,
        keep=train.keep_checkpoints,
        set_aside_damaged=True,  # this run owns the workdir (it holds the lock)
    )
    start = 0
    if resume and ckpt.latest_step() is None and ckpt.set_aside:
        raise CheckpointNotFoundError(
            f"no intact checkpoint in {ckpt.directory}: every step was damaged (steps "
            f"{sorted(ckpt.set_aside)}, set aside in {paths.join(workdir, DAMAGED)}); start "
            "over with --noresume"
        )
    if resume and ckpt.latest_step() is not None:
        try:
            saved = ckpt.read_meta()
        except Exception:  # noqa: BLE001  a damaged newest step: restore() skips it, warns
            saved = {}
        if saved.get("model"):
            resume_lib.check_model(saved["model"], model_cfg, ckpt.directory)
        if saved.get("weights_only"):  # e.g. converted from the authors' code
            start = int(saved["step"])
            abstract = mesh_lib.sharded_abstract_state(jax.eval_shape(lambda: state), mesh)
            params = ckpt.restore_params(abstract["params"], start)
            state = steps.start_at(state, params, start)
            print(
                f"continuing from the weights of step {start} in {ckpt.directory} (fresh "
                "optimizer moments and data order)"
            )
        else:
            finetune.check_resumed_layout(saved.get("optimizer"), train, ckpt.directory, workdir)
            abstract = mesh_lib.sharded_abstract_state(jax.eval_shape(lambda: state), mesh)
            restored = ckpt.restore(abstract, data_iterator=train_iter)
            state, start = restored.state, restored.step
            # A preempted fine-tune resumes its own steps; its source only seeded step 0.
            also = " (train.init_from seeds only a fresh start)" if train.init_from else ""
            print(f"resumed from step {start} in {ckpt.directory}{also}")
            resume_lib.continue_data(train_iter, restored.meta, train.batch_size)
            resume_lib.tell_update_changes(restored.meta.get("update"), train, start)
    elif train.init_from:
        params, where = finetune.init_params(train.init_from, model_cfg, state["params"])
        state = {**state, "params": params}
        print(f"initialised from {where} (fresh optimizer, step 0)")
    return Run(
        config, workdir, train, mesh_config, data_config, data, model_cfg, mesh, graphdef, state,
        train_step, eval_step, train_iter, ckpt, start,
    )  # fmt: skip
