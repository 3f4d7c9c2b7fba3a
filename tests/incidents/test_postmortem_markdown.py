"""The post-incident review draft's escaping, property-tested against an independent
CommonMark parser (markdown-it-py): whatever a person typed into a title, a note or the
review, it reads back as exactly that text and never changes the document's structure."""

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from incidents.services.postmortem import md_block, md_code, md_inline

# Markdown's own characters, often, among any other printable text (control characters
# and lone surrogates cannot be typed into the admin's fields in the first place).
MARKUP = [*"#|`*_[]<>&;!-+=.)(~\\ \t0123456789aZ:/", "&amp;", "&#x41;", "```", "\n"]
USER_TEXT = st.lists(
    st.one_of(
        st.sampled_from(MARKUP),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=40,
).map("".join)
BUDGET = settings(max_examples=300, deadline=None, database=None)
PARSER = MarkdownIt("commonmark").enable("table")


def one_line(text: str) -> str:
    return " ".join(text.split())


def inline_text(token) -> str:
    assert {child.type for child in token.children} <= {"text", "hardbreak"}, token.children
    return "".join("\n" if c.type == "hardbreak" else c.content for c in token.children)


def structure(tokens) -> list[str]:
    return [token.type for token in tokens if token.type != "inline"]


@BUDGET
@given(USER_TEXT)
def test_user_text_stays_inside_its_table_cell(text):
    tokens = PARSER.parse(f"| Event | Who |\n|---|---|\n| {md_inline(text)} | erin |\n")
    cells = [tokens[i + 1] for i, t in enumerate(tokens) if t.type == "td_open"]
    assert len(cells) == 2
    assert inline_text(cells[0]) == one_line(text)
    assert inline_text(cells[1]) == "erin"


@BUDGET
@given(USER_TEXT)
def test_user_text_stays_one_list_item_and_one_heading(text):
    item = PARSER.parse(f"- {md_inline(text)}\n")
    expected = ["bullet_list_open", "list_item_open", "paragraph_open"]
    expected += ["paragraph_close", "list_item_close", "bullet_list_close"]
    if one_line(text):
        assert structure(item) == expected
        assert inline_text(item[3]) == one_line(text)
    heading = PARSER.parse(f"# Incident #7: {md_inline(text)}\n")
    assert structure(heading) == ["heading_open", "heading_close"]
    assert inline_text(heading[1]) == f"Incident #7: {one_line(text)}".strip()


@BUDGET
@given(USER_TEXT)
def test_multi_line_text_stays_paragraphs_of_the_same_lines(text):
    tokens = PARSER.parse(md_block(text, empty="(empty)") + "\n")
    assert set(structure(tokens)) <= {"paragraph_open", "paragraph_close"}
    lines = [one_line(line) for line in text.splitlines() if line.strip()]
    read = [inline_text(t) for t in tokens if t.type == "inline"]
    assert "\n".join(read) == ("\n".join(lines) if lines else "(empty)")


@BUDGET
@given(USER_TEXT.filter(lambda t: "\r" not in t))
def test_an_output_cannot_close_its_code_block(text):
    tokens = PARSER.parse(md_code(text) + "\n\nafter\n")
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].content == text + "\n"
    assert structure(tokens)[-2:] == ["paragraph_open", "paragraph_close"]
