"""sinks.dicom.scp: the research store's file meta, its options, its verified writes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from sinks.dicom import synth


def test_hand_encoded_file_meta_reads_back_with_pydicom() -> None:

    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from sinks.dicom.scp import file_meta_bytes

    ds = synth.instance(synth.specs(1, 1)[0], 0)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)  # explicit VR little endian, as received over the network
    for ae in ("ORTHANC", "PACS1"):  # odd and even lengths are padded
        data = file_meta_bytes(str(ds.SOPClassUID), str(ds.SOPInstanceUID), synth.ExplicitVRLittleEndian, ae)
        back = dcmread(io.BytesIO(data + body.getvalue()))
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert back.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert back.file_meta.TransferSyntaxUID == synth.ExplicitVRLittleEndian
        assert back.file_meta.SourceApplicationEntityTitle == ae
        assert back.file_meta.FileMetaInformationGroupLength == len(data) - 128 - 4 - 12
        assert back.PixelData == ds.PixelData and back.PatientID == ds.PatientID


def test_storage_scp_takes_its_options_from_the_one_config(tmp_path: Path) -> None:
    from radstream.config import load_settings
    from sinks.dicom.scp import ScpConfig

    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_RESEARCH_DEFAULT_PROJECT": "IRB-0",
           "RADSTREAM_RESEARCH_MIN_FREE_MB": "7", "RADSTREAM_RESEARCH_FAST_PATH": "0",
           "RADSTREAM_INGEST_PSEUDONYM_KEY": "secret"}
    settings = load_settings(env=env)
    cfg = ScpConfig.of(settings.research, settings.ingest)
    assert (cfg.default_project, cfg.min_free_mb, cfg.fast_path, cfg.deid_key) == (
        "IRB-0", 7, False, b"secret")
    assert cfg.store_dir == tmp_path / "research"
    assert cfg.quarantine_root == tmp_path / "quarantine"  # beside the store, not inside a project tree
    moved = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path),
                               "RADSTREAM_RESEARCH_QUARANTINE_DIR": "/q"})
    assert ScpConfig.of(moved.research, moved.ingest).quarantine_root == Path("/q")
    default = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    assert ScpConfig.of(default.research, default.ingest).fast_path


def _store(tmp_path: Path) -> object:
    from sinks.dicom.scp import ResearchStore, ScpConfig

    return ResearchStore(ScpConfig(ae_title="RESEARCH", port=0, host="127.0.0.1", store_dir=tmp_path,
                                   allowed_calling_aes=("ORTHANC",)))


def test_verified_write_stores_exactly_the_bytes_and_overwrites_by_sop_uid(tmp_path: Path) -> None:
    store: Any = _store(tmp_path)
    parent = str(tmp_path / "P" / "1.2" / "1.2.3")
    target = parent + "/1.2.3.4.dcm"
    store._write_verified(parent, target, "1.2.3.4", b"first version, longer than the second")
    store._write_verified(parent, target, "1.2.3.4", b"second")
    assert Path(target).read_bytes() == b"second"  # replaced, not appended to or kept
    assert sorted(p.name for p in Path(parent).iterdir()) == ["1.2.3.4.dcm"]  # no temporary file left


def test_a_write_that_reads_back_differently_fails_and_keeps_the_stored_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    store: Any = _store(tmp_path)
    parent = str(tmp_path / "P" / "1.2" / "1.2.3")
    target = parent + "/1.2.3.4.dcm"
    store._write_verified(parent, target, "1.2.3.4", b"good copy")
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real_pread(fd, n, off)[:-1] + b"?")  # a bad medium
    with pytest.raises(OSError, match="verification failed"):
        store._write_verified(parent, target, "1.2.3.4", b"new copy")
    assert Path(target).read_bytes() == b"good copy"
    assert sorted(p.name for p in Path(parent).iterdir()) == ["1.2.3.4.dcm"]
