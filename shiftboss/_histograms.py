"""Histogram records on the server's hot path, made without the general machinery of the
SDK's `Histogram.record` where it would decide nothing.

Every dispatched run costs the scheduler two histogram records (its latencies since
creation and since its scheduled start). For each, `Histogram.record` checks the value,
builds a Measurement that cleans its attributes again (a copy, and abstract-class checks
for each value), asks the exemplar filter, copies the attributes once more and hashes
them (sorted, with more abstract-class checks) to find the series, and only then adds the
value under the series' lock. On the telemetry bench (bench/test_telemetry_bench.py) that
was a fifth of what tracing and metrics cost the server per run.

`Histograms.record_many` adds the values to the series `Histogram.record` would, and takes
the short way only where the outcome is the same:

- the instrument is the SDK's histogram, enabled;
- each value is finite and not negative (the callers' promise, checked);
- the exemplar filter offers none of these values to a reservoir: it is AlwaysOff, or
  TraceBased with no sampled span in the current context (the default, on the dispatch
  path);
- for every metric reader, one view matches the instrument, it keeps every attribute and
  is not reset by a delta collection while values are added, and the series of these
  attributes is an explicit-bucket histogram that exists already.

The values of a pass for one series are then added as `aggregate` adds each, in their
order, with the series' lock taken once for them all.

The series is found the general way the first time (one `record`), then kept while the
provider's readers are the same: a reader added or removed sends values the general way
again, and a series past the cardinality limit always goes that way.
Anything else goes through `Histogram.record`.

tests/unit/test_histograms.py holds the short way against `record`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Hashable, Iterable, Mapping
from time import time_ns
from typing import Any

from opentelemetry.context import get_current
from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOffExemplarFilter, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics._internal.instrument import _Histogram

__all__ = ["Histograms"]

#: Exemplar filters whose answer depends on the context alone.
_BY_CONTEXT = (AlwaysOffExemplarFilter, TraceBasedExemplarFilter)


class Histograms:
    """Records into one histogram, the short way where it makes no difference."""

    def __init__(self, instrument: Any) -> None:
        self.instrument = instrument
        self._short = type(instrument) is _Histogram
        #: Each series found, by the caller's key for its attributes: (the reader storages
        #: it was found in, its aggregation in each).
        self._series: dict[Hashable, tuple[Any, list[Any]]] = {}

    def record_many(self, values: Iterable[tuple[Hashable, Mapping[str, str], float]]) -> None:
        """Record each (key, attributes, value): `key` stands for `attributes` (the same key,
        the same attributes), whose values are str."""
        record = self.instrument.record
        if not self._short or not self.instrument._is_enabled():
            for _, attributes, value in values:
                record(value, attributes)
            return
        context = get_current()
        consumer = self.instrument._measurement_consumer
        exemplars = consumer._sdk_config.exemplar_filter
        now = time_ns()
        if type(exemplars) not in _BY_CONTEXT or exemplars.should_sample(0.0, now, None, context):
            for _, attributes, value in values:
                record(value, attributes)
            return
        storages = consumer._reader_storages
        # The values of this pass for each series found, in their order.
        found: dict[Hashable, tuple[list[Any], list[float]]] = {}
        for key, attributes, value in values:
            group = found.get(key)
            if group is None:
                series = self._current(key, storages)
                if series is None:
                    record(value, attributes)
                    self._find(key, attributes, storages)
                    continue
                group = found[key] = (series, [])
            if 0.0 <= value < math.inf:
                group[1].append(value)
            else:
                record(value, attributes)  # refused there, with its warning
        for series, added in found.values():
            if added:
                for aggregation in series:
                    _add(aggregation, added)

    def _current(self, key: Hashable, storages: Any) -> list[Any] | None:
        """The series of `key` in every reader, if found while these readers were the
        provider's (a cumulative series stays the reader's for good)."""
        found = self._series.get(key)
        return found[1] if found is not None and found[0] is storages else None

    def _find(self, key: Hashable, attributes: Mapping[str, str], storages: Any) -> None:
        """Keep the series `attributes` went to in every reader, where the short way may
        add to them."""
        self._series.pop(key, None)
        hashed = _hash_attributes(dict(attributes))
        found = []
        for storage in storages.values():
            matches = storage._instrument_view_instrument_matches.get(self.instrument)
            if not matches or len(matches) != 1:
                return
            match = matches[0]
            aggregation = match._attributes_aggregation.get(hashed)
            if (
                match._view._attribute_keys is not None
                or match._reset_on_collect
                or type(aggregation) is not _ExplicitBucketHistogramAggregation
            ):
                return
            found.append(aggregation)
        self._series[key] = (storages, found)


def _add(aggregation: _ExplicitBucketHistogramAggregation, values: list[float]) -> None:
    """What `aggregation.aggregate` does for each value (none offered as an exemplar), with
    its lock taken once: each value counted in its bucket and added to the sum, in order,
    and the least and greatest kept."""
    boundaries = aggregation._boundaries
    with aggregation._lock:
        counts = aggregation._value
        if counts is None:
            counts = aggregation._value = aggregation._get_empty_bucket_counts()
        total = aggregation._sum
        for value in values:
            total += value
            counts[bisect_left(boundaries, value)] += 1
        aggregation._sum = total
        if aggregation._record_min_max:
            aggregation._min = min(aggregation._min, min(values))
            aggregation._max = max(aggregation._max, max(values))
