-- findings is sorted by concept first (ddl/012), so the rows of one accession (a report page, the
-- highlights of a result page) sit in every concept's range: a point look-up read the key columns of the
-- whole table. A bloom filter of the accessions of each granule lets the engine skip the granules
-- without it (also under FINAL).
ALTER TABLE {db}.findings ADD INDEX IF NOT EXISTS ix_accession accession TYPE bloom_filter GRANULARITY 1;

ALTER TABLE {db}.findings MATERIALIZE INDEX ix_accession SETTINGS mutations_sync = 2;
