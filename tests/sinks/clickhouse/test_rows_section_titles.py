"""The sink writes only bare section titles: a message of an older agent (a replay of the findings topic
within its retention) may carry a qualified header with dates and names; the same rule as ddl/035."""

from __future__ import annotations

from processors.nlp.sections import is_bare_title
from sinks.clickhouse.rows import section_title_for_row


def test_a_qualified_header_becomes_the_section_name_and_bare_words_stay() -> None:
    assert section_title_for_row("ADDENDUM (01/17/2024 by Dr. Smith)", "addendum") == "addendum"
    assert section_title_for_row("ADDENDUM #2", "addendum") == "addendum"
    assert section_title_for_row("FINDINGS", "findings") == "FINDINGS"
    assert section_title_for_row("Impression", "impression") == "Impression"
    assert section_title_for_row("", "body") == ""
    # a header word of another section is not this section's bare title
    assert not is_bare_title("IMPRESSION", "findings")
    assert section_title_for_row("IMPRESSION", "findings") == "findings"
