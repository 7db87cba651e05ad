"""Pure generation: a campaign's variants -> one Iterable email template that renders,
for each recipient, the variant in the profile field `lf_assignments.<campaign key>`.

Shape (variant B and C differ from the control A; keys sorted, nested for portability):

    {{#ifEq lf_assignments.[cmp-1] "B"}}B's content{{else}}{{#ifEq lf_assignments.[cmp-1] "C"}}
    C's content{{else}}A's content{{/ifEq}}{{/ifEq}}

(one line in reality). Only `#ifEq`/`else` are used: they never fail a send when the
field is missing, and the control sits in the final `else`, so a recipient without
an assignment (or with an unknown one) gets the control. Subject and preheader follow
the same rule. A part where every variant equals the control is emitted as is.

Marketer content is opaque Handlebars, embedded byte for byte; only the seams
between it and our tags are treated, because Handlebars' lexer and its "standalone
line" whitespace rule look across them (see `_join`, `_as_alone`). The result: each
recipient gets exactly what their variant's content renders to on its own. One known
exception: content whose very first (last) characters are whitespace other than
spaces, tabs and line feeds (a no-break space, a lone CR) with no line feed among
them, directly before (after) a block tag alone on its line, keeps that tag's line
break (rendered alone, Handlebars would drop it).

Each piece of content is parsed on its own first with the real Handlebars parser, so
content that would escape its branch (a stray `{{/ifEq}}`, a top-level `{{else}}`, an
unclosed block) is rejected with the variant and the parser's message.

A shared layout marks each block's place with `<!-- lf_block:name -->`; the layout's
text is kept as written and each slot gets its own `#ifEq` chain.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from liftstack_shared.handlebars import ParseResult

ASSIGNMENTS_FIELD = "lf_assignments"
# A named content block's place in a shared layout: an HTML comment, so the layout
# stays valid HTML and valid Handlebars on its own.
SLOT_RE = re.compile(r"<!--\s*lf_block:\s*([A-Za-z0-9_.-]+)\s*-->")
MAX_KEY_LENGTH = 200
MAX_VARIANTS = 100

# Handlebars path segments that may be written without brackets. Anything else
# (`cmp-123`, keys with spaces or dots, literals like `true`) goes in `[...]`.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_SEGMENTS = frozenset({"true", "false", "null", "undefined", "this"})


class Variant(BaseModel):
    """One variant's content. For a non-control variant, a part left out (None) is the
    control's; in a layout, a block left out is the control's."""

    key: str = Field(description="The value liftstack writes into lf_assignments.<campaign>")
    subject: str | None = None
    preheader: str | None = None
    html: str | None = Field(default=None, description="Whole email body (no layout)")
    blocks: dict[str, str] = Field(default_factory=dict, description="Named blocks filling the layout's slots")


class TemplateSpec(BaseModel):
    campaign_key: str
    control: str = Field(description="Key of the control variant (rendered when unassigned)")
    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)
    layout: str | None = Field(
        default=None,
        description="Shared HTML with slots written as <!-- lf_block:name -->; variants "
        "then give `blocks` instead of `html`",
    )
    name: str | None = Field(default=None, description="Iterable template name")


class GeneratedTemplate(BaseModel):
    campaign_key: str
    name: str
    subject: str
    preheader: str
    html: str
    content_hash: str


@dataclass(frozen=True)
class Problem:
    variant: str | None  # None: the campaign, the layout or the spec as a whole
    part: str | None  # "subject", "preheader", "html", "block <name>", "layout", "key"
    message: str

    def __str__(self) -> str:
        where = [f'variant "{self.variant}"'] if self.variant is not None else []
        where += [self.part] if self.part else []
        return f"{': '.join(where)}: {self.message}" if where else self.message


class ContentError(Exception):
    """The spec can't be turned into a safe template; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Parser(Protocol):
    async def parse(self, template: str) -> ParseResult:
        """Raise (with Handlebars' message) unless `template` parses and compiles."""
        ...


# --- keys ---------------------------------------------------------------------------


def _key_problem(key: str, forbidden: str) -> str | None:
    if not key:
        return "must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"must be at most {MAX_KEY_LENGTH} characters"
    for ch in key:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return "must not contain control characters"
        if ch in forbidden:
            return f"must not contain {ch!r}"
    return None


def campaign_key_problem(key: str) -> str | None:
    # Inside a `[...]` segment, `]` ends the segment and `\` escapes; Handlebars.js
    # accepts `\]` but other implementations may not, so both are refused.
    return _key_problem(key, "]\\")


def variant_key_problem(key: str) -> str | None:
    # The key is a "..." string literal: `"` would end it and `\` escapes.
    return _key_problem(key, '"\\')


def assignment_path(campaign_key: str) -> str:
    """`lf_assignments.cmp_1` or `lf_assignments.[cmp-1]`."""
    if _PLAIN_SEGMENT.fullmatch(campaign_key) and campaign_key not in _RESERVED_SEGMENTS:
        return f"{ASSIGNMENTS_FIELD}.{campaign_key}"
    return f"{ASSIGNMENTS_FIELD}.[{campaign_key}]"


def client_template_id(workspace_id: str, campaign_key: str) -> str:
    """Stable, short, and safe in a URL whatever the keys contain."""
    digest = hashlib.sha256(f"{workspace_id}\x00{campaign_key}".encode()).hexdigest()
    return f"liftstack-{digest[:40]}"


def default_name(campaign_key: str) -> str:
    return f"liftstack {campaign_key}"


# --- resolving a spec into per-variant texts ------------------------------------------


@dataclass
class Resolved:
    """Every piece of text the template is made of, with the control's content filled
    in where a variant left a part out."""

    spec: TemplateSpec
    order: list[str]  # non-control variant keys, sorted: branch order
    subject: dict[str, str] = field(default_factory=dict)
    preheader: dict[str, str] = field(default_factory=dict)
    html: dict[str, str] = field(default_factory=dict)  # without a layout
    layout_parts: list[str] = field(default_factory=list)  # text, slot, text, slot, ..., text
    blocks: dict[str, dict[str, str]] = field(default_factory=dict)  # slot -> variant -> text


def resolve(spec: TemplateSpec) -> Resolved:
    problems: list[Problem] = []
    if msg := campaign_key_problem(spec.campaign_key):
        problems.append(Problem(None, "campaign key", msg))
    seen: set[str] = set()
    for v in spec.variants:
        if msg := variant_key_problem(v.key):
            problems.append(Problem(v.key, "key", msg))
        if v.key in seen:
            problems.append(Problem(v.key, "key", "is used by more than one variant"))
        seen.add(v.key)
    by_key = {v.key: v for v in spec.variants}
    control = by_key.get(spec.control)
    if control is None:
        problems.append(Problem(None, "control", f'"{spec.control}" is not one of the variants'))
    if problems or control is None:
        raise ContentError(problems)

    order = sorted(k for k in by_key if k != spec.control)
    out = Resolved(spec=spec, order=order)
    if control.subject is None:
        problems.append(Problem(control.key, "subject", "the control needs a subject"))
    for v in spec.variants:
        out.subject[v.key] = v.subject if v.subject is not None else (control.subject or "")
        out.preheader[v.key] = v.preheader if v.preheader is not None else (control.preheader or "")

    if spec.layout is None:
        if control.html is None:
            problems.append(Problem(control.key, "html", "the control needs an html body"))
        for v in spec.variants:
            if v.blocks:
                problems.append(Problem(v.key, "blocks", "blocks need a layout; use html"))
            out.html[v.key] = v.html if v.html is not None else (control.html or "")
    else:
        parts = SLOT_RE.split(spec.layout)
        slots = parts[1::2]
        out.layout_parts = parts
        if not slots:
            problems.append(Problem(None, "layout", "has no slot; mark each with <!-- lf_block:name -->"))
        for v in spec.variants:
            if v.html is not None:
                problems.append(Problem(v.key, "html", "with a layout, give blocks instead"))
            for name in sorted(set(v.blocks) - set(slots)):
                problems.append(Problem(v.key, f"block {name}", "the layout has no such slot"))
        for name in dict.fromkeys(slots):
            if name not in control.blocks:
                problems.append(Problem(control.key, f"block {name}", "the control must fill it"))
            out.blocks[name] = {v.key: v.blocks.get(name, control.blocks.get(name, "")) for v in spec.variants}
    if problems:
        raise ContentError(problems)
    return out


async def validate(resolved: Resolved, parser: Parser) -> dict[str, str]:
    """Parse each piece of marketer content on its own, with the real parser.

    Returns each content text (by value) as it is to be embedded: see `_as_alone`."""
    spec = resolved.spec
    checks: list[tuple[str | None, str, str]] = []
    for v in spec.variants:
        if v.subject is not None:
            checks.append((v.key, "subject", v.subject))
        if v.preheader is not None:
            checks.append((v.key, "preheader", v.preheader))
        if v.html is not None:
            checks.append((v.key, "html", v.html))
        for name, text in sorted(v.blocks.items()):
            checks.append((v.key, f"block {name}", text))
    problems: list[Problem] = []
    if spec.layout is not None:
        try:
            await parser.parse(spec.layout)
        except Exception as exc:  # noqa: BLE001 - the parser's message is the point
            problems.append(Problem(None, "layout", _one_line(str(exc))))
    embedded: dict[str, str] = {"": ""}  # the control's defaults for absent parts
    for variant, part, text in checks:
        try:
            parsed = await parser.parse(text)
        except Exception as exc:  # noqa: BLE001 - the parser's message is the point
            problems.append(Problem(variant, part, _one_line(str(exc))))
            continue
        embedded[text] = _as_alone(text, parsed)
    if problems:
        raise ContentError(problems)
    return embedded


def _one_line(message: str) -> str:
    return " | ".join(line for line in message.splitlines() if line.strip())


def _as_alone(text: str, parsed: ParseResult) -> str:
    """`text` as it is to be embedded in a block: if Handlebars' standalone rule strips
    spaces at the very start/end of the text because they touch the template's edge
    (e.g. the spaces in `"  {{! note }}"`), strip them already, since inside a block
    the rule sees no edge there. (With a newline in those spaces the rule treats them
    the same inside a block, so they are kept.)"""
    first, last = parsed.first, parsed.last
    if first is not None and _edge_stripped(first.original, first.value) and text.startswith(first.original):
        text = first.value + text[len(first.original) :]
    if (
        last is not None
        and last is not first
        and _edge_stripped(last.original, last.value)
        and text.endswith(last.original)
    ):
        text = text[: len(text) - len(last.original)] + last.value
    return text


def _edge_stripped(original: str, value: str) -> bool:
    return original != value and not original.strip() and "\n" not in original


# --- building -------------------------------------------------------------------------
# A template under construction is a list of items: text (the marketer's content or
# layout, opaque) and our own tags, whose `~` flags `_join` sets where it treats a seam.


@dataclass
class _Text:
    text: str
    content: bool = True  # a variant's content (False: the shared layout)


@dataclass
class _Tag:
    body: str  # between the braces: '#ifEq lf_assignments.[c] "B"', 'else', '/ifEq', '!'
    strip_left: bool = False
    strip_right: bool = False

    def render(self) -> str:
        left = "~" if self.strip_left else ""
        right = "~" if self.strip_right else ""
        return "{{" + left + self.body + right + "}}"


_Item = _Text | _Tag


def _chain(path: str, order: list[str], texts: dict[str, str], control: str) -> list[_Item]:
    """Nested `#ifEq` for every variant whose text differs from the control's, the
    control in the innermost `else`."""
    differing = [k for k in order if texts[k] != texts[control]]
    items: list[_Item] = []
    for key in differing:
        items += [_Tag(f'#ifEq {path} "{key}"'), _Text(texts[key]), _Tag("else")]
    items.append(_Text(texts[control]))
    items += [_Tag("/ifEq") for _ in differing]
    return items


def _join(items: list[_Item]) -> str:
    """Concatenate, treating each seam between text and one of our tags so the text
    renders as it does alone and our tags never change what is around them:

    - text ending in `\\` or `{` (or starting with `}`) would merge with our braces
      (`\\{{` escapes a tag, `{{{` opens a raw one): a space keeps them apart and a `~`
      on our tag removes that space again;
    - multi-line content ending (starting) with a tag of its own gets a newline and a
      `~`: to Handlebars' standalone-line rule the content then ends (starts) at a
      line break, as when rendered alone, and the `~` removes the newline. (Single-line
      text, e.g. a subject, has no standalone lines once `_as_alone` trimmed it.);
    - text ending (starting) with whitespace gets an empty comment `{{!}}` between it
      and our tag, so our tag is never "standalone" and never strips that whitespace.

    Every `~` and every standalone tag therefore only strips whitespace added here.
    """
    parts = [i for i in items if not (isinstance(i, _Text) and i.text == "")]
    rendered: list[str] = []
    for i, item in enumerate(parts):
        if isinstance(item, _Tag):
            continue
        before = parts[i - 1] if i > 0 else None
        after = parts[i + 1] if i + 1 < len(parts) else None
        text = item.text
        edge_tags = item.content and "\n" in text
        if isinstance(before, _Tag):
            if text.startswith("}"):
                before.strip_right, text = True, " " + text
            elif text.startswith("{{") and edge_tags:
                before.strip_right, text = True, "\n" + text
            elif text[0].isspace():
                text = "{{!}}" + text
        if isinstance(after, _Tag):
            if text.endswith(("\\", "{")):
                after.strip_left, text = True, text + " "
            elif text.endswith("}}") and edge_tags:
                after.strip_left, text = True, text + "\n"
            elif text[-1].isspace():
                text = text + "{{!}}"
        parts[i] = _Text(text, item.content)
    for item in parts:
        rendered.append(item.render() if isinstance(item, _Tag) else item.text)
    return "".join(rendered)


def build(resolved: Resolved, embedded: dict[str, str]) -> GeneratedTemplate:
    """`embedded`: from `validate`, each content text as it is to be embedded."""
    spec = resolved.spec
    path = assignment_path(spec.campaign_key)
    ctl = spec.control

    def chain(texts: dict[str, str]) -> list[_Item]:
        return _chain(path, resolved.order, {k: embedded[t] for k, t in texts.items()}, ctl)

    def whole(texts: dict[str, str]) -> str:
        if len(set(texts.values())) == 1:
            return texts[ctl]  # every variant has the same: the text itself, untouched
        return _join(chain(texts))

    if spec.layout is None:
        html = whole(resolved.html)
    else:
        items: list[_Item] = []
        for i, piece in enumerate(resolved.layout_parts):
            if i % 2 == 0:
                items.append(_Text(piece, content=False))
                continue
            slot = chain(resolved.blocks[piece])
            if len(slot) == 1:
                # Every variant shares this block. Empty comments around it give it
                # the same seams as a block that varies, so it renders the same.
                slot = [_Tag("!"), *slot, _Tag("!")]
            items += slot
        html = _join(items)
    name = spec.name or default_name(spec.campaign_key)
    subject = whole(resolved.subject)
    preheader = whole(resolved.preheader)
    return GeneratedTemplate(
        campaign_key=spec.campaign_key,
        name=name,
        subject=subject,
        preheader=preheader,
        html=html,
        content_hash=content_hash(name, subject, preheader, html),
    )


def content_hash(name: str, subject: str, preheader: str, html: str) -> str:
    canonical = json.dumps(
        {"name": name, "subject": subject, "preheader": preheader, "html": html},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def generate(spec: TemplateSpec, parser: Parser) -> GeneratedTemplate:
    """Validate (structure, keys, each piece of content) and build. Deterministic:
    the same spec always gives byte-identical output (variant order doesn't matter)."""
    resolved = resolve(spec)
    embedded = await validate(resolved, parser)
    generated = build(resolved, embedded)
    for part_name in ("subject", "preheader", "html"):
        try:
            await parser.parse(getattr(generated, part_name))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a content error
            # Each piece parsed alone, so only a slot marker inside a Handlebars tag or
            # comment of the layout can get here.
            where = "layout" if part_name == "html" and spec.layout is not None else part_name
            raise ContentError(
                [
                    Problem(
                        None,
                        where,
                        "the generated template does not parse (is a slot marker inside a "
                        f"Handlebars tag or comment?): {_one_line(str(exc))}",
                    )
                ]
            ) from None
    return generated
