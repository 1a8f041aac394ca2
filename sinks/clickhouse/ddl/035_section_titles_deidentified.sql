-- Privacy (session 17): a section's title was the header as the original text had it, so a qualified header
-- ("ADDENDUM (01/17/2024 by Dr. Smith)", "ADDENDUM #2") reached sections and sections_latest with a real
-- name and a real date. Since then the NLP agent and the backfill keep a title only when it is a bare
-- header word ("FINDINGS", "Impression") and give any other header the section's name ("addendum")
-- (streams/handlers.py, section_title). This brings the rows written before into line with that rule.
-- Only sections has a title: findings.section and the other tables hold the section's name.
--
-- A title is kept when it is empty (no header), equals the section's name, or is a bare header word: its
-- normalised form (processors.nlp.matching.normalize: lower case, the tokens \w+ or one sign other than
-- a blank or '-', joined by one blank, a typographic apostrophe read as ') is a title of that section in
-- the splitter's vocabulary. {section_titles} is that vocabulary, filled in from
-- processors/nlp/sections/headers.json when the migration runs (sinks/clickhouse/migrate.py, DATA), not
-- a copy of it. SQL reads tokens as Python does for ASCII text (but for \v and \x1c-\x1f, blanks to
-- Python and signs here: such a title is replaced); a title with any other character is replaced
-- (lower() and re2's \w and \s are ASCII only, so no such title could be read as a header word that
-- Python would not). What SQL cannot check: the live rule also replaces a bare header word that the
-- de-identification changed in the text; here such a title (a word of the header vocabulary itself) is
-- kept.
--
-- mutations_sync = 2: the migration is recorded only after the rewrite is done (on every replica).
-- Idempotent: a replaced title equals its name and is not selected again.
-- A running cluster: `db migrate --cluster` creates the schema only and does not run this; its DBA runs the
-- statement that `python -m sinks.clickhouse.migrate --cluster NAME --database DB 35` prints (on
-- sections_local, ON CLUSTER; docs/operations.md, "ClickHouse cluster layout").
ALTER TABLE {db}.sections
UPDATE title = name
WHERE title != '' AND title != name
  AND NOT (match(replaceAll(title, '’', ''''), '^[\\x00-\\x7F]*$')
           AND {section_titles}[arrayStringConcat(
                   extractAll(lower(replaceAll(title, '’', '''')), '\\w+|[^\\w\\s-]'), ' ')] = name)
SETTINGS mutations_sync = 2;
