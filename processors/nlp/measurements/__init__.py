"""Size measurements: ``extract_measurements(text, sentences=None)`` and ``attach_measurements(...)``.

Behaviour (rules and cue lists live in ``units.json``):

- Recognised: "6 mm", "1.2cm", "12 millimeters", "1.2 x 0.8 cm", "3 x 2 x 1 cm", "1.2 cm x 8 mm",
  "2 by 3 cm", "5-mm". A number without a unit takes the next unit written ("1.2 x 0.8 cm").
  Values are converted to millimetres (floats, rounded to 0.001 mm).
- Ranges "measuring 4-5 mm" / "4 to 5 mm": one dimension, ``dims_mm=(5.0,)``, ``max_mm=5.0`` and
  ``min_mm=4.0`` (the upper bound is the size; ranges are not extra dimensions).
- Prior values: "previously 4 mm, now 6 mm", "6 mm, previously 4 mm", "6 mm (4 mm on the prior)",
  "increased from 4 to 6 mm" give ONE measurement for the current value with ``prior_max_mm=4.0``.
  A prior value is folded into the current size it follows in the same sentence, else the next one.
  A prior value with no current size in its sentence is dropped (kind "prior" with ``all_kinds``).
- Not sizes, skipped by default (returned with ``kind`` "technique" / "distance" when
  ``all_kinds=True``): slice thickness and reconstruction ("5 mm slices", "reconstructed at 3 mm",
  "slice thickness 1.25 mm", "at 2.5 mm intervals") and distances of tubes/lines ("tip 4 cm above the
  carina"). No units other than mm/cm are read, so "5 mg", "T12", "2 views", dates, times, "1.5 T",
  "cm/s" velocities, "mmHg", "cm2" are never measurements.
- Speed: the text is scanned for unit words only; the full regex runs in a short window before each.
  Number words ("two centimeters") are not read.
- ``sentence`` is the index into the ``sentences`` spans given (0 when None: the whole text).
- ``attach_measurements(measurements, finding_spans, text=None)`` returns, per measurement, the index
  of the (start, end, sentence) finding span it describes (same sentence, nearest; clause breaks such
  as "and"/"with"/";" between them count against a candidate when ``text`` is given), or None.
- ``with_findings(measurements, findings, text=None, eligible=None)`` returns the (frozen)
  measurements with ``finding`` set to an index into ``findings`` (objects with start, end, sentence),
  considering only findings for which ``eligible(finding)`` is true.
- ``Measurement.to_record()`` gives the Avro ``Measurement`` record; ``sentence``, ``kind`` and
  ``min_mm`` are extra fields not in the schema.
"""

from processors.nlp.measurements.extract import (
    Measurement,
    attach_measurements,
    extract_measurements,
    with_findings,
)

__all__ = ["Measurement", "attach_measurements", "extract_measurements", "with_findings"]
