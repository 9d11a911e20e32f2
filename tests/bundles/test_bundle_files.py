"""Bundle metadata, the configs, priors built by the inference config, and the shipped weights."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from diffrecon.checks import InputError
from diffrecon.priors import (DiffusionPrior, PatchwisePrior, TriPlanarScore, VarianceExplodingPrior,
                              load_bundle_prior, save_weights)
from diffrecon.priors.bundle import fit_prior, prior_modality
from diffrecon.priors.weights import checksum_path, sha256
from tests.bundles.conftest import BUNDLES, COMMON, TINY_NETWORK

REQUIRED = ["version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task",
            "description", "authors", "copyright", "network_data_format"]
MODELS = {"pet_fdg_prior": ["axial", "coronal", "sagittal"], "mr_t1_prior": ["vp", "ve"]}


@pytest.mark.parametrize("bundle", sorted(MODELS))
def test_metadata_has_required_fields(bundle):
    meta = json.loads((BUNDLES / bundle / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == []
    assert meta["version"] in meta["changelog"]
    assert {"inputs", "outputs"} <= set(meta["network_data_format"])
    assert (BUNDLES / bundle / "LICENSE").is_file()


def weights_files(bundle: str) -> dict[str, str]:
    """Model name -> weights file name, from the bundle's inference config."""
    return json.loads((BUNDLES / bundle / "configs/inference.json").read_text())["models"]


def tiny_copy(bundle: str, folder: Path, **settings) -> Path:
    """A copy of a bundle's configs with a tiny network (and ``settings``) and random weights for every
    weights file."""
    root = folder / bundle
    shutil.copytree(BUNDLES / bundle / "configs", root / "configs")
    config = json.loads((root / "configs/inference.json").read_text())
    config.update({**TINY_NETWORK, **settings})
    (root / "configs/inference.json").write_text(json.dumps(config))
    parser = ConfigParser(config)
    for name in set(config["models"].values()):
        save_weights(root / "models" / name, parser.get_parsed_content("network_def", lazy=False))
    return root


@pytest.fixture
def tiny_bundle(tmp_path):
    """The PET bundle with a tiny network and random weights for every orientation."""
    return tiny_copy("pet_fdg_prior", tmp_path)


def test_priors_declare_their_modality_and_older_ones_still_load(tmp_path):
    assert prior_modality("pet_fdg_prior") == "PT" and prior_modality("mr_t1_prior") == "MR"
    root = tiny_copy("mr_t1_prior", tmp_path)
    with pytest.raises(InputError, match=r"is an MR prior \(modality MR\); method pet-dds needs a PET prior \(PT\)"):
        fit_prior(root, None, "vp", modality="PT", method_name="pet-dds")
    (root / "configs/metadata.json").unlink()  # a prior bundle written before bundles declared their modality
    assert prior_modality(root) is None
    assert fit_prior(root, None, "vp", modality="PT", method_name="pet-dds").schedule.kind == "vp"


def test_mr_bundle_ve_form_is_the_vp_network(tmp_path):
    root = tiny_copy("mr_t1_prior", tmp_path)
    vp, ve = load_bundle_prior(root, "vp"), load_bundle_prior(root, "ve")
    assert isinstance(vp, DiffusionPrior) and vp.schedule.kind == "vp"
    assert isinstance(ve, VarianceExplodingPrior) and ve.schedule.kind == "ve" and ve.schedule.sigma_max == 50.0
    x, sigma = torch.randn(2, 16, 16), torch.tensor(3.0)
    expected = vp.predict_noise(x / (1 + sigma ** 2).sqrt(), vp.schedule.timesteps_for_ratio(sigma))
    torch.testing.assert_close(ve.predict_noise(x, ve.schedule.timesteps_for(sigma)), expected)


def test_load_bundle_prior_and_errors(tiny_bundle):
    prior = load_bundle_prior(tiny_bundle, "coronal")
    assert prior.predict_noise(torch.randn(2, 16, 12), 10).shape == (2, 16, 12)
    with pytest.raises(InputError, match="unknown model 'oblique'"):
        load_bundle_prior(tiny_bundle, "oblique")
    with pytest.raises(InputError, match="no bundle folder"):
        load_bundle_prior(tiny_bundle / "models", "axial")
    weights = tiny_bundle / "models/model_axial.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(InputError, match="does not match"):
        load_bundle_prior(tiny_bundle, "axial")


def test_triplanar_prior_holds_each_orientations_weights(tiny_bundle):
    score = load_bundle_prior(tiny_bundle, "triplanar", chunk_size=3)
    assert isinstance(score, TriPlanarScore) and sorted(score.priors) == ["axial", "coronal", "sagittal"]
    assert score.chunk_size == 3
    for name, prior in score.priors.items():
        shipped = torch.load(tiny_bundle / f"models/model_{name}.pt", weights_only=True)
        for key, value in prior.network.state_dict().items():
            torch.testing.assert_close(value, shipped[key])
    assert score.predict_noise(torch.randn(8, 12, 16), 10).shape == (8, 12, 16)


def test_settings_reach_the_network_and_misspelt_ones_are_refused(tmp_path):
    root = tiny_copy("pet_fdg_prior", tmp_path, spatial_dims=3)
    prior = load_bundle_prior(root, "axial", roi_size=[8, 8, 8])  # a 3D prior evaluated over patches
    assert isinstance(prior, PatchwisePrior) and prior.spatial_dims == 3
    assert prior.predict_noise(torch.randn(1, 12, 12, 12), 10).shape == (1, 12, 12, 12)
    with pytest.raises(InputError, match="do not fit this network"):  # the weights are of the 3D network
        load_bundle_prior(root, "axial", spatial_dims=2)
    with pytest.raises(InputError, match="do not fit this network"):
        load_bundle_prior(root, "axial", **{"network_def#channels": [8, 8, 16]})
    with pytest.raises(InputError, match="'chanels' \\(did you mean 'channels'\\?\\)"):
        load_bundle_prior(root, "axial", chanels=[8, 8, 8])


def test_common_training_configs_set_no_bundle_setting():
    """The bundles' train.json come first on the command line (so MONAI finds their metadata), so the shared
    configs after them would silently replace any setting they both had."""
    shared = set(json.loads((COMMON / "prior_train.json").read_text()))
    for bundle in MODELS:
        assert shared.isdisjoint(json.loads((BUNDLES / bundle / "configs/train.json").read_text()))


def test_inference_config_writes_samples(tiny_bundle, tmp_path):
    from monai.bundle import run

    run(config_file=str(tiny_bundle / "configs/inference.json"), bundle_root=str(tiny_bundle), orientation="sagittal",
        num_samples=2, steps=2, output_dir=str(tmp_path / "samples"),
        meta_file=str(BUNDLES / "pet_fdg_prior/configs/metadata.json"))
    samples = torch.as_tensor(np.load(tmp_path / "samples/sagittal_samples.npy"))
    assert samples.shape == (2, 72, 56) and torch.isfinite(samples).all()
    assert (tmp_path / "samples/sagittal_samples.png").stat().st_size > 0


@pytest.mark.parametrize("bundle, name", [(b, n) for b, names in MODELS.items() for n in names])
def test_shipped_weights_match_their_checksums_and_load(bundle, name):
    weights = BUNDLES / bundle / "models" / weights_files(bundle)[name]
    if not weights.is_file():
        pytest.skip(f"{weights.name} not trained yet (scripts/train_priors.py)")
    assert checksum_path(weights).read_text().split()[0] == sha256(weights)
    prior = load_bundle_prior(bundle, name)
    multiple = prior.size_multiple
    other = (2, 5 * multiple, 6 * multiple)  # a size other than the training size
    assert prior.predict_noise(torch.randn(other), 100).shape == other
