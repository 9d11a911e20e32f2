"""PACS export against a real Orthanc (C-STORE + C-FIND, STOW-RS + QIDO-RS): arrival, refusal, resume."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from diffrecon.checks import InputError
from diffrecon.io.dicom_write import write_dicom_series
from diffrecon.io.pacs import DimseTarget, PacsError, StowTarget, send_to_pacs
from tests.io.orthanc import CLIENT_AET, DICOM_PORT, PASSWORD, SERVER_AET, USER, orthanc  # noqa: F401

pytestmark = pytest.mark.integration


def _series(tmp_path, name: str, offset: float, slices: int = 4):
    volume = np.random.default_rng(int(offset)).gamma(2.0, 2.0, size=(8, 6, slices)).astype(np.float32) + offset
    return write_dicom_series(volume, np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / name, modality="PT",
                              method_description=f"test {name}")


def _dimse(**overrides) -> DimseTarget:
    settings = {"host": "127.0.0.1", "port": DICOM_PORT, "called_aet": SERVER_AET, "calling_aet": CLIENT_AET,
                "timeout": 5.0}
    return DimseTarget(**{**settings, **overrides})


def _stow(**overrides) -> StowTarget:
    return StowTarget(**{"url": "", "username": USER, "password": PASSWORD, "timeout": 5.0, **overrides})


def _assert_stored_once_with_same_pixels(orthanc, written) -> None:  # noqa: F811
    ids = orthanc.instances_of_series(written.series_uid)
    assert len(ids) == len(written.files)
    stored = {}
    for orthanc_id in ids:
        ds = pydicom.dcmread(io.BytesIO(orthanc.rest(f"/instances/{orthanc_id}/file")))
        stored[str(ds.SOPInstanceUID)] = ds
    assert sorted(stored) == sorted(written.sop_uids)
    for path in written.files:
        local = pydicom.dcmread(path)
        np.testing.assert_array_equal(stored[str(local.SOPInstanceUID)].pixel_array, local.pixel_array)


def test_c_store_then_c_find_finds_every_instance(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "dimse", 1.0)
    with orthanc.client():
        report = send_to_pacs(written.files, _dimse())
        assert report.ok and report.verified and sorted(report.sent) == sorted(written.sop_uids), report.summary()
        _assert_stored_once_with_same_pixels(orthanc, written)
        again = send_to_pacs(written.files, _dimse())  # a rerun finds everything there and sends nothing
    assert again.ok and again.sent == [] and sorted(again.already_present) == sorted(written.sop_uids)


def test_stow_rs_then_qido_finds_every_instance(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "stow", 2.0)
    with orthanc.client():
        report = send_to_pacs(written.files, _stow(url=orthanc.dicomweb_url))
        assert report.ok and sorted(report.sent) == sorted(written.sop_uids), report.summary()
        _assert_stored_once_with_same_pixels(orthanc, written)


def test_refusals_name_the_option_to_fix(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "refused", 3.0, slices=2)
    with orthanc.client():
        with pytest.raises(PacsError, match=r"rejected the association.*called AE title 'WRONGAET'.*--pacs-called-aet"):
            send_to_pacs(written.files, _dimse(called_aet="WRONGAET"), retries=0)
        with pytest.raises(PacsError, match=r"calling AE title 'STRANGER'"):
            send_to_pacs(written.files, _dimse(calling_aet="STRANGER"), retries=0)
        with pytest.raises(PacsError, match="refused the credentials .*HTTP 401"):
            send_to_pacs(written.files, _stow(url=orthanc.dicomweb_url, password="wrong"), retries=0)
        assert orthanc.instances_of_series(written.series_uid) == []
    with pytest.raises(InputError, match="files is empty"):
        send_to_pacs([], _dimse())


@pytest.mark.parametrize("protocol", ["dimse", "stow"])
def test_server_stopped_mid_series_then_rerun_completes(orthanc, tmp_path, protocol):  # noqa: F811
    written = _series(tmp_path, protocol, 10.0 if protocol == "dimse" else 20.0, slices=6)
    # STOW-RS: one instance per request, so the server can stop between two of them
    target = _dimse() if protocol == "dimse" else _stow(url=orthanc.dicomweb_url, max_request_bytes=1)
    files = written.files
    sent = []

    def stop_after_three(sop_uid: str) -> None:
        sent.append(sop_uid)
        if len(sent) == 3:
            orthanc.stop()

    with orthanc.client():
        broken = send_to_pacs(files, target, retries=1, backoff=0.05, on_sent=stop_after_three)
        assert not broken.ok and not broken.verified and "INCOMPLETE" in broken.summary()
        assert len(broken.failed) == 3 and "could not verify" in broken.summary()
        orthanc.start()
        rerun = send_to_pacs(files, target, retries=1, backoff=0.05)
        assert rerun.ok, rerun.summary()
        assert sorted(rerun.already_present) == sorted(written.sop_uids[:3])  # sends only what is missing
        assert sorted(rerun.sent) == sorted(written.sop_uids[3:])
        _assert_stored_once_with_same_pixels(orthanc, written)
