"""A small, pure model of how Grafana 11 evaluates a provisioned alert rule, to test the rules'
queries and thresholds against a real InfluxDB without a Grafana.

Per evaluation at ``now``: each InfluxDB query runs with ``$timeFilter`` = the rule's relative
time range ending at ``now`` (as absolute times, which is what Grafana sends) and ``now()`` =
``now``; every series becomes one dimension labelled by its tags; ``reduce`` turns each into
one number (``dropNN``: nulls and NaN dropped, nothing left = no value); ``math`` evaluates
``$X`` expressions joined on identical labels; ``threshold`` compares, and with an
``unloadEvaluator`` (recovery threshold) a dimension that is already Pending or Alerting stays
so until the recovery condition holds. The ``for`` duration then moves a dimension Normal ->
Pending -> Alerting, and back to Normal as soon as the condition is false.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud.influx import InfluxHTTP

Labels = frozenset[tuple[str, str]]
Values = dict[Labels, float]

_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "last": lambda v: v[-1],
    "sum": math.fsum,
    "mean": lambda v: math.fsum(v) / len(v),
    "max": max,
    "min": min,
    "count": lambda v: float(len(v)),
}
_EVALUATORS: dict[str, Callable[[float, list[float]], bool]] = {
    "gt": lambda x, p: x > p[0],
    "lt": lambda x, p: x < p[0],
    "gte": lambda x, p: x >= p[0],
    "lte": lambda x, p: x <= p[0],
    "within_range": lambda x, p: p[0] < x < p[1],
    "outside_range": lambda x, p: x < p[0] or x > p[1],
}
_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: a / b if b else math.nan,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_DURATION = re.compile(r"(\d+)([smh])")


def duration_ms(text: str) -> int:
    """``5m`` -> 300 000."""
    match = _DURATION.fullmatch(text)
    assert match is not None, text
    return int(match.group(1)) * {"s": 1_000, "m": 60_000, "h": 3_600_000}[match.group(2)]


def run_query(
    influx: InfluxHTTP, query: str, *, now_ms: int, from_s: int, to_s: int
) -> dict[Labels, list[float | None]]:
    """The series Grafana gets for one InfluxQL query evaluated at ``now_ms``."""
    start, end = now_ms - from_s * 1000, now_ms - to_s * 1000
    text = query.replace("$timeFilter", f"time >= {start}ms AND time <= {end}ms")
    text = text.replace("now()", f"{now_ms}ms")
    out: dict[Labels, list[float | None]] = {}
    for series in influx.query(text):
        (value_col,) = [c for c in series.columns if c != "time"]
        at = series.columns.index(value_col)
        out[frozenset(series.tags.items())] = [row[at] for row in series.values]
    return out


def _reduce(series: dict[Labels, list[float | None]], reducer: str) -> Values:
    out: Values = {}
    for labels, values in series.items():
        kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if kept:
            out[labels] = _REDUCERS[reducer](kept)
    return out


def _math(expression: str, variables: Mapping[str, Values]) -> Values:
    tree = ast.parse(re.sub(r"\$(\w+)", r"\1", expression), mode="eval").body
    names = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})
    # Dimensions present in every referenced result (Grafana joins on identical labels).
    common = set.intersection(*(set(variables[n]) for n in names))

    def value(node: ast.expr, labels: Labels) -> float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return variables[node.id][labels]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](value(node.left, labels), value(node.right, labels))
        if isinstance(node, ast.Compare):
            (op,), (right,) = node.ops, node.comparators
            return float(_CMPOPS[type(op)](value(node.left, labels), value(right, labels)))
        raise AssertionError(f"unsupported math: {expression}")

    return {labels: value(tree, labels) for labels in common}


def _threshold(model: dict[str, Any], values: Values, loaded: set[Labels]) -> Values:
    (condition,) = model["conditions"]
    fire = condition["evaluator"]
    unload = condition.get("unloadEvaluator")
    out: Values = {}
    for labels, x in values.items():
        if unload is not None and labels in loaded:
            # Grafana inverts the recovery condition: still firing until it holds.
            out[labels] = float(not _EVALUATORS[unload["type"]](x, unload["params"]))
        else:
            out[labels] = float(_EVALUATORS[fire["type"]](x, fire["params"]))
    return out


def evaluate_condition(
    influx: InfluxHTTP, rule: dict[str, Any], *, now_ms: int, loaded: set[Labels]
) -> tuple[Values, dict[str, Values]]:
    """The condition's value per dimension (non-zero = firing) and every step's result."""
    results: dict[str, Values] = {}
    raw: dict[str, dict[Labels, list[float | None]]] = {}
    for step in rule["data"]:
        ref, model = step["refId"], step["model"]
        if step["datasourceUid"] != "__expr__":
            rel = step["relativeTimeRange"]
            raw[ref] = run_query(
                influx, model["query"], now_ms=now_ms, from_s=rel["from"], to_s=rel["to"]
            )
        elif model["type"] == "reduce":
            assert model["settings"]["mode"] == "dropNN"
            results[ref] = _reduce(raw[model["expression"]], model["reducer"])
        elif model["type"] == "math":
            results[ref] = _math(model["expression"], results)
        elif model["type"] == "threshold":
            results[ref] = _threshold(model, results[model["expression"]], loaded)
        else:
            raise AssertionError(f"unsupported expression type {model['type']}")
    return results[rule["condition"]], results


@dataclass
class RuleRun:
    """Successive evaluations of one rule, keeping each dimension's state like Grafana does."""

    influx: InfluxHTTP
    rule: dict[str, Any]
    states: dict[Labels, tuple[str, int]] = field(default_factory=dict)

    def evaluate(self, now_ms: int) -> dict[str, str]:
        """Evaluate at ``now_ms``; returns ``{dimension: "Normal"|"Pending"|"Alerting"}`` for
        the dimensions the condition produced (dimension = its labels, ``k=v,...``)."""
        hold = duration_ms(self.rule["for"])
        loaded = {labels for labels, (state, _) in self.states.items() if state != "Normal"}
        condition, _ = evaluate_condition(self.influx, self.rule, now_ms=now_ms, loaded=loaded)
        new: dict[Labels, tuple[str, int]] = {}
        for labels, value in condition.items():
            state, since = self.states.get(labels, ("Normal", now_ms))
            if not value:
                new[labels] = ("Normal", now_ms)
            elif state == "Normal":
                new[labels] = ("Alerting" if hold == 0 else "Pending", now_ms)
            elif state == "Pending" and now_ms - since >= hold:
                new[labels] = ("Alerting", since)
            else:
                new[labels] = (state, since)
        self.states = new
        return {dimension(labels): state for labels, (state, _) in new.items()}


def dimension(labels: Labels) -> str:
    """Labels as ``k=v,k=v`` (sorted), for readable assertions."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels))
