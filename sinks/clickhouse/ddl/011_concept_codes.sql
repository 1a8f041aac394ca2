-- Concept codes (issue 14): note_nlp fills note_nlp_concept_id / note_nlp_source_concept_id from the
-- site's OMOP CONCEPT table, joined on the SNOMED CT and RadLex codes of the lexicon's concepts.
--
-- concept: OMOP CDM 5.4 CONCEPT, empty until the site loads its vocabulary (Athena download). While it
-- is empty, or has no row for a code, the ids stay 0, as the CDM asks for unmapped concepts.
CREATE TABLE IF NOT EXISTS {db}.concept
(
    concept_id Int64,
    concept_name String,
    domain_id LowCardinality(String),
    vocabulary_id LowCardinality(String),
    concept_class_id LowCardinality(String),
    standard_concept Nullable(String),
    concept_code String,
    valid_start_date Date,
    valid_end_date Date,
    invalid_reason Nullable(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (vocabulary_id, concept_code, concept_id);

-- concept_codes: a copy of processors/nlp/lexicon/codes.json (the data; a test keeps the two equal).
-- preference: 1 SNOMED, 2 RadLex (the code note_nlp reports first).
CREATE OR REPLACE VIEW {db}.concept_codes AS
SELECT concept, vocabulary_id, concept_code, preference
FROM VALUES('concept String, vocabulary_id String, concept_code String, preference UInt8',
    ('aortic_aneurysm', 'SNOMED', '67362008', 1),
    ('atelectasis', 'SNOMED', '46621007', 1),
    ('atelectasis', 'RadLex', 'RID28493', 2),
    ('bronchiectasis', 'SNOMED', '12295008', 1),
    ('cardiomegaly', 'SNOMED', '8186001', 1),
    ('cholelithiasis', 'SNOMED', '235919008', 1),
    ('consolidation', 'SNOMED', '95436008', 1),
    ('consolidation', 'RadLex', 'RID43255', 2),
    ('copd', 'SNOMED', '13645005', 1),
    ('cystic_fibrosis', 'SNOMED', '190905008', 1),
    ('emphysema', 'SNOMED', '87433001', 1),
    ('fracture', 'SNOMED', '125605004', 1),
    ('fracture', 'RadLex', 'RID4650', 2),
    ('hemothorax', 'SNOMED', '31892009', 1),
    ('hiatal_hernia', 'SNOMED', '84089009', 1),
    ('lymphadenopathy', 'SNOMED', '30746006', 1),
    ('pericardial_effusion', 'SNOMED', '373945007', 1),
    ('pleural_effusion', 'SNOMED', '60046008', 1),
    ('pleural_effusion', 'RadLex', 'RID34539', 2),
    ('pneumomediastinum', 'SNOMED', '16838000', 1),
    ('pneumonia', 'SNOMED', '233604007', 1),
    ('pneumonia', 'RadLex', 'RID5350', 2),
    ('pneumothorax', 'SNOMED', '36118008', 1),
    ('pneumothorax', 'RadLex', 'RID5352', 2),
    ('pulmonary_edema', 'SNOMED', '19242006', 1),
    ('pulmonary_edema', 'RadLex', 'RID4866', 2),
    ('pulmonary_embolism', 'SNOMED', '59282003', 1),
    ('pulmonary_hypertension', 'SNOMED', '70995007', 1),
    ('sarcoidosis', 'SNOMED', '31541009', 1),
    ('tuberculosis', 'SNOMED', '56717001', 1));

-- note_nlp of 004 with the concept ids, and rs_source_code: the concept's preferred code
-- ("SNOMED:233604007"; '' when the lexicon has none), present with or without a concept table.
CREATE OR REPLACE VIEW {db}.note_nlp AS
SELECT
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version, f.processed_time, f.finding_idx),
                   0x7FFFFFFFFFFFFFFF)) AS note_nlp_id,
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version), 0x7FFFFFFFFFFFFFFF)) AS note_id,
    0 AS section_concept_id,
    substringUTF8(r.text, greatest(toInt64(f.start) - 60, 0) + 1,
                  toInt64(f.end) - greatest(toInt64(f.start) - 60, 0) + 60) AS snippet,
    toString(f.start) AS offset,
    f.text AS lexical_variant,
    toInt64(coalesce(m.standard_id, 0)) AS note_nlp_concept_id,
    toInt64(coalesce(m.source_id, 0)) AS note_nlp_source_concept_id,
    concat('radstream ', f.nlp_version) AS nlp_system,
    toDate(f.processed_time) AS nlp_date,
    f.processed_time AS nlp_datetime,
    if(f.negated OR f.uncertain OR f.hypothetical OR f.experiencer != 'patient', 'N', 'Y') AS term_exists,
    if(f.historical, 'past', 'present') AS term_temporal,
    concat('negated=', if(f.negated, 'yes', 'no'),
           ',subject=', f.experiencer,
           ',certainty=', if(f.uncertain AND f.certainty = 'definite', 'uncertain', f.certainty),
           ',hypothetical=', if(f.hypothetical, 'yes', 'no'),
           ',historical=', if(f.historical, 'yes', 'no'),
           ',section=', f.section,
           if(f.laterality = '', '', concat(',laterality=', f.laterality)),
           if(f.severity = '', '', concat(',severity=', f.severity)),
           if(f.change = '', '', concat(',change=', f.change)),
           if(f.size_mm IS NULL, '', concat(',size_mm=', toString(f.size_mm)))) AS term_modifiers,
    f.concept AS rs_concept, f.category AS rs_category, f.site AS rs_site, f.accession AS rs_accession,
    f.report_version AS rs_version, f.patient_id AS rs_patient_id, f.study_instance_uid AS rs_study_instance_uid,
    coalesce(m.source_code, '') AS rs_source_code
FROM {db}.findings_latest AS f
LEFT JOIN {db}.reports_latest AS r ON r.site = f.site AND r.accession = f.accession
LEFT JOIN
(
    -- per lexicon concept: its preferred code (SNOMED before RadLex), and the ids of its codes in the
    -- site's concept table: the first valid one (source), the first valid standard one (standard)
    SELECT c.concept AS concept,
           argMin(concat(c.vocabulary_id, ':', c.concept_code), c.preference) AS source_code,
           argMinIf(k.concept_id, c.preference, k.concept_id != 0) AS source_id,
           argMinIf(k.concept_id, c.preference, k.standard_concept = 'S') AS standard_id
    FROM {db}.concept_codes AS c
    LEFT JOIN
    (
        SELECT concept_id, vocabulary_id, concept_code, standard_concept FROM {db}.concept FINAL
        WHERE coalesce(invalid_reason, '') = ''
    ) AS k ON k.vocabulary_id = c.vocabulary_id AND k.concept_code = c.concept_code
    GROUP BY c.concept
) AS m ON m.concept = f.concept;
