"""Generation: what the template looks like and what each recipient gets, rendered
with the real Handlebars renderer."""

from __future__ import annotations

import random
from typing import Any

import pytest

from liftstack_shared.handlebars import HandlebarsRenderer
from liftstack_templates.generate import (
    ContentError,
    GeneratedTemplate,
    TemplateSpec,
    Variant,
    assignment_path,
    client_template_id,
    generate,
)

CAMPAIGN = "cmp-123"


def spring_sale() -> TemplateSpec:
    return TemplateSpec(
        campaign_key=CAMPAIGN,
        control="A",
        variants=[
            Variant(
                key="A",
                subject="Spring sale, {{firstName}}",
                preheader="Up to 30% off",
                html="<h1>Hello {{firstName}}</h1>\n<p>Everything 30% off.</p>\n",
            ),
            Variant(
                key="B",
                subject='{{defaultIfEmpty firstName "Friend"}}, 30% off today',
                html="<h1>Only today</h1>\n{{#if vip}}\n<p>VIP early access</p>\n{{/if}}\n",
            ),
            Variant(key="C", preheader="Don't miss it", html='<p>C & "quotes" {{{banner}}}</p>'),
        ],
    )


def assigned(variant: str | None, **fields: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {"firstName": "Ann", **fields}
    if variant is not None:
        profile["lf_assignments"] = {CAMPAIGN: variant, "other-campaign": "C"}
    return profile


async def render(
    renderer: HandlebarsRenderer, generated: GeneratedTemplate, profile: dict[str, Any]
) -> tuple[str, str, str]:
    return (
        await renderer.render(generated.subject, profile),
        await renderer.render(generated.preheader, profile),
        await renderer.render(generated.html, profile),
    )


async def test_each_recipient_gets_exactly_their_variant(renderer: HandlebarsRenderer) -> None:
    generated = await generate(spring_sale(), renderer)
    a = ("Spring sale, Ann", "Up to 30% off", "<h1>Hello Ann</h1>\n<p>Everything 30% off.</p>\n")
    assert await render(renderer, generated, assigned("A")) == a
    assert await render(renderer, generated, assigned("B", vip=True)) == (
        "Ann, 30% off today",
        "Up to 30% off",
        "<h1>Only today</h1>\n<p>VIP early access</p>\n",
    )
    assert await render(renderer, generated, assigned("B", firstName="")) == (
        "Friend, 30% off today",
        "Up to 30% off",
        "<h1>Only today</h1>\n",
    )
    assert await render(renderer, generated, assigned("C", banner="<img src=x>")) == (
        "Spring sale, Ann",
        "Don't miss it",
        '<p>C & "quotes" <img src=x></p>',
    )


async def test_no_assignment_unknown_assignment_and_other_campaigns_get_the_control(
    renderer: HandlebarsRenderer,
) -> None:
    generated = await generate(spring_sale(), renderer)
    a = await render(renderer, generated, assigned("A"))
    assert await render(renderer, generated, assigned(None)) == a
    assert await render(renderer, generated, {"firstName": "Ann", "lf_assignments": {}}) == a
    assert (
        await render(
            renderer,
            generated,
            {
                "firstName": "Ann",
                "lf_assignments": {"cmp-1234": "B", "other": "C"},
            },
        )
        == a
    )
    assert await render(renderer, generated, assigned("Z")) == a
    # A field of an unexpected type is no reason to fail a send either.
    assert await render(renderer, generated, {"firstName": "Ann", "lf_assignments": "B"}) == a


async def test_template_shape(renderer: HandlebarsRenderer) -> None:
    generated = await generate(spring_sale(), renderer)
    assert generated.subject == (
        '{{#ifEq lf_assignments.[cmp-123] "B"}}{{defaultIfEmpty firstName "Friend"}}, 30% off'
        " today{{else}}Spring sale, {{firstName}}{{/ifEq}}"
    )
    # C has the control's subject: no branch for it. Only B's preheader is the same as A's.
    assert generated.preheader == ('{{#ifEq lf_assignments.[cmp-123] "C"}}Don\'t miss it{{else}}Up to 30% off{{/ifEq}}')
    assert generated.html.startswith('{{#ifEq lf_assignments.[cmp-123] "B"}}<h1>Only today')
    assert generated.html.count("{{#ifEq") == 2
    assert generated.html.endswith("{{/ifEq}}{{/ifEq}}")
    helpers = {h for h in ("#ifContainsStr", "#lt", "#gt", "#eq", "#neq") if h in generated.html}
    assert helpers == set()


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("spring_sale", "lf_assignments.spring_sale"),
        ("cmp-123", "lf_assignments.[cmp-123]"),
        ("spring sale.v2", "lf_assignments.[spring sale.v2]"),
        ("true", "lf_assignments.[true]"),
        ("this", "lf_assignments.[this]"),
        ("123", "lf_assignments.[123]"),
        ('say "hi"', 'lf_assignments.[say "hi"]'),
        ("a}}b{{", "lf_assignments.[a}}b{{]"),
    ],
)
async def test_campaign_keys_use_bracket_segments_when_needed(
    renderer: HandlebarsRenderer, key: str, path: str
) -> None:
    assert assignment_path(key) == path
    spec = TemplateSpec(
        campaign_key=key,
        control="A",
        variants=[
            Variant(key="A", subject="a", html="A"),
            Variant(key="B", subject="b", html="B"),
        ],
    )
    generated = await generate(spec, renderer)
    assert path in generated.html
    got = await renderer.render_many(
        generated.html,
        [
            {"lf_assignments": {key: "B"}},
            {"lf_assignments": {key: "A"}},
            {},
        ],
    )
    assert got == ["B", "A", "A"]


@pytest.mark.parametrize("variant_key", ["b-1", "B 2", "}}", "{{else}}", "it's", "ünï ☃", "]"])
async def test_odd_variant_keys(renderer: HandlebarsRenderer, variant_key: str) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        variants=[
            Variant(key="A", subject="a", html="A"),
            Variant(key=variant_key, subject="b", html="B"),
        ],
    )
    generated = await generate(spec, renderer)
    got = await renderer.render_many(generated.html, [{"lf_assignments": {"c": variant_key}}, {}])
    assert got == ["B", "A"]


@pytest.mark.parametrize(
    ("campaign", "variant", "expected"),
    [
        ("c]1", "A", "campaign key: must not contain ']'"),
        ("c\\1", "A", "campaign key: must not contain '\\\\'"),
        ("", "A", "campaign key: must not be empty"),
        ("c\n1", "A", "campaign key: must not contain control characters"),
        ("c", 'A"', 'variant "A"": key: must not contain \'"\''),
        ("c", "A\\", "variant \"A\\\": key: must not contain '\\\\'"),
        ("c", "", 'variant "": key: must not be empty'),
    ],
)
async def test_keys_that_cannot_be_written_safely_are_rejected(
    renderer: HandlebarsRenderer, campaign: str, variant: str, expected: str
) -> None:
    spec = TemplateSpec(
        campaign_key=campaign,
        control=variant,
        variants=[
            Variant(key=variant, subject="s", html="h"),
        ],
    )
    with pytest.raises(ContentError) as info:
        await generate(spec, renderer)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("html", "fragment"),
    [
        ("{{#if vip}}<p>VIP</p>", "Expecting"),  # unclosed block
        ("<p>x</p>{{else}}<p>y</p>", "INVERSE"),  # {{else}} at top level
        ("<p>x</p>{{/if}}", "OPEN_ENDBLOCK"),  # stray close
        ('{{/ifEq}}{{else}}{{#ifEq a "b"}}', "OPEN_ENDBLOCK"),  # trying to escape its branch
        ("Hi {{ firstName", "Parse error"),  # unparseable mustache
        ("{{#if a}}x{{/each}}", "doesn't match"),
        ("{{!-- never closed", "error"),
    ],
)
async def test_content_that_would_break_the_template_is_rejected_naming_the_variant(
    renderer: HandlebarsRenderer, html: str, fragment: str
) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        variants=[
            Variant(key="A", subject="s", html="ok"),
            Variant(key="B-2", html=html),
        ],
    )
    with pytest.raises(ContentError) as info:
        await generate(spec, renderer)
    [problem] = info.value.problems
    assert (problem.variant, problem.part) == ("B-2", "html")
    assert fragment in problem.message
    assert str(info.value).startswith('variant "B-2": html: ')


async def test_every_problem_is_reported_at_once(renderer: HandlebarsRenderer) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        variants=[
            Variant(key="A", subject="{{#if x}}", html="ok"),
            Variant(key="B", subject="fine", preheader="{{/if}}", html="{{else}}"),
        ],
    )
    with pytest.raises(ContentError) as info:
        await generate(spec, renderer)
    assert [(p.variant, p.part) for p in info.value.problems] == [
        ("A", "subject"),
        ("B", "preheader"),
        ("B", "html"),
    ]


@pytest.mark.parametrize(
    ("spec_args", "expected"),
    [
        ({"control": "X"}, 'control: "X" is not one of the variants'),
        (
            {"variants": [Variant(key="A", subject="s", html="h"), Variant(key="A", html="x")]},
            'variant "A": key: is used by more than one variant',
        ),
        ({"variants": [Variant(key="A", html="h")]}, 'variant "A": subject: the control needs a subject'),
        ({"variants": [Variant(key="A", subject="s")]}, 'variant "A": html: the control needs an html'),
        (
            {"variants": [Variant(key="A", subject="s", html="h", blocks={"x": "y"})]},
            'variant "A": blocks: blocks need a layout',
        ),
    ],
)
async def test_structural_problems(renderer: HandlebarsRenderer, spec_args: dict[str, Any], expected: str) -> None:
    args: dict[str, Any] = {
        "campaign_key": "c",
        "control": "A",
        "variants": [Variant(key="A", subject="s", html="h")],
        **spec_args,
    }
    with pytest.raises(ContentError) as info:
        await generate(TemplateSpec(**args), renderer)
    assert expected in str(info.value)


async def test_deterministic_and_independent_of_variant_order(
    renderer: HandlebarsRenderer,
) -> None:
    spec = spring_sale()
    first = await generate(spec, renderer)
    again = await generate(TemplateSpec.model_validate_json(spec.model_dump_json()), renderer)
    shuffled_variants = list(spec.variants)
    random.Random(7).shuffle(shuffled_variants)
    shuffled = await generate(spec.model_copy(update={"variants": shuffled_variants}), renderer)
    assert first == again == shuffled
    assert first.content_hash == again.content_hash
    changed = await generate(spec.model_copy(update={"name": "Spring sale"}), renderer)
    assert changed.content_hash != first.content_hash


@pytest.mark.parametrize(
    "html",
    [
        "ends with a backslash \\",
        "ends with a brace {",
        "} starts with a brace",
        "\\\\two backslashes\\\\",
        "\n\nleading and trailing newlines\n\n",
        "  spaces  ",
        "{{#if vip}}\nVIP\n{{/if}}",
        "  {{#if vip}}\n  VIP\n  {{/if}}  ",
        "{{! note }}\n",
        "\\{{firstName}} is escaped",
        "}}{{firstName}}{",
        "{{firstName}}",
        "",
        "{{~firstName~}}  ",
        "{{{{raw}}}} {{/ifEq}} {{{{/raw}}}}",
    ],
)
async def test_seams_keep_content_byte_for_byte(renderer: HandlebarsRenderer, html: str) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        variants=[
            Variant(key="A", subject="s", html="control"),
            Variant(key="B", html=html),
            Variant(key="C", html="other"),
        ],
    )
    generated = await generate(spec, renderer)
    profile = {"firstName": "Ann", "vip": True, "lf_assignments": {"c": "B"}}
    assert await renderer.render(generated.html, profile) == await renderer.render(html, profile)
    for other in ("A", "C"):
        profile["lf_assignments"] = {"c": other}
        assert await renderer.render(generated.html, profile) == ("control" if other == "A" else "other")


async def test_identical_parts_are_not_wrapped(renderer: HandlebarsRenderer) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        variants=[
            Variant(key="A", subject="Same {{firstName}}", html="<p>{{firstName}}</p>"),
            Variant(key="B", subject="Same {{firstName}}", html="<p>B</p>"),
        ],
    )
    generated = await generate(spec, renderer)
    assert generated.subject == "Same {{firstName}}"
    assert generated.preheader == ""


LAYOUT = (
    "<html><body>\n"
    "<div class=hero><!-- lf_block:hero --></div>\n"
    "<p>Hi {{firstName}},</p>\n"
    "<!--lf_block:body-->\n"
    "<footer>{{#if vip}}VIP{{/if}}</footer>\n"
    "</body></html>"
)


def layout_spec() -> TemplateSpec:
    return TemplateSpec(
        campaign_key="cmp-9",
        control="ctl",
        layout=LAYOUT,
        variants=[
            Variant(key="ctl", subject="S", blocks={"hero": "<img src=a.png>", "body": "Body A"}),
            Variant(key="new-hero", blocks={"hero": '<img src=b.png alt="{{firstName}}">'}),
            Variant(
                key="both", blocks={"hero": "{{#if vip}}\n<b>VIP hero</b>\n{{/if}}", "body": "Body {{firstName}} \\"}
            ),
        ],
    )


async def test_layout_with_named_blocks(renderer: HandlebarsRenderer) -> None:
    generated = await generate(layout_spec(), renderer)

    def page(hero: str, body: str, vip: str = "") -> str:
        return (
            f"<html><body>\n<div class=hero>{hero}</div>\n<p>Hi Ann,</p>\n{body}\n"
            f"<footer>{vip}</footer>\n</body></html>"
        )

    def profile(variant: str | None, **fields: Any) -> dict[str, Any]:
        p: dict[str, Any] = {"firstName": "Ann", **fields}
        if variant:
            p["lf_assignments"] = {"cmp-9": variant}
        return p

    outputs = await renderer.render_many(
        generated.html,
        [
            profile("ctl"),
            profile(None),
            profile("new-hero"),
            profile("both", vip=True),
            profile("both"),
        ],
    )
    assert outputs == [
        page("<img src=a.png>", "Body A"),
        page("<img src=a.png>", "Body A"),
        page('<img src=b.png alt="Ann">', "Body A"),
        page("<b>VIP hero</b>\n", "Body Ann \\", vip="VIP"),
        page("", "Body Ann \\"),
    ]
    # The body block differs only for "both": one branch there.
    assert generated.html.count('"both"') == 2
    assert generated.html.count('"new-hero"') == 1


@pytest.mark.parametrize(
    ("layout", "blocks", "expected"),
    [
        ("<p>no slots</p>", {}, "layout: has no slot"),
        (LAYOUT, {"hero": "x"}, 'variant "ctl": block body: the control must fill it'),
        (
            LAYOUT,
            {"hero": "x", "body": "y", "sidebar": "z"},
            'variant "ctl": block sidebar: the layout has no such slot',
        ),
        ("{{#if a}}<!-- lf_block:hero -->", {"hero": "x"}, "layout: Parse error"),
        (LAYOUT, {"hero": "{{#if a}}", "body": "y"}, 'variant "ctl": block hero: Parse error'),
    ],
)
async def test_layout_problems(
    renderer: HandlebarsRenderer, layout: str, blocks: dict[str, str], expected: str
) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="ctl",
        layout=layout,
        variants=[
            Variant(key="ctl", subject="s", blocks=blocks),
        ],
    )
    with pytest.raises(ContentError) as info:
        await generate(spec, renderer)
    assert expected in str(info.value)


async def test_slot_marker_inside_a_tag_is_reported(renderer: HandlebarsRenderer) -> None:
    spec = TemplateSpec(
        campaign_key="c",
        control="A",
        layout='{{x "<!-- lf_block:b -->"}}',
        variants=[Variant(key="A", subject="s", blocks={"b": "x"}), Variant(key="B", blocks={"b": "y"})],
    )
    with pytest.raises(ContentError, match="slot marker"):
        await generate(spec, renderer)


def test_client_template_id_is_stable_and_distinct() -> None:
    one = client_template_id("ws-1", "cmp-1")
    assert one == client_template_id("ws-1", "cmp-1")
    assert one != client_template_id("ws-2", "cmp-1")
    assert one != client_template_id("ws-1", "cmp-2")
    assert one.startswith("liftstack-") and one.isascii() and len(one) <= 64
