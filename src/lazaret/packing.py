"""Records cross every shuffle as one compressed ``bytes`` value, not as a dict.

Why: Beam's local runners (the in-process FnApiRunner, ``multi_processing`` and the portable job service)
group a shuffle by decoding every value into a Python object and holding it in the runner process until
the next stage has read it. A record dict of 1 KB of JSON costs ~10 KB as Python objects there, so the
runner's memory grew ~28 KB per record with the three record-carrying shuffles (spread, join, writers).
A ``bytes`` value is held as it is: pickled and zlib-compressed (the raw line, parsed fields and the
prompt/response sides repeat the same text, which zlib folds) it costs about a third of the JSON line.
Distributed runners shuffle bytes anyway, so this costs them only the (de)compression, ~20 µs a record.

The bytes never leave the pipeline: they are made and read by this module only, never from user files.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any, Iterable, List, Tuple

import apache_beam as beam

_LEVEL = 1  # fastest zlib level: most of the gain (repeated text) for little CPU


def pack(obj: Any) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), _LEVEL)


def unpack(data: bytes) -> Any:
    return pickle.loads(zlib.decompress(data))


def pack_value(kv: Tuple[Any, Any]) -> Tuple[Any, bytes]:
    return kv[0], pack(kv[1])


def unpack_all(values: Iterable[bytes]) -> List[Any]:
    return [unpack(v) for v in values]


class PackedReshuffle(beam.PTransform):
    """``beam.Reshuffle`` whose shuffled values are packed bytes (same elements out)."""

    def expand(self, pcoll):
        return (pcoll
                | "Pack" >> beam.Map(pack)
                | "Reshuffle" >> beam.Reshuffle()
                | "Unpack" >> beam.Map(unpack))
