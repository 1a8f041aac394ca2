"""Benchmark: CPU per instance of the research store's path in-process (no network, no Kafka), with
de-identification on and off, for this tree and (``--base <checkout>``) another one, interleaved.

Each round is one subprocess (``--worker``) running one tree's ``ResearchStore.store`` as the direct
receive loop calls it (``store_answer_first``, then ``after_response``: journal ``pwritev`` +
``fdatasync``, then the file written) on a corpus of synthetic received instances: CT with 128 KiB
pixel data as ``bench/dicom_move.py`` makes them, every third one with nested sequences and private
attributes. Expectations are in memory (as ``ExpectedStudies``: nothing written per instance). The
round reports CPU ms per instance (``time.process_time``, after a warm-up pass) and, de-identified, a
digest of every stored file; rounds alternate trees and modes (A/B/A/B) and the table shows medians.

Equality: de-identified, each tree's stored files must be byte-identical (same paths, same bytes) to
the other's; a difference is printed and the exit status is 1. ``--check-leak`` also compares
``Deidentifier.apply_file`` on the leak corpus of tests/sinks/dicom (every E.1-1 attribute with a
traceable value, nested, private, curves, overlays) with several option sets.

Usage: ``python bench/deid_store_cpu.py [--base /tmp/s9-deid-base] [--rounds 5] [--instances 150]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = b"bench-key-of-32-bytes-----------"


def corpus(n: int, kb: int) -> list[tuple[bytes, str, str, str]]:
    """(dataset bytes as received, transfer syntax, SOP class, SOP instance) of ``n`` instances."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence

    from sinks.dicom import synth

    spec = synth.specs(1, n, synth.rows_for_kb(kb), synth.rows_for_kb(kb))[0]
    out = []
    for i in range(n):
        ds = synth.instance(spec, i)
        if i % 3 == 1:  # nested sequences with identifying values, private attributes at two levels
            ref = Dataset()
            ref.ReferencedSOPClassUID = ds.SOPClassUID
            ref.ReferencedSOPInstanceUID = spec.sop_uid((i + 1) % n)
            ds.ReferencedImageSequence = Sequence([ref])
            req = Dataset()
            req.RequestedProcedureID = "RP1"
            req.ScheduledProcedureStepID = "SPS1"
            req.StudyInstanceUID = spec.study_uid
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-1", "SRT", "CHEST"
            req.RequestedProcedureCodeSequence = Sequence([code])
            req.add_new(0x00091010, "LO", "PRIVATE NESTED")
            ds.RequestAttributesSequence = Sequence([req])
            ds.add_new(0x00090010, "LO", "ACME 1.0")
            ds.add_new(0x00091001, "LO", "SECRET NOTE")
            ds.add_new(0x00091002, "DS", "12.5")
            ds.OtherPatientIDsSequence = Sequence([Dataset()])
            ds.OtherPatientIDsSequence[0].PatientID = "OTHER-1"
            ds.OtherPatientIDsSequence[0].IssuerOfPatientID = "HOSP"
            ds.AcquisitionDateTime = spec.study_date + "120102.5"
            ds.PerformedProcedureStepStartDate = spec.study_date
            ds.OperatorsName = "TECH^A"
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        write_dataset(body, ds)
        out.append((body.getvalue(), str(synth.ExplicitVRLittleEndian), str(ds.SOPClassUID),
                    str(ds.SOPInstanceUID)))
    return out


class MemoryExpectations:
    """Every study expected for one project (as ``ExpectedStudies`` after its topic is read)."""

    waits = False

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id

    def stamp(self, study_uid: str) -> object:
        return 1

    def lookup(self, study_uid: str) -> Any:
        from sinks.dicom.expect import Expectation

        return Expectation(study_uid, self.project_id, "bench-request", "RESEARCH", 0.0)

    def record(self, study_uid: str, request_id: str, sop_uid: str, outcome: str, reason: str = "") -> None:
        pass


def worker(mode: str, n: int, kb: int, passes: int, io: bool = True) -> dict[str, Any]:
    """One round in this process: CPU ms per instance of the store path, digests of the stored files.
    ``io=False``: the instance's final bytes are made (de-identified or not) but not journaled nor
    written (``_keep`` replaced): the CPU of the store path itself, without the disk's noise."""
    import queue

    from sinks.dicom.journal import Journal
    from sinks.dicom.projects import Project, StaticProjects
    from sinks.dicom.scp import ResearchStore, ScpConfig

    deid = mode == "deid"
    project = Project("BENCH-D" if deid else "BENCH-I", "RESEARCH", "bench", "bench", identified=not deid,
                      irb_reference="" if deid else "IRB-BENCH")
    items = corpus(n, kb)
    assoc = type("Assoc", (), {"requestor": type("R", (), {"ae_title": "ORTHANC"})(),
                               "acceptor": type("A", (), {"ae_title": "RESEARCH"})()})()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        cfg = ScpConfig(ae_title="RESEARCH", port=0, host="127.0.0.1", store_dir=Path(tmp) / "store",
                        allowed_calling_aes=("ORTHANC",), deid_key=KEY, journal_mb=64)
        store = ResearchStore(cfg, projects=StaticProjects([project]),
                              expected=MemoryExpectations(project.project_id))
        # what start() does for the store path, without the listener
        cfg.store_dir.mkdir(parents=True, exist_ok=True)  # the Registry made it
        store._root = os.path.realpath(cfg.store_dir)
        store.journal = Journal(store._root, cfg.journal_mb * 1024 * 1024, store._replayed)
        store.journal.open()
        store._writer = queue.Queue()

        def one_pass() -> None:
            for raw, ts, sop_class, sop in items:
                status = store.store_answer_first(raw, ts, sop_class, sop, assoc)
                if status != 0:
                    raise RuntimeError(f"status 0x{status:04X}")
                store.after_response()

        kept: dict[str, str] = {}
        if not io:
            def keep(job: Any, stored: Any, original: Any, data: bytes) -> None:
                if record:
                    kept[f"{stored.study}/{stored.series}/{stored.sop_instance}.dcm"] = \
                        hashlib.sha256(data).hexdigest()

            store._keep = keep  # type: ignore[method-assign]
        record = True
        one_pass()  # warm-up: caches, directories, the journal's pages
        record = False
        t0 = time.process_time()
        for _ in range(passes):
            one_pass()
        cpu_ms = 1000 * (time.process_time() - t0) / (passes * n)
        digests = kept
        tree = cfg.store_dir / project.project_id
        for p in sorted(tree.rglob("*.dcm")):
            digests[str(p.relative_to(tree))] = hashlib.sha256(p.read_bytes()).hexdigest()
        store.journal.close()
    return {"cpu_ms": cpu_ms, "files": digests if deid else {}, "n": len(digests)}


def leak_outputs() -> dict[str, str]:
    """Digests of ``apply_file`` on the leak corpus with several option sets (nothing for a DeidError)."""
    from sinks.dicom import deid  # the tree's (PYTHONPATH), as everything here
    from tests.sinks.dicom import leak_corpus

    d = deid.Deidentifier(KEY)
    sets = {"default": deid.DeidOptions(), "no-dates": deid.DeidOptions(retain_modified_dates=False),
            "clean": deid.DeidOptions(clean_descriptors=True),
            "retain-all": deid.DeidOptions(retain_uids=True, retain_device_identity=True,
                                           retain_patient_characteristics=True,
                                           private_safe_list=(leak_corpus.SAFE_ENTRY,))}
    out = {}
    for name, opts in sets.items():
        for k, ds in enumerate(leak_corpus.build().instances):
            for implicit in (False, True):
                raw = leak_corpus.encode(ds) if not implicit else _implicit(leak_corpus.encode(ds))
                try:
                    data, _ = d.apply_file(raw, "LEAK", opts)
                    out[f"{name}/{k}/{implicit}"] = hashlib.sha256(data).hexdigest()
                except deid.DeidError as exc:
                    out[f"{name}/{k}/{implicit}"] = f"DeidError: {exc}"
    return out


def _implicit(raw: bytes) -> bytes:
    """The same file in Implicit VR Little Endian."""
    import io

    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ImplicitVRLittleEndian

    ds = dcmread(io.BytesIO(raw))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def run_round(tree: Path, args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "deid_store_cpu.py"), *args], env=env,
                          cwd=tree, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree} {args}: {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(a: dict[str, str], b: dict[str, str], what: str) -> bool:
    if a == b:
        print(f"{what}: identical ({len(a)} outputs)")
        return True
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"{what}: {len(diff)} of {len(a | b)} outputs DIFFER, e.g. {diff[:5]}")
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="the other checkout (baseline)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--instances", type=int, default=150)
    ap.add_argument("--passes", type=int, default=2, help="timed passes over the corpus per round")
    ap.add_argument("--kb", type=int, default=128)
    ap.add_argument("--check-leak", action="store_true", help="also compare apply_file on the leak corpus")
    ap.add_argument("--no-io", action="store_true", help="without the journal and the file writes")
    ap.add_argument("--worker", choices=["deid", "ident", "leak"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "leak":
        print(json.dumps(leak_outputs()))
        return 0
    if a.worker:
        print(json.dumps(worker(a.worker, a.instances, a.kb, a.passes, not a.no_io)))
        return 0
    trees = {"this": ROOT} | ({"base": a.base.resolve()} if a.base else {})
    wargs = ["--instances", str(a.instances), "--passes", str(a.passes), "--kb", str(a.kb),
             *(["--no-io"] if a.no_io else [])]
    cpu: dict[tuple[str, str], list[float]] = {}
    files: dict[str, dict[str, str]] = {}
    print(f"uptime: {os.getloadavg()}")
    for r in range(a.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for mode in ("deid", "ident"):
            for name, tree in order:
                res = run_round(tree, ["--worker", mode, *wargs])
                cpu.setdefault((name, mode), []).append(res["cpu_ms"])
                if mode == "deid":
                    files[name] = res["files"]
        print(f"round {r + 1}: " + ", ".join(f"{n}/{m} {v[-1]:.3f}" for (n, m), v in sorted(cpu.items())),
              flush=True)
    print(f"uptime: {os.getloadavg()}")
    print(f"CPU ms per instance{' without I/O' if a.no_io else ''}, median of {a.rounds} rounds "
          f"({a.instances} instances x {a.passes} passes):")
    for name in trees:
        d, i = statistics.median(cpu[(name, "deid")]), statistics.median(cpu[(name, "ident")])
        print(f"  {name:5s} de-identified {d:.3f}  identified {i:.3f}  de-identified extra {d - i:.3f}")
    ok = True
    if "base" in trees:
        ok = compare(files["base"], files["this"], "stored de-identified files, base vs this")
        if a.check_leak:
            leak = {name: run_round(tree, ["--worker", "leak"]) for name, tree in trees.items()}
            ok = compare(leak["base"], leak["this"], "apply_file on the leak corpus, base vs this") and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
