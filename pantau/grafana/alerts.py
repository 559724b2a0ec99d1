"""Pantau's alert rules, built with grafana-foundation-sdk and written as a Grafana
file-provisioning document (grafana/provisioning/alerting/pantau-alerts.yaml).

Targets Grafana 11 (docker-compose runs 11.4): unified alerting, rule ``for`` durations, and
threshold expressions with a recovery threshold (``unloadEvaluator``; on by default since 10.4,
ignored by older versions, which then use the firing threshold both ways).

Every rule is A = InfluxQL (docs/schema.md), reduced per series to one number, then compared.
Bands come from contract.beds (BOR_HIGH, BOR_CRITICAL, BED_GROUPS), never retyped here."""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.models import alerting as am

from cloud.ingest.freshness_points import FRESH_WITHIN_MIN
from contract.beds import BED_GROUPS, BOR_CRITICAL, BOR_HIGH, BorBand
from pantau.grafana.influxql import DATASOURCE_UID, InfluxQL, bed_group_regex

EXPR = "__expr__"
FOLDER_TITLE = "Pantau"
#: Crowd: fire above this occupancy/capacity ratio ...
CROWD_OVER = 1.0
#: ... and clear only below this one, so a crowd hovering at capacity does not flap.
CROWD_RECOVERED = 0.9
#: Readings a gateway's spool may gain in 15 minutes before it counts as growing.
SPOOL_GROWTH = 100
#: Dead letters per reason in 10 minutes that make a rate worth waking someone for.
DEAD_LETTERS_PER_10_MIN = 10
#: A bed sensor seen in the last hour is silent when the current bucket of this many minutes
#: holds none of its readings for 5 minutes (so it alerts after 5 to 10 minutes of silence).
SILENT_BUCKET_MINUTES = 5
#: A kecamatan alerts when fewer than this share of its bed sensors are fresh (reported within
#: cloud.ingest.freshness_points.FRESH_WITHIN_MIN minutes).
FRESH_SHARE_MIN = 0.8

Reducer = Literal["sum", "mean", "min", "max", "count", "last", "median"]
Op = Literal["gt", "lt"]


def _influx(ref_id: str, query: str, seconds: int) -> alerting.Query:
    return (
        alerting.Query(ref_id)
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(am.RelativeTimeRange(from_val=seconds, to=0))
        .model(InfluxQL(query, ref_id=ref_id))
    )


def _reduce(ref_id: str, of: str, reducer: Reducer = "last") -> alerting.Query:
    return (
        alerting.Query(ref_id)
        .datasource_uid(EXPR)
        .model(
            expr.TypeReduce()
            .ref_id(ref_id)
            .expression(of)
            .reducer(reducer)
            .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
        )
    )


def _math(ref_id: str, expression: str) -> alerting.Query:
    return (
        alerting.Query(ref_id)
        .datasource_uid(EXPR)
        .model(expr.TypeMath().ref_id(ref_id).expression(expression))
    )


def _threshold(
    ref_id: str, of: str, op: Op, value: float, *, recover_below: float | None = None
) -> alerting.Query:
    condition = expr.ExprTypeThresholdConditions().evaluator(
        expr.ExprTypeThresholdConditionsEvaluator().type(op).params([value])
    )
    if recover_below is not None:
        condition = condition.unload_evaluator(
            expr.ExprTypeThresholdConditionsUnloadEvaluator().type("lt").params([recover_below])
        )
    return (
        alerting.Query(ref_id)
        .datasource_uid(EXPR)
        .model(expr.TypeThreshold().ref_id(ref_id).expression(of).conditions([condition]))
    )


def _one_query(
    query: str,
    seconds: int,
    op: Op,
    value: float,
    *,
    reducer: Reducer = "last",
    recover_below: float | None = None,
) -> list[alerting.Query]:
    """The usual rule: A, ``query`` over the last ``seconds``; B, A reduced per series by
    ``reducer``; C, B ``op`` ``value`` (the rule's condition, optionally with a recovery
    threshold)."""
    return [
        _influx("A", query, seconds),
        _reduce("B", "A", reducer),
        _threshold("C", "B", op, value, recover_below=recover_below),
    ]


def _rule(
    uid: str,
    title: str,
    queries: list[alerting.Query],
    *,
    condition: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    labels: dict[str, str] | None = None,
    no_data: Literal["Alerting", "NoData", "OK"],
) -> alerting.Rule:
    rule = (
        alerting.Rule(title)
        .uid(uid)
        .condition(condition)
        .for_val(for_)
        .no_data_state(no_data)
        .exec_err_state("Error")
        .labels({"severity": severity, "team": "dinkes", **(labels or {})})
        .annotations({"summary": summary, "description": description})
        .is_paused(False)
    )
    for query in queries:
        rule = rule.with_query(query)
    return rule


def _bor_query(group: str) -> str:
    regions = '"level" =~ /^(kecamatan|kota)$/ AND "facility" = \'all\''
    if group == "all":
        return (
            f'SELECT last("bor") AS "bor" FROM "bed_rollup" WHERE {regions} AND '
            '"bed_type" = \'all\' AND $timeFilter GROUP BY "level", "code", "name"'
        )
    # Occupied over capacity of the group's bed types: the contract's BOR formula applied to
    # sums, exactly what a group-level rollup would hold.
    return (
        'SELECT sum("occupied") * 100 / sum("capacity") AS "bor" FROM (SELECT '
        'last("occupied") AS "occupied", last("capacity") AS "capacity" FROM "bed_rollup" '
        f'WHERE {regions} AND "bed_type" =~ {bed_group_regex(group)} AND $timeFilter '
        'GROUP BY "level", "code", "name", "bed_type") WHERE $timeFilter '
        'GROUP BY "level", "code", "name"'
    )


def bor_rules() -> list[alerting.Rule]:
    """BOR >= 60 % (high) and >= 80 % (critical), per bed group and region (kecamatan, kota)."""
    rules: list[alerting.Rule] = []
    for group in ("all", *BED_GROUPS):
        for band, bound in ((BorBand.HIGH, BOR_HIGH), (BorBand.CRITICAL, BOR_CRITICAL)):
            beds = "all beds" if group == "all" else f"{group} beds"
            rules.append(
                _rule(
                    f"pantau-bor-{group}-{band.value}",
                    f"BOR {band.value} (>= {bound:g} %): {beds}",
                    [_influx("A", _bor_query(group), 900), _reduce("B", "A")],
                    condition="C",
                    for_="5m",
                    severity="critical" if band is BorBand.CRITICAL else "warning",
                    labels={"bed_group": group, "band": band.value},
                    # A region without beds of this group has no series: nothing to say.
                    no_data="OK",
                    summary=f"BOR of {beds} in {{{{ $labels.name }}}} is "
                    "{{ humanize $values.B.Value }} %",
                    description=f"Occupied / capacity of {beds} in {{{{ $labels.level }}}} "
                    f"{{{{ $labels.name }}}} ({{{{ $labels.code }}}}) is at or above {bound:g} %"
                    f" ({band.value} band of contract.beds).",
                ).with_query(_math("C", f"$B >= {bound:g}"))
            )
    return rules


def crowd_rule() -> alerting.Rule:
    """Crowd over capacity for 5 minutes; clears only below :data:`CROWD_RECOVERED`."""
    return _rule(
        "pantau-crowd-over-capacity",
        "Crowd over health-protocol capacity",
        _one_query(
            'SELECT last("ratio") AS "ratio" FROM "crowd_site" WHERE $timeFilter '
            'GROUP BY "site", "site_name"',
            900,
            "gt",
            CROWD_OVER,
            recover_below=CROWD_RECOVERED,
        ),
        condition="C",
        for_="5m",
        severity="warning",
        summary="{{ $labels.site_name }} is at {{ humanizePercentage $values.B.Value }} "
        "of its capacity",
        description=f"People inside / people allowed above {CROWD_OVER:g} for 5 minutes; "
        f"resolves below {CROWD_RECOVERED:g}.",
        no_data="OK",
    )


def operations_rules() -> list[alerting.Rule]:
    """Gateways offline or spooling, dead letters arriving, bed sensors gone quiet."""
    # Per sensor, not per kecamatan: raw points carry only their sensor and InfluxQL cannot
    # join the registry's places (docs/adr/0028-raw-points-tagged-by-sensor.md). Buckets
    # filled with 0, not "latest older than now() - 10m" over a subquery: InfluxDB applies an
    # outer time condition to the subquery too, so that counted a sensor as silent whenever it
    # had any reading older than the cut.
    silent = (
        'SELECT count("seq") AS "readings" FROM "bed" WHERE $timeFilter '
        f'GROUP BY time({SILENT_BUCKET_MINUTES}m), "sensor" fill(0)'
    )
    return [
        _rule(
            "pantau-ingest-stalled",
            "Ingest stalled",
            _one_query(
                'SELECT sum("readings") AS "readings" FROM "ingest_health" WHERE $timeFilter '
                'GROUP BY "ingester"',
                600,
                "lt",
                1,
                reducer="sum",
            ),
            condition="C",
            for_="5m",
            severity="critical",
            summary="Ingester {{ $labels.ingester }} stored no reading in 10 min",
            description="The ingester runs but stores nothing (InfluxDB refusing, every message "
            "dead-lettered); with no ingest_health point at all the rule is NoData -> "
            "Alerting: the ingester is down or no gateway delivers.",
            no_data="Alerting",
        ),
        _rule(
            "pantau-gateway-offline",
            "Gateway offline",
            _one_query(
                'SELECT last("online") AS "online" FROM "gateway_status" WHERE $timeFilter '
                'GROUP BY "gateway", "site"',
                86400,
                "lt",
                1,
            ),
            condition="C",
            for_="5m",
            severity="warning",
            summary="Gateway {{ $labels.gateway }} at {{ $labels.site }} is offline",
            description="The broker published the gateway's last-will or the gateway said it is "
            "going offline; its spool keeps readings until it is back.",
            no_data="OK",
        ),
        _rule(
            "pantau-spool-growing",
            "Gateway spool growing",
            _one_query(
                'SELECT last("spool_depth") - first("spool_depth") AS "growth" FROM '
                '"gateway_status" WHERE $timeFilter GROUP BY "gateway", "site"',
                900,
                "gt",
                SPOOL_GROWTH,
            ),
            condition="C",
            for_="5m",
            severity="warning",
            summary="Spool of {{ $labels.gateway }} grew by {{ humanize $values.B.Value }} "
            "readings in 15 min",
            description=f"More than {SPOOL_GROWTH} readings joined the gateway's spool in 15 "
            "minutes: it reads sensors but cannot deliver (link, broker or credentials).",
            no_data="OK",
        ),
        _rule(
            "pantau-spool-dropping",
            "Gateway spool dropping readings",
            _one_query(
                'SELECT last("spool_dropped_total") - first("spool_dropped_total") AS '
                '"dropped" FROM "gateway_status" WHERE $timeFilter GROUP BY "gateway", "site"',
                900,
                "gt",
                0,
            ),
            condition="C",
            for_="0s",
            severity="critical",
            summary="{{ $labels.gateway }} dropped {{ humanize $values.B.Value }} readings",
            description="The gateway's spool is full and readings are lost for good.",
            no_data="OK",
        ),
        _rule(
            "pantau-dead-letters-rate",
            "Dead letters arriving",
            _one_query(
                'SELECT sum("count") AS "count" FROM "dead_letter" WHERE $timeFilter '
                'GROUP BY "reason"',
                600,
                "gt",
                DEAD_LETTERS_PER_10_MIN - 1,
                reducer="sum",
            ),
            condition="C",
            for_="0s",
            severity="warning",
            summary="{{ humanize $values.B.Value }} refused in 10 min: {{ $labels.reason }}",
            description=f"At least {DEAD_LETTERS_PER_10_MIN} messages/readings refused in 10 "
            "minutes with this contract.RejectReason; see the dead-letter store.",
            no_data="OK",
        ),
        _rule(
            "pantau-sensor-silent",
            "Bed sensor silent",
            _one_query(silent, 3600, "lt", 1),
            condition="C",
            for_="5m",
            severity="warning",
            summary="Bed sensor {{ $labels.sensor }} has sent no reading for 5-10 min",
            description="A bed sensor seen in the last hour has no reading in the current "
            f"{SILENT_BUCKET_MINUTES}-minute bucket, for 5 minutes (where it is: the registry, "
            "or the sensor_place measurement).",
            no_data="OK",
        ),
        _rule(
            "pantau-region-stale",
            f"Region freshness below {FRESH_SHARE_MIN:.0%}",
            _one_query(
                'SELECT last("share") AS "share" FROM "region_freshness" WHERE "level" = '
                '\'kecamatan\' AND "kind" = \'bed\' AND $timeFilter GROUP BY "code", "name"',
                600,
                "lt",
                FRESH_SHARE_MIN,
            ),
            condition="C",
            for_="5m",
            severity="warning",
            summary="Only {{ humanizePercentage $values.B.Value }} of the bed sensors in "
            f"{{{{ $labels.name }}}} reported in the last {FRESH_WITHIN_MIN} min",
            description=f"Fewer than {FRESH_SHARE_MIN:.0%} of the kecamatan's bed sensors "
            f"(every one the registry lists) reported within {FRESH_WITHIN_MIN} minutes, for 5 "
            "minutes. The ingester writes the share every 10 s (region_freshness); when it "
            "writes nothing, the ingest-stalled alert speaks instead.",
            no_data="OK",
        ),
    ]


def rule_groups() -> list[tuple[str, list[alerting.Rule]]]:
    """(group name, rules): each group is evaluated every minute."""
    return [
        ("pantau-beds", bor_rules()),
        ("pantau-crowds", [crowd_rule()]),
        ("pantau-operations", operations_rules()),
    ]


#: Keys of the SDK's API shape that a provisioning file carries elsewhere (group/folder).
_API_ONLY = ("folderUID", "orgID", "ruleGroup")


def provisioning_document() -> dict[str, object]:
    """The alerting file-provisioning document (``apiVersion: 1``, ``groups``)."""
    from pantau.grafana.render import plain  # noqa: PLC0415 - avoids an import cycle

    groups: list[dict[str, object]] = []
    for name, rules in rule_groups():
        built: list[dict[str, object]] = []
        for rule in rules:
            doc = plain(rule.build())
            if not isinstance(doc, dict):
                raise TypeError("an alert rule serialises to a JSON object")
            kept = {k: v for k, v in doc.items() if k not in _API_ONLY}
            built.append({"uid": kept.pop("uid"), "title": kept.pop("title"), **kept})
        groups.append(
            {"orgId": 1, "name": name, "folder": FOLDER_TITLE, "interval": "1m", "rules": built}
        )
    return {"apiVersion": 1, "groups": groups}
