"""The research warehouse in ClickHouse: DDL migrations, Avro-record -> row mapping, the Kafka sink,
and read-only analyst queries. One code path for embedded chDB (``chdb:///path``) and a server (``http://``).
"""
