"""The data a model is evaluated on (`runner.setup`): the workdir's own (its tokenizer and
evaluation splits), a --config's data section, other text, or the run's training text read again.

A workdir keeps its validation and test splits, not its training text (which may be a bucket of
shards): `--split=train` reads the corpus again, with the workdir's own tokenizer, and checks
its fingerprint, so a corpus edited since the run is a one-line error, not a silent number.
"""

from __future__ import annotations

from llp_jax.data import DataConfig, DataError, build_datasets, make_tokenizer, workdir_store
from llp_jax.data.datasets import text_datasets
from llp_jax.data.tokenizer_specs import FROM_CORPUS
from llp_jax.evaluation.errors import EvaluationError


def load(workdir, config, loaded, seq_len, *, text, text_field, allow_data_change,
         training_split=False):  # fmt: skip
    """The data a model is evaluated on: the workdir's own (its tokenizer and evaluation
    splits), the --config's data section (which must match the workdir's unless
    `allow_data_change`), `text` tokenised with the workdir's tokenizer, or, with
    `training_split`, the workdir's data with its training text."""
    record = workdir_store.read_record(workdir) if workdir is not None else None
    if text:
        tok = workdir_store.tokenizer(workdir, record) if record else None
        given = config.data if config is not None and "data" in config else None
        data = DataConfig.from_any(record["data"] if record else given)
        if tok is None:
            tok = None if data.tokenizer in FROM_CORPUS else make_tokenizer(data.tokenizer)
        if tok is None:
            raise EvaluationError("--text needs a workdir with its tokenizer, or a byte --config")
        # Documents ended (or joined) as the model was trained: a tokenizer without an
        # end-of-document token trained with 'none'.
        return text_datasets(text, tok, seq_len, text_field, data.document_boundaries)
    if config is not None and "data" in config:
        if record is None:
            return build_datasets(config.data, seq_len)
        built = _config_data(workdir, record, config.data, seq_len, allow_data_change,
                             training_split=training_split)  # fmt: skip
        if built is not None:
            return built
    if record is not None:
        if training_split:
            if config is not None and "data" in config and workdir_store.moved(record, config.data):
                # The corpus moved since the run: its new path (the fingerprint still checks it).
                data = {**record["data"], "corpus": DataConfig.from_any(config.data).corpus}
                record = {**record, "data": data}
            return _with_training_text(workdir, record, seq_len, allow_data_change)
        return workdir_store.load(workdir, seq_len)
    if loaded is not None and loaded.data_config:  # a workdir written before data records
        return build_datasets(loaded.data_config, seq_len)
    return build_datasets(DataConfig(), seq_len)


def _config_data(workdir, record, data_config, seq_len, allow_data_change, *, training_split):
    """A --config's data section given with a workdir: None where it is the workdir's own data
    (its stored splits serve), else that data, built with the workdir's tokenizer (the one its
    weights read), if `allow_data_change`; otherwise an error naming the difference. Own text
    at another path is the workdir's text moved only if its training tokens are the run's: a
    different file there is different data, not a silent evaluation of the stored splits."""
    diffs = workdir_store.differences(record, data_config, workdir=workdir)
    built = None
    if not diffs and workdir_store.moved(record, data_config) and not training_split:
        built = _built(workdir, record, data_config, seq_len)
        diffs = workdir_store.differences(record, data_config, built, workdir=workdir)
    if diffs and not allow_data_change:
        raise EvaluationError(
            f"the --config's data differs from the workdir's: {'; '.join(diffs)}; drop "
            "--config, evaluate other text with --text, or pass --allow_data_change"
        )
    if not diffs:
        return None
    return built if built is not None else _built(workdir, record, data_config, seq_len)


def _built(workdir, record, data_config, seq_len):
    """`data_config`'s data, tokenised as the workdir's weights were trained: with its own
    tokenizer where the section names the same one (a 'sentencepiece' section would otherwise
    train a new model on the new text, whose ids the weights never saw)."""
    data_config = DataConfig.from_any(data_config)
    same = data_config.tokenizer == DataConfig.from_any(record["data"]).tokenizer
    own = workdir_store.tokenizer(workdir, record) if same and not data_config.is_tfds else None
    return build_datasets(data_config, seq_len, tokenizer=own, process_index=0, process_count=1)


def _with_training_text(workdir: str, record: dict, seq_len: int, allow_data_change: bool):
    """The workdir's data built again from its corpus, with its own tokenizer; the training
    tokens must be those the run trained on (its fingerprint), unless `allow_data_change`."""
    data_config = DataConfig.from_any(record["data"])
    own = None if data_config.is_tfds else workdir_store.tokenizer(workdir, record)
    try:
        data = build_datasets(data_config, seq_len, tokenizer=own, process_index=0,
                              process_count=1)  # fmt: skip
    except DataError as e:
        moved = ("; if it moved, give a --config whose data.corpus names it there"
                 if data_config.is_own_text else "")  # fmt: skip
        raise EvaluationError(f"--split=train reads the run's training text again (a workdir "
                              f"keeps only its validation and test splits): {e}{moved}") from None  # fmt: skip
    diffs = workdir_store.differences(record, data_config, data, workdir=workdir)
    if diffs and not allow_data_change:
        raise EvaluationError(f"--split=train: {'; '.join(diffs)}, so these are not the tokens "
                              f"{workdir} was trained on (--allow_data_change: score them anyway)")  # fmt: skip
    return data
