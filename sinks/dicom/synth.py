"""Synthetic CT studies (pydicom) for tests, the demo and the benchmark.

UIDs derive deterministically from the accession, so seeding twice stores the same
instances (the PACS overwrites) and tests can predict every SOPInstanceUID.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

UID_PREFIX = "1.2.826.0.1.3680043.10.1337."  # test/demo root (not for real data)


def _uid(*parts: str) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=list(parts))


@dataclass(frozen=True)
class StudySpec:
    accession: str
    patient_id: str
    patient_name: str
    study_date: str  # YYYYMMDD
    images: int
    rows: int = 64
    cols: int = 64
    series: int = 1

    @property
    def study_uid(self) -> str:
        return _uid("study", self.accession, self.patient_id)

    def series_uid(self, s: int) -> str:
        return _uid("series", self.accession, str(s))

    def sop_uid(self, i: int) -> str:
        return _uid("sop", self.accession, str(i))

    def sop_uids(self) -> list[str]:
        return [self.sop_uid(i) for i in range(self.images)]


def specs(n_studies: int, images: int, rows: int = 64, cols: int = 64, first: int = 1,
          prefix: str = "A") -> list[StudySpec]:
    """``A1..AN`` with patient ids ``APAT<k>`` (two studies per patient) and distinct dates."""
    base = date(2024, 1, 1)
    out = []
    for k in range(first, first + n_studies):
        pid = f"{prefix}PAT{(k + 1) // 2}"
        out.append(StudySpec(accession=f"{prefix}{k}", patient_id=pid,
                             patient_name=f"TEST^PATIENT{(k + 1) // 2}",
                             study_date=(base + timedelta(days=7 * k)).strftime("%Y%m%d"),
                             images=images, rows=rows, cols=cols))
    return out


def rows_for_kb(kb: int) -> int:
    """Square 16-bit image side whose pixel data is about ``kb`` KiB."""
    return max(8, int((kb * 1024 / 2) ** 0.5))


def instance(spec: StudySpec, i: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(spec.sop_uid(i))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = spec.sop_uid(i)
    ds.StudyInstanceUID = spec.study_uid
    s = i * spec.series // max(spec.images, 1)
    ds.SeriesInstanceUID = spec.series_uid(s)
    ds.FrameOfReferenceUID = _uid("for", spec.accession)
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.AccessionNumber = spec.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID = spec.accession
    ds.StudyDescription = "SYNTHETIC CT CHEST"
    ds.SeriesDescription = f"AXIAL {s + 1}"
    ds.ReferringPhysicianName = "REFERRER^TEST"
    ds.InstitutionName = "RADSTREAM TEST HOSPITAL"
    ds.Modality = "CT"
    ds.SeriesNumber = s + 1
    ds.InstanceNumber = i + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = spec.rows, spec.cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.ImagePositionPatient = [0.0, 0.0, float(i)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rng = np.random.default_rng(i)
    ds.PixelData = rng.integers(0, 4096, size=(spec.rows, spec.cols), dtype=np.uint16).tobytes()
    return ds


def instance_bytes(spec: StudySpec, i: int) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, instance(spec, i), enforce_file_format=True)
    return buf.getvalue()
