"""`demo bench --variant`: what the option accepts, and what it refuses with the reason."""

from __future__ import annotations

import pytest

from demo.bench.variants import Variant, VariantError, check_unique, parse


def test_a_variant_is_a_name_and_the_variables_its_lane_gets() -> None:
    variant = parse("hops=XRAY_COMMANDS=0,XRAY_LOG_FORMAT=json")
    assert variant == Variant("hops", {"XRAY_COMMANDS": "0", "XRAY_LOG_FORMAT": "json"})
    assert variant.traced
    assert variant.label == "hops (XRAY_COMMANDS=0, XRAY_LOG_FORMAT=json)"


def test_a_variant_with_tracing_off_is_a_plain_lane_however_it_says_no() -> None:
    assert not parse("aa=XRAY_TRACE=0").traced
    assert not parse("aa=XRAY_TRACE=off").traced  # the app's own reading of a yes/no value


def test_a_value_may_hold_an_equals_sign() -> None:
    assert parse("x=OPTS=a=b").env == {"OPTS": "a=b"}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Hops=XRAY_COMMANDS=0", "the name must be"),
        ("=XRAY_COMMANDS=0", "the name must be"),
        ("traced=XRAY_COMMANDS=0", "one of the bench's own modes"),
        ("hops", "is not VAR=VALUE"),
        ("hops=xray_commands=0", "is not VAR=VALUE"),
        ("hops=XRAY_COMMANDS=0,", "is not VAR=VALUE"),
        ("elsewhere=CELERY_BROKER_URL=redis://10.0.0.1", "the lane's own Redis"),
        ("odd=XRAY_COMMANDS=maybe", "XRAY_COMMANDS='maybe' is not a yes/no value"),
        ("odd=XRAY_LOG_FORMAT=xml", "XRAY_LOG_FORMAT='xml': use auto, console or json"),
    ],
)
def test_a_variant_the_bench_cannot_run_is_refused_with_the_reason(text: str, said: str) -> None:
    with pytest.raises(VariantError, match=said):
        parse(text)


def test_two_variants_may_not_share_a_name() -> None:
    check_unique([parse("a=X=1"), parse("b=X=1")])
    with pytest.raises(VariantError, match="given twice"):
        check_unique([parse("a=X=1"), parse("a=X=2")])
