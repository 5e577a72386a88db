"""Reading an offline W&B run back: the records of its ``run-<id>.wandb`` transaction log."""

from __future__ import annotations

import json
from pathlib import Path

from wandb.proto.wandb_internal_pb2 import Record

BLOCK = 32768
"""The log is written in blocks of this many bytes (LevelDB's log format)."""
HEADER = 7
"""Bytes of the file header (``:W&B``, an identifier, a version) and of each chunk header (CRC,
length, type)."""
LAST_CHUNKS = (1, 4)
"""Chunk types that end a record: FULL and LAST."""


def read_records(path: Path) -> list[Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:  # the block's tail is padding
            offset += left
            continue
        length, kind = int.from_bytes(data[offset + 4:offset + 6], "little"), data[offset + 6]
        pending += data[offset + HEADER:offset + HEADER + length]
        offset += HEADER + length
        if kind in LAST_CHUNKS:
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_run(folder: Path) -> tuple[str, list[dict], dict]:
    """The run id, the history rows (``{key: value}``, values decoded from JSON) and the final
    summary of the offline run in ``folder`` (``.../offline-run-<time>-<id>``)."""
    (path,) = folder.glob("run-*.wandb")
    records = read_records(path)
    run_id = next(record.run.run_id for record in records if record.WhichOneof("record_type") == "run")
    history = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
               for record in records if record.WhichOneof("record_type") == "history"]
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                            for item in record.summary.update})
    return run_id, history, summary
