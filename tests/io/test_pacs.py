"""PACS export against a real Orthanc (C-STORE + C-FIND, STOW-RS + QIDO-RS): early check, arrival, refusal,
counts after a lost connection, resume."""
from __future__ import annotations

import contextlib
import http.server
import io
import re
import socket
import threading

import numpy as np
import pydicom
import pytest

from diffrecon.checks import InputError
from diffrecon.io.dicom_write import write_dicom_series
from diffrecon.io.pacs import DimseTarget, PacsError, StowTarget, _qido_present, check_target, send_to_pacs
from tests.io.orthanc import (CLIENT_AET, DICOM_PORT, PASSWORD, SERVER_AET, USER,  # noqa: F401
                              AnswerDroppingProxy, OrthancServer, make_tls_files, orthanc, require_orthanc)


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


@pytest.mark.integration
def test_c_store_then_c_find_finds_every_instance(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "dimse", 1.0)
    with orthanc.client():
        report = send_to_pacs(written.files, _dimse())
        assert report.ok and report.verified and sorted(report.sent) == sorted(written.sop_uids), report.summary()
        _assert_stored_once_with_same_pixels(orthanc, written)
        again = send_to_pacs(written.files, _dimse())  # a rerun finds everything there and sends nothing
    assert again.ok and again.sent == [] and sorted(again.already_present) == sorted(written.sop_uids)


@pytest.mark.integration
def test_stow_rs_then_qido_finds_every_instance(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "stow", 2.0)
    with orthanc.client():
        report = send_to_pacs(written.files, _stow(url=orthanc.dicomweb_url))
        assert report.ok and sorted(report.sent) == sorted(written.sop_uids), report.summary()
        _assert_stored_once_with_same_pixels(orthanc, written)


@pytest.mark.integration
def test_check_target_refuses_early_naming_the_option(orthanc):  # noqa: F811
    with orthanc.client():
        check_target(_dimse())  # C-ECHO with the right AE titles
        check_target(_stow(url=orthanc.dicomweb_url))  # QIDO-RS search with the right credentials
        with pytest.raises(PacsError, match=r"rejected the association.*'WRONGAET' \(--pacs-called-aet\)"):
            check_target(_dimse(called_aet="WRONGAET"))
        with pytest.raises(PacsError, match=r"cannot open an association .*--pacs-host, --pacs-port"):
            check_target(_dimse(port=DICOM_PORT + 1))  # nothing listens there
        with pytest.raises(PacsError, match="refused the credentials .*HTTP 401"):
            check_target(_stow(url=orthanc.dicomweb_url, password="wrong"))
        with pytest.raises(PacsError, match=r"--stow-url\) answered a QIDO-RS search with HTTP 404"):
            check_target(_stow(url=orthanc.dicomweb_url.replace("dicom-web", "dicomweb")))
        with pytest.raises(PacsError, match=r"cannot reach DICOMweb server .*\(--stow-url\)"):
            check_target(_stow(url="http://127.0.0.1:8043/dicom-web"))
    with pytest.raises(InputError, match="target is str; expected DimseTarget or StowTarget"):
        check_target("pacs:104")


def test_association_closed_without_answer_is_asked_once_more():
    """A listener that closes every connection unanswered: asked twice (a PACS may close right after its
    rejection), then reported as no association, naming host and port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10.0)
    connections = []

    def close_unanswered() -> None:
        with contextlib.suppress(OSError):  # the listener closed, or no more connections came
            while True:
                connection, _ = listener.accept()
                connections.append(connection)
                connection.close()

    thread = threading.Thread(target=close_unanswered, daemon=True)
    thread.start()
    try:
        with pytest.raises(PacsError, match=r"cannot open an association .*--pacs-host, --pacs-port"):
            check_target(_dimse(port=listener.getsockname()[1]))
    finally:
        listener.close()
        thread.join(timeout=15.0)
    assert len(connections) == 2


@pytest.mark.integration
def test_refusals_during_transfer_are_reported_naming_the_option(orthanc, tmp_path):  # noqa: F811
    written = _series(tmp_path, "refused", 3.0, slices=2)
    with orthanc.client():
        check_target(_dimse(calling_aet="STRANGER"))  # Orthanc answers anyone's C-ECHO ...
        stranger = send_to_pacs(written.files, _dimse(calling_aet="STRANGER"), retries=0)  # ... but not queries
        wrong_aet = send_to_pacs(written.files, _dimse(called_aet="WRONGAET"), retries=0)
        wrong_password = send_to_pacs(written.files, _stow(url=orthanc.dicomweb_url, password="wrong"), retries=0)
        assert orthanc.instances_of_series(written.series_uid) == []
    assert re.search(r"aborted the association .*calling AE title 'STRANGER'", stranger.refusal)
    assert re.search(r"rejected the association.*--pacs-called-aet", wrong_aet.refusal)
    assert re.search(r"refused the credentials .*HTTP 401", wrong_password.refusal)
    for report in (stranger, wrong_aet, wrong_password):
        assert not report.ok and report.sent == [] and report.missing == written.sop_uids
        assert f"refused: {report.refusal}" in report.summary()
    with pytest.raises(InputError, match="files is empty"):
        send_to_pacs([], _dimse())


@pytest.mark.integration
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
        assert not broken.ok and not broken.verified and "INCOMPLETE - 3 of 6 sent now" in broken.summary()
        assert broken.sent == written.sop_uids[:3] and "could not verify" in broken.summary()
        # a C-STORE on the association of the stopped server may have gone out unanswered; a STOW-RS request
        # finds the port closed
        assert broken.unconfirmed in (([], written.sop_uids[3:4]) if protocol == "dimse" else ([],))
        assert sorted([*broken.failed, *broken.unconfirmed]) == sorted(written.sop_uids[3:])
        orthanc.start()
        assert len(orthanc.instances_of_series(written.series_uid)) == 3  # what the report said was sent
        rerun = send_to_pacs(files, target, retries=1, backoff=0.05)
        assert rerun.ok, rerun.summary()
        assert sorted(rerun.already_present) == sorted(written.sop_uids[:3])  # sends only what is missing
        assert sorted(rerun.sent) == sorted(written.sop_uids[3:])
        _assert_stored_once_with_same_pixels(orthanc, written)


@pytest.mark.integration
@pytest.mark.parametrize("server_stays_down", [False, True])
def test_stow_request_in_flight_when_the_connection_is_lost(orthanc, tmp_path, server_stays_down):  # noqa: F811
    """Orthanc stores the 2nd of three 2-instance requests, but its answer is lost (the server dies at once, or
    only the connection does): the report must count what arrived, and a rerun must complete it exactly once."""
    written = _series(tmp_path, f"in-flight-{server_stays_down}", 40.0 + server_stays_down, slices=6)
    batch = 2 * max(path.stat().st_size for path in written.files)  # two instances per request
    with orthanc.client():
        with AnswerDroppingProxy(orthanc, drop_post=2, after_drop=orthanc.stop if server_stays_down else None) as proxy:
            report = send_to_pacs(written.files, _stow(url=proxy.url, max_request_bytes=batch), retries=1,
                                  backoff=0.05)
        if server_stays_down:
            assert not report.ok and not report.verified
            assert report.sent == written.sop_uids[:2]  # acknowledged
            assert report.unconfirmed == written.sop_uids[2:4]  # stored, but no answer and no later query
            assert sorted(report.failed) == sorted(written.sop_uids[4:])  # never sent
            assert "2 in flight when the connection was lost (may have arrived)" in report.summary()
            orthanc.start()
            assert len(orthanc.instances_of_series(written.series_uid)) == 4
            rerun = send_to_pacs(written.files, _stow(url=orthanc.dicomweb_url), retries=1, backoff=0.05)
            assert rerun.ok and sorted(rerun.already_present) == sorted(written.sop_uids[:4]), rerun.summary()
            assert sorted(rerun.sent) == sorted(written.sop_uids[4:])
        else:  # the retry asked the server first: the lost request's instances count as sent, not resent
            assert report.ok and sorted(report.sent) == sorted(written.sop_uids), report.summary()
            assert report.unconfirmed == [] and report.failed == {} and proxy.posts == 3
        _assert_stored_once_with_same_pixels(orthanc, written)


@pytest.mark.integration
def test_c_store_over_tls(tmp_path):
    require_orthanc()
    tls = make_tls_files(tmp_path)
    server = OrthancServer(tmp_path / "server", DicomTlsEnabled=True, DicomTlsCertificate=str(tls["server.crt"]),
                           DicomTlsPrivateKey=str(tls["server.key"]), DicomTlsTrustedCertificates=str(tls["ca.crt"]),
                           DicomTlsRemoteCertificateRequired=False)
    try:
        server.start()
        written = _series(tmp_path, "tls", 30.0, slices=2)
        with server.client():
            report = send_to_pacs(written.files, _dimse(tls_ca=str(tls["ca.crt"])))
            assert report.ok and "TLS" in report.target, report.summary()
            assert len(server.instances_of_series(written.series_uid)) == 2
            plain = send_to_pacs(written.files, _dimse(), retries=0)  # the TLS port refuses plain DICOM
            assert not plain.ok and not plain.verified
            with pytest.raises(PacsError, match=r"TLS handshake failed.*whether the port needs TLS \(--pacs-tls-ca\)"):
                check_target(_dimse())
    finally:
        server.close()


def test_bearer_token_is_sent_and_refusal_is_clear():
    """Orthanc 1.10 has no bearer tokens, so a tiny loopback HTTP server checks the header instead."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            seen.append(self.headers.get("Authorization"))
            good = self.headers.get("Authorization") == "Bearer good-token"
            self.send_response(200 if good else 401)
            self.send_header("Content-Type", "application/dicom+json")
            self.end_headers()
            self.wfile.write(b'[{"00080018": {"vr": "UI", "Value": ["1.2.3"]}}]' if good else b"")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/dicom-web"
    try:
        assert _qido_present(StowTarget(url, token="good-token"), "1.2", "1.2.1") == {"1.2.3"}
        with pytest.raises(PacsError, match="refused the credentials .*DIFFRECON_STOW_TOKEN"):
            _qido_present(StowTarget(url, token="stale-token"), "1.2", "1.2.1")
    finally:
        server.shutdown()
    assert seen == ["Bearer good-token", "Bearer stale-token"]
