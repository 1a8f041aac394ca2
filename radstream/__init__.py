"""radstream: radiology reports -> Kafka -> NLP -> ClickHouse -> DICOM retrieval."""

__version__ = "0.1.0"
