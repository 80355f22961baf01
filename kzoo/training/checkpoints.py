"""Per-epoch checkpoints that a killed run resumes from."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil

import tensorflow as tf

from kzoo.utils import files

#: The file beside the checkpoints that records the newest epoch's running metrics and evaluation (see
#: :meth:`EpochCheckpointer.save`).
EPOCH_RECORD = "epoch_record.json"


class EpochCheckpointer:
    """Saves ``model``, ``optimizer`` and the number of completed epochs after every epoch.

    Only the chief writes to ``directory``; other workers of a multi-worker job
    take part in the (collective) save into a private temporary folder that is
    deleted right away, as ``tf.distribute`` requires. Every worker restores from
    ``directory`` (a file system the workers share), so that all resume at the same epoch.
    """

    def __init__(self, directory: str, chief: bool, task_id: int = 0, max_to_keep: int = 2, **trackables) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.checkpoint = tf.train.Checkpoint(epoch=self.epoch, **trackables)
        self.chief = chief
        self.restore_directory = directory
        self.directory = directory if chief else os.path.join(directory, f".worker_{task_id}_tmp")
        #: the prefix of the checkpoint :meth:`restore_latest` restored (``None`` before, or when there was none)
        self.restored: str | None = None
        if chief:
            self._remove_interrupted_saves()
            self._check_state_file()
        else:  # a killed worker's private folder
            shutil.rmtree(self.directory, ignore_errors=True)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=max_to_keep)

    def _remove_interrupted_saves(self) -> None:
        """Delete what a save killed half-way leaves: TF's ``ckpt-N_temp`` shard folders, ``*.tempstate*`` index
        files and ``checkpoint.tmp*`` state files. Checkpoints (``ckpt-N.index`` / ``.data-*``) are never touched."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            interrupted = re.fullmatch(r"ckpt-\d+_temp.*", name) or ".tempstate" in name
            if not (interrupted or name.startswith("checkpoint.tmp")):
                continue
            path = os.path.join(self.directory, name)
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)

    def _check_state_file(self) -> None:
        """A ``checkpoint`` state file that cannot be parsed (empty, garbage) is named and removed: checkpoints are
        found by their files (:meth:`_candidates`) and the next save writes a new state file."""
        path = os.path.join(self.directory, "checkpoint")
        if not os.path.isfile(path):
            return
        try:
            state = tf.train.get_checkpoint_state(self.directory)
        except Exception as error:  # noqa: BLE001 - text_format and TF raise several types
            problem = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        else:
            if state is not None and state.model_checkpoint_path:
                return
            problem = "no checkpoint named in it"
        print(f"checkpoint state file {path} is damaged ({problem}); finding the checkpoints by their files")
        os.remove(path)

    def restore_latest(self) -> int:
        """Restore the newest intact checkpoint, if any; returns the number of completed epochs (0 for none).

        Checkpoints are found by their files (``ckpt-N.index``), not only through the ``checkpoint`` state file,
        so a missing or stale state file neither restarts the run nor lets older checkpoints be rotated away. A
        damaged newest checkpoint (truncated, garbage) is named and skipped for the previous intact one.
        """
        candidates = self._candidates()
        for number, prefix in candidates:
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except Exception as error:  # a damaged file fails in the reader with many error types
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                print(f"checkpoint {prefix} (epoch {number}) cannot be read ({first[:200]}); trying the one before")
                continue
            self.restored = prefix
            return int(self.epoch.numpy())
        if candidates:  # the model may hold parts of a damaged checkpoint: never train on from there
            raise ValueError(
                f"no intact checkpoint in {self.restore_directory} ({len(candidates)} damaged); "
                "pass --fresh to delete the run and start over"
            )
        return 0

    def _candidates(self) -> list[tuple[int, str]]:
        """``(epoch, prefix)`` of every checkpoint in the folder, newest first."""
        if not os.path.isdir(self.restore_directory):
            return []
        found = {}
        for name in os.listdir(self.restore_directory):
            match = re.fullmatch(r"ckpt-(\d+)\.index", name)
            if match:
                found[int(match[1])] = os.path.join(self.restore_directory, f"ckpt-{match[1]}")
        latest = tf.train.latest_checkpoint(self.restore_directory)
        if latest and (latest_match := re.search(r"ckpt-(\d+)$", latest)):
            found.setdefault(int(latest_match[1]), latest)
        return sorted(found.items(), reverse=True)

    def save(self, completed_epochs: int, record: dict | None = None) -> None:
        """Save the checkpoint of ``completed_epochs``; ``record`` (a json-serializable dict, e.g. the epoch's
        metrics and whether its evaluation is still to run) is written first, beside it (chief only, atomically),
        so that a record always belongs to a checkpoint that exists or to none (see :meth:`read_record`)."""
        if record is not None:
            self.write_record(completed_epochs, record)
        self.epoch.assign(completed_epochs)
        self.manager.save(checkpoint_number=completed_epochs)
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)

    def write_record(self, completed_epochs: int, record: dict) -> None:
        """Write ``record`` as the record of epoch ``completed_epochs`` (chief only; atomically: a kill leaves the
        previous record or this one)."""
        if self.chief:
            files.write_json(
                os.path.join(self.restore_directory, EPOCH_RECORD), {"epoch": int(completed_epochs), **record}
            )

    def read_record(self, completed_epochs: int) -> dict | None:
        """The record written with the checkpoint of ``completed_epochs`` (every worker reads the chief's), or
        ``None`` when there is none, it is unreadable, or it belongs to another epoch (a run killed between
        writing the record and saving its checkpoint resumes from the checkpoint before)."""
        try:
            with open(os.path.join(self.restore_directory, EPOCH_RECORD)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("epoch") != completed_epochs:
            return None
        return {k: v for k, v in record.items() if k != "epoch"}
