"""The end-to-end assertions are only as good as the parser that reads /metrics: test it first."""

import math

import pytest

from promtext import parse

EXPOSITION = r'''# HELP loopwatch_callback_duration_seconds Wall time of one loop callback.
# TYPE loopwatch_callback_duration_seconds histogram
loopwatch_callback_duration_seconds_bucket{service="svc",pid="10",loop="0",le="0.1"} 5
loopwatch_callback_duration_seconds_bucket{service="svc",pid="10",loop="0",le="0.25"} 6
loopwatch_callback_duration_seconds_bucket{service="svc",pid="10",loop="0",le="1"} 7
loopwatch_callback_duration_seconds_bucket{service="svc",pid="10",loop="0",le="+Inf"} 7
loopwatch_callback_duration_seconds_sum{service="svc",pid="10",loop="0"} 0.75
loopwatch_callback_duration_seconds_count{service="svc",pid="10",loop="0"} 7
loopwatch_callback_duration_seconds_bucket{service="svc",pid="11",loop="0",le="0.1"} 2
loopwatch_callback_duration_seconds_bucket{service="svc",pid="11",loop="0",le="0.25"} 2
loopwatch_callback_duration_seconds_bucket{service="svc",pid="11",loop="0",le="1"} 2
loopwatch_callback_duration_seconds_bucket{service="svc",pid="11",loop="0",le="+Inf"} 2
loopwatch_callback_duration_seconds_sum{service="svc",pid="11",loop="0"} 1e-3
loopwatch_callback_duration_seconds_count{service="svc",pid="11",loop="0"} 2
# TYPE loopwatch_callbacks_total counter
loopwatch_callbacks_total{service="svc",pid="10",loop="0",callback="Task.__step of f() at \"a b\\c.py\":3\nx, y={z}"} 42 1700000000000
loopwatch_agent_rings 2
weird_value NaN
'''


def test_reads_labels_and_values():
    m = parse(EXPOSITION)
    assert m.types["loopwatch_callback_duration_seconds"] == "histogram"
    (rings,) = m.samples("loopwatch_agent_rings")
    assert rings.labels == {} and rings.value == 2
    assert math.isnan(m.samples("weird_value")[0].value)


def test_unescapes_label_values_with_commas_braces_quotes_and_newlines():
    (s,) = parse(EXPOSITION).samples("loopwatch_callbacks_total")
    assert s.labels["callback"] == 'Task.__step of f() at "a b\\c.py":3\nx, y={z}'
    assert s.labels["pid"] == "10" and s.value == 42


def test_groups_histogram_series_by_labels_without_le():
    m = parse(EXPOSITION)
    hs = {h.labels["pid"]: h for h in m.histograms("loopwatch_callback_duration_seconds")}
    assert set(hs) == {"10", "11"}
    h = hs["10"]
    assert h.labels == {"service": "svc", "pid": "10", "loop": "0"}
    assert h.buckets == {0.1: 5, 0.25: 6, 1.0: 7, math.inf: 7}
    assert h.sum == 0.75 and h.count == 7
    assert h.count_above(0.1) == 2
    assert hs["11"].count_above(0.1) == 0 and hs["11"].sum == 0.001


def test_filters_histograms_by_label():
    m = parse(EXPOSITION)
    (h,) = m.histograms("loopwatch_callback_duration_seconds", pid="11")
    assert h.count == 2
    assert m.histograms("loopwatch_callback_duration_seconds", pid="12") == []


def test_le_is_compared_as_a_number_not_a_string():
    m = parse('h_bucket{le="2.5e-01"} 1\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 3\n')
    (h,) = m.histograms("h")
    assert h.count_le(0.25) == 1 and h.count_above(0.25) == 2


@pytest.mark.parametrize(
    "bad",
    [
        'm{a="x} 1',          # unterminated value
        'm{a=x} 1',           # unquoted value
        'm{a="\\q"} 1',       # unknown escape
        'm{a="x" b="y"} 1',   # missing comma
        'm{a="x"}',           # no value
        'm 1 2 3',            # too many fields
        'm{a="1",a="2"} 1',   # duplicate label
    ],
)
def test_rejects_malformed_lines(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_asking_for_a_bucket_bound_that_is_not_exposed_is_an_error():
    (h,) = parse('h_bucket{le="0.25"} 1\nh_bucket{le="+Inf"} 3\n').histograms("h")
    with pytest.raises(ValueError, match="no bucket le=0.1"):
        h.count_above(0.1)
