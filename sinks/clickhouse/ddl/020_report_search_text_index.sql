-- Full-text search (issue 16). A search matched its words with positionCaseInsensitiveUTF8 in every row its
-- cheap filters left: the text of every such granule was read and decompressed, also for a word no report
-- holds. A text (inverted) index of the lower-cased text's 3-grams lets the engine skip the granules that
-- lack one of the word's 3-grams; the web app searches `lowerUTF8(text) LIKE lowerUTF8('%word%')`, which
-- the index serves (radstream/web/queries.py). At 1M reports (bench/warehouse_scale.py store): 114 MB of
-- index beside 179 MB of table, built in 10 s; a word no report holds 198 ms -> 3 ms, common words
-- 250-480 ms -> 200-280 ms (fewer granules, and LIKE on the lower-cased text is cheaper than the
-- case-insensitive search).
ALTER TABLE {db}.report_search ADD INDEX IF NOT EXISTS ix_text lowerUTF8(text) TYPE text(tokenizer = ngrams(3));

ALTER TABLE {db}.report_search MATERIALIZE INDEX ix_text SETTINGS mutations_sync = 2;
