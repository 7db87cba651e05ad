"""The shared Handlebars renderer: Iterable's helpers, errors, concurrency."""

from __future__ import annotations

import asyncio

import pytest

from liftstack_shared.handlebars import HandlebarsError, HandlebarsRenderer


async def test_iterable_helpers(renderer: HandlebarsRenderer) -> None:
    template = (
        '{{#ifEq plan "gold"}}G{{else}}-{{/ifEq}}|{{#eq n 3}}three{{/eq}}|'
        '{{#neq n 3}}not3{{else}}is3{{/neq}}|{{defaultIfEmpty name "friend"}}|'
        '{{#if (eq plan "gold")}}sub{{/if}}'
    )
    outputs = await renderer.render_many(
        template,
        [
            {"plan": "gold", "n": "3", "name": "Ann"},
            {"n": 4, "name": ""},
            {},
        ],
    )
    assert outputs == [
        "G|three|is3|Ann|sub",
        "-||not3|friend|",
        "-||not3|friend|",
    ]


async def test_if_contains_str_fails_on_missing_field_like_iterable(
    renderer: HandlebarsRenderer,
) -> None:
    template = '{{#ifContainsStr tags "vip"}}V{{else}}-{{/ifContainsStr}}'
    assert await renderer.render_many(template, [{"tags": "a,vip"}, {"tags": "a"}]) == ["V", "-"]
    with pytest.raises(HandlebarsError, match="missing"):
        await renderer.render(template, {})


async def test_escaping_brackets_and_standard_helpers(renderer: HandlebarsRenderer) -> None:
    template = (
        "{{name}}|{{{name}}}|{{lf_assignments.[cmp-1]}}|"
        "{{#each items}}{{this}},{{/each}}|{{#with p}}{{q}}{{/with}}|{{#unless x}}u{{/unless}}"
    )
    ctx = {"name": "<b>", "lf_assignments": {"cmp-1": "B"}, "items": [1, 2], "p": {"q": "Q"}}
    assert await renderer.render(template, ctx) == "&lt;b&gt;|<b>|B|1,2,|Q|u"


@pytest.mark.parametrize("bad", ["{{#if x}}open", "{{/if}}", "a {{else}} b", "{{ foo", "{{#if a}}{{/each}}"])
async def test_parse_rejects_broken_templates(renderer: HandlebarsRenderer, bad: str) -> None:
    with pytest.raises(HandlebarsError):
        await renderer.parse(bad)
    with pytest.raises(HandlebarsError):
        await renderer.render(bad, {})


async def test_parse_accepts_valid_template(renderer: HandlebarsRenderer) -> None:
    await renderer.parse("{{#if a}}x{{else}}y{{/if}} {{b}}")


async def test_concurrent_requests_get_their_own_answers(renderer: HandlebarsRenderer) -> None:
    async def one(i: int) -> list[str]:
        return await renderer.render_many("{{n}}-{{#if odd}}o{{/if}}", [{"n": i, "odd": i % 2}])

    results = await asyncio.gather(*(one(i) for i in range(300)))
    assert results == [[f"{i}-{'o' if i % 2 else ''}"] for i in range(300)]


async def test_error_does_not_poison_the_process(renderer: HandlebarsRenderer) -> None:
    with pytest.raises(HandlebarsError):
        await renderer.render("{{#if}", {})
    assert await renderer.render("ok {{x}}", {"x": 1}) == "ok 1"


async def test_missing_node_modules_says_how_to_install(tmp_path) -> None:
    (tmp_path / "render-server.js").write_text("")
    with pytest.raises(HandlebarsError, match="npm ci --prefix shared/handlebars"):
        async with HandlebarsRenderer(directory=tmp_path):
            pass


async def test_dead_process_fails_requests_instead_of_hanging() -> None:
    hb = HandlebarsRenderer()
    await hb.start()
    assert hb._proc is not None
    hb._proc.kill()
    await hb._proc.wait()
    with pytest.raises(HandlebarsError):
        await asyncio.wait_for(hb.render("x", {}), timeout=10)
    await hb.close()
