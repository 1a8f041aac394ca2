-- Full-text search (issue 16). Without an index, a search for a word reads and decompresses the text of
-- every row its cheap filters leave, also when no report holds the word. A text (inverted) index of the
-- lower-cased text's 3-grams lets the engine skip the granules that lack one of the word's 3-grams. The
-- web app searches `lowerUTF8(text) LIKE lowerUTF8('%word%')`, a form the index serves
-- (radstream/web/queries.py); sizes and times in docs/benchmarks.md. Text indexes need ClickHouse >= 26.2.
ALTER TABLE {db}.report_search ADD INDEX IF NOT EXISTS ix_text lowerUTF8(text) TYPE text(tokenizer = ngrams(3));

ALTER TABLE {db}.report_search MATERIALIZE INDEX ix_text SETTINGS mutations_sync = 2;
