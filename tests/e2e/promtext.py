"""A small parser for the Prometheus text exposition format 0.0.4, for tests.

    metrics = parse(text)
    metrics.samples("loopwatch_callbacks_total", pid="123")      -> [Sample, ...]
    metrics.histograms("loopwatch_loop_lag_seconds", pid="123")  -> [Histogram, ...]

It parses `# TYPE` lines, sample lines `name{label="value",...} value [timestamp]` with escaped
label values (\\\\, \\", \\n) and the special values +Inf, -Inf and NaN. It raises ValueError on a
line it does not understand, so a malformed exposition fails the test that reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Histogram:
    """One histogram series: its labels (without `le`), buckets as {upper bound: cumulative count}."""

    name: str
    labels: dict[str, str]
    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = math.nan
    count: float = math.nan

    def count_le(self, bound: float) -> float:
        """Cumulative count of the bucket whose upper bound is exactly `bound`."""
        try:
            return self.buckets[float(bound)]
        except KeyError:
            raise ValueError(f"{self.name}{self.labels} has no bucket le={bound}; "
                             f"bounds: {sorted(self.buckets)}") from None

    def count_above(self, bound: float) -> float:
        """Observations greater than `bound`: count(le=+Inf) - count(le=bound)."""
        return self.count_le(math.inf) - self.count_le(bound)


def _matches(labels: dict[str, str], want: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in want.items())


class Metrics:
    def __init__(self, samples: list[Sample], types: dict[str, str]):
        self.all = samples
        self.types = types

    def samples(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.all if s.name == name and _matches(s.labels, labels)]

    def histograms(self, name: str, **labels: str) -> list[Histogram]:
        """The histogram series of family `name` whose labels include `labels`."""
        series: dict[tuple, Histogram] = {}

        def entry(sample: Sample) -> Histogram:
            key_labels = {k: v for k, v in sample.labels.items() if k != "le"}
            key = tuple(sorted(key_labels.items()))
            if key not in series:
                series[key] = Histogram(name, key_labels)
            return series[key]

        for s in self.all:
            if not _matches(s.labels, labels):
                continue
            if s.name == name + "_bucket":
                entry(s).buckets[parse_value(s.labels["le"])] = s.value
            elif s.name == name + "_sum":
                entry(s).sum = s.value
            elif s.name == name + "_count":
                entry(s).count = s.value
        return list(series.values())

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.all if s.name.startswith(name) and label in s.labels}


def parse_value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    return float(text)


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Parses `{a="x",b="y"}` starting at line[pos] == '{'; returns the labels and the index after '}'."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        eq = line.find("=", pos)
        if eq < 0:
            raise ValueError(f"label without '=': {line!r}")
        key = line[pos:eq].strip()
        if not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "a").isalnum():
            raise ValueError(f"bad label name {key!r}: {line!r}")
        pos = eq + 1
        if pos >= len(line) or line[pos] != '"':
            raise ValueError(f"label value not quoted: {line!r}")
        pos += 1
        value = []
        while True:
            if pos >= len(line):
                raise ValueError(f"unterminated label value: {line!r}")
            c = line[pos]
            if c == "\\":
                if pos + 1 >= len(line) or line[pos + 1] not in _ESCAPES:
                    raise ValueError(f"bad escape in label value: {line!r}")
                value.append(_ESCAPES[line[pos + 1]])
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                value.append(c)
                pos += 1
        if key in labels:
            raise ValueError(f"duplicate label {key!r}: {line!r}")
        labels[key] = "".join(value)
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        else:
            raise ValueError(f"expected ',' or '}}' after label {key!r}: {line!r}")


def parse(text: str) -> Metrics:
    samples: list[Sample] = []
    types: dict[str, str] = {}
    for raw in text.split("\n"):  # the format ends lines at \n only; splitlines() also splits at \r, \x85, ...
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        end = 0
        while end < len(line) and (line[end].isalnum() or line[end] in "_:"):
            end += 1
        name = line[:end]
        if not name or name[0].isdigit():
            raise ValueError(f"bad metric name: {raw!r}")
        labels: dict[str, str] = {}
        if end < len(line) and line[end] == "{":
            labels, end = _parse_labels(line, end)
        rest = line[end:].split()
        if len(rest) not in (1, 2):
            raise ValueError(f"expected 'value [timestamp]' after the labels: {raw!r}")
        samples.append(Sample(name, labels, parse_value(rest[0])))
    return Metrics(samples, types)
