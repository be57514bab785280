"""shiftboss._histograms adds to the series the SDK's `Histogram.record` would, and leaves to
`record` what it cannot do the same: each case recorded both ways into two meter
providers, and what their readers collect compared."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import attach, detach
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics._internal import _disable_meter_configurator
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shiftboss._histograms import Histograms

BUCKETS = (0.001, 0.01, 0.1, 1.0)
ETL = ("etl", "default")
ML = ("ml", "gpu")
WHERE = {ETL: {"shiftboss.pool": "etl", "shiftboss.queue": "default"}, ML: {"shiftboss.pool": "ml", "shiftboss.queue": "gpu"}}
#: Passes of (series, value): a series seen for the first time, then again, then another.
PASSES = [
    [(ETL, 0.0005), (ETL, 0.02)],
    [(ETL, 0.2), (ML, 5.0), (ETL, 0.0)],
    [(ML, 0.003), (ETL, 0.05)],
    # a sum whose value depends on the order it is added in
    [(ETL, v) for v in (0.1, 0.2, 0.3, 1e-16, 0.7, 0.11, 0.13)] + [(ML, 0.25)],
]
SAMPLED = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def points(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
    """What the reader collects of the histogram, series by series, without timestamps."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    found = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for p in metric.data.data_points:
                    found.append(
                        (
                            metric.name,
                            tuple(sorted(p.attributes.items())),
                            p.count,
                            p.sum,
                            p.min,
                            p.max,
                            tuple(p.bucket_counts),
                            tuple(p.explicit_bounds),
                            len(p.exemplars),
                        )
                    )
    return sorted(found)


def record_pass(short: bool, histograms: Histograms, values: list[tuple[tuple[str, str], float]]) -> None:
    """One pass of (series, value), the short way or through `record` one by one."""
    if short:
        histograms.record_many((key, WHERE[key], value) for key, value in values)
    else:
        for key, value in values:
            histograms.instrument.record(value, WHERE[key])


def recorded(
    short: bool,
    passes: list[list[tuple[tuple[str, str], float]]] = PASSES,
    collect_between: bool = False,
    **provider: Any,
) -> tuple[list[list[tuple[Any, ...]]], Histograms]:
    """Record `passes` one way; what each reader collects (after every pass, if asked)."""
    temporality = provider.pop("temporality", None)
    limit = provider.pop("cardinality_limit", None)
    readers = [
        InMemoryMetricReader(
            preferred_temporality={Histogram: temporality} if temporality else None,
            cardinality_limits={Histogram: limit} if limit else None,
        )
        for _ in range(provider.pop("readers", 1))
    ]
    made = MeterProvider(metric_readers=readers, **provider)
    histograms = Histograms(made.get_meter("tests").create_histogram("latency", unit="s", explicit_bucket_boundaries_advisory=BUCKETS))
    seen: list[list[tuple[Any, ...]]] = []
    for values in passes:
        record_pass(short, histograms, values)
        if collect_between:
            seen.extend(points(r) for r in readers)
    seen.extend(points(r) for r in readers)
    made.shutdown()
    return seen, histograms


def same_both_ways(**case: Any) -> Histograms:
    short, histograms = recorded(True, **case)
    sdk, _ = recorded(False, **case)
    assert short == sdk
    assert any(short)  # something was recorded
    return histograms


def test_the_default_reader_takes_the_short_way_to_the_same_series() -> None:
    histograms = same_both_ways()
    assert set(histograms._series) == {ETL, ML}


def test_collections_between_passes_see_the_same_series() -> None:
    assert set(same_both_ways(collect_between=True)._series) == {ETL, ML}


def test_every_reader_gets_every_value() -> None:
    assert set(same_both_ways(readers=2)._series) == {ETL, ML}


def test_a_reader_added_or_removed_between_passes_sees_what_record_gives_it() -> None:
    def run(short: bool) -> list[list[tuple[Any, ...]]]:
        first, later = InMemoryMetricReader(), InMemoryMetricReader()
        made = MeterProvider(metric_readers=[first])
        histograms = Histograms(made.get_meter("tests").create_histogram("latency", explicit_bucket_boundaries_advisory=BUCKETS))
        record_pass(short, histograms, PASSES[0])
        made.add_metric_reader(later)
        record_pass(short, histograms, PASSES[1])
        seen = [points(first)]
        made.remove_metric_reader(first)
        record_pass(short, histograms, PASSES[2])
        seen += [points(first), points(later)]
        made.shutdown()
        return seen

    short, sdk = run(True), run(False)
    assert short == sdk and short[0] and short[2]


def test_a_delta_reader_takes_the_long_way() -> None:
    # A delta collection starts the series afresh: a value added the short way while it
    # does could be lost, so the SDK's locked way is kept.
    histograms = same_both_ways(temporality=AggregationTemporality.DELTA, collect_between=True)
    assert histograms._series == {}


def test_a_view_that_drops_attributes_takes_the_long_way() -> None:
    view = View(instrument_name="latency", attribute_keys={"shiftboss.pool"})
    assert same_both_ways(views=[view])._series == {}


def test_exemplars_offered_take_the_long_way() -> None:
    assert same_both_ways(exemplar_filter=AlwaysOnExemplarFilter())._series == {}


def test_a_sampled_span_in_the_context_takes_the_long_way() -> None:
    token = attach(trace.set_span_in_context(NonRecordingSpan(SAMPLED)))
    try:
        short, _ = recorded(True)
        sdk, _ = recorded(False)
    finally:
        detach(token)
    assert short == sdk and short[0][0][-1] > 0  # exemplars, as record keeps them


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_values_record_refuses_are_refused(bad: float) -> None:
    same_both_ways(passes=[[(ETL, 0.5)], [(ETL, bad), (ETL, 0.25)]])


def test_past_the_cardinality_limit_values_go_where_record_puts_them() -> None:
    many = {(f"p{i}", "q"): {"shiftboss.pool": f"p{i}", "shiftboss.queue": "q"} for i in range(4)}
    WHERE.update(many)
    try:
        passes = [[(key, 0.5) for key in many], [(key, 0.05) for key in many]]
        histograms = same_both_ways(passes=passes, cardinality_limit=2)
    finally:
        for key in many:
            del WHERE[key]
    assert 0 < len(histograms._series) < len(many)  # the overflow series is left to record


def test_a_disabled_meter_records_nothing_either_way() -> None:
    made = MeterProvider(metric_readers=[reader := InMemoryMetricReader()], _meter_configurator=_disable_meter_configurator)
    Histograms(made.get_meter("tests").create_histogram("latency")).record_many([(ETL, WHERE[ETL], 0.5)])
    assert points(reader) == []


def test_an_api_histogram_is_recorded_by_record() -> None:
    calls: list[tuple[float, Any]] = []

    class Counting:
        def record(self, value: float, attributes: Any = None) -> None:
            calls.append((value, attributes))

    Histograms(Counting()).record_many([(ETL, WHERE[ETL], 0.5), (ML, WHERE[ML], 1.5)])
    assert calls == [(0.5, WHERE[ETL]), (1.5, WHERE[ML])]

