"""Every bundle's ``configs/metadata.json`` checked offline against the metadata schema shipped in
``bundles/common`` (ours, for the fields diffrecon's bundles use; MONAI's meta_schema_20240725.json, which the
files name, is downloaded by MONAI and not shipped): with jsonschema, and through ``monai.bundle
verify_metadata`` given that schema as its ``filepath``, with the network closed."""
from __future__ import annotations

import json
import socket

import jsonschema
import pytest
from monai.bundle import verify_metadata

from tests.bundles.conftest import BUNDLES, COMMON

SCHEMA_FILE = COMMON / "diffrecon_metadata_schema.json"
METADATA = sorted(BUNDLES.glob("*/configs/metadata.json"))


@pytest.fixture
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def test_every_bundle_has_metadata():
    assert [m.parents[1].name for m in METADATA] == sorted(p.parent.name for p in BUNDLES.glob("*/configs"))


@pytest.mark.parametrize("path", METADATA, ids=lambda path: path.parents[1].name)
def test_metadata_matches_the_schema(path, schema):
    jsonschema.validate(json.loads(path.read_text()), schema)


@pytest.mark.parametrize("change", [
    lambda meta: meta.pop("version"),
    lambda meta: meta.update(version="v1"),
    lambda meta: meta["network_data_format"]["inputs"].clear(),
    lambda meta: next(iter(meta["network_data_format"]["outputs"].values())).pop("dtype"),
    lambda meta: next(iter(meta["network_data_format"]["outputs"].values())).update(modality="CT"),
])
def test_schema_refuses_broken_metadata(change, schema):
    meta = json.loads((BUNDLES / "pet_lisch/configs/metadata.json").read_text())
    change(meta)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta, schema)


def test_monai_verify_metadata_runs_offline(monkeypatch, tmp_path):
    """MONAI reads an existing ``filepath`` instead of downloading the schema; a broken file is refused."""
    def no_network(*args, **kwargs):
        raise OSError("network closed in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    verify_metadata(meta_file=str(BUNDLES / "pet_lisch/configs/metadata.json"), filepath=str(SCHEMA_FILE))
    broken = json.loads((BUNDLES / "pet_lisch/configs/metadata.json").read_text())
    broken.pop("network_data_format")
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA_FILE))
