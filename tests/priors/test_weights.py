from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from diffrecon.checks import InputError
from diffrecon.priors import load_weights, save_weights
from diffrecon.priors.weights import checksum_path


def _unet(channels=(8, 8, 8)):
    return DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels,
                              attention_levels=(False,) * len(channels), num_res_blocks=1, norm_num_groups=4,
                              num_head_channels=8)


def test_round_trip(tmp_path, tiny_unet):
    path = save_weights(tmp_path / "model.pt", tiny_unet)
    assert checksum_path(path).read_text().endswith("  model.pt\n")
    loaded = load_weights(_unet(), path)
    for name, value in tiny_unet.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


def test_corrupted_missing_and_mismatched(tmp_path, tiny_unet):
    path = save_weights(tmp_path / "model.pt", tiny_unet)
    with pytest.raises(InputError, match="does not exist"):
        load_weights(_unet(), tmp_path / "other.pt")
    with pytest.raises(InputError, match="do not fit this network"):
        load_weights(_unet((8, 16, 16)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(InputError, match="does not match"):
        load_weights(_unet(), path)
    with pytest.raises(InputError, match="could not be read"):
        load_weights(_unet(), path, verify=False)
    checksum_path(path).unlink()
    with pytest.raises(InputError, match="checksum"):
        load_weights(_unet(), path)


def test_latest_checkpoint_skips_a_checkpoint_truncated_by_a_kill(tmp_path):
    from diffrecon.priors.weights import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "checkpoint_epoch=1.pt")
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "checkpoint_epoch=2.pt")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
    whole = (tmp_path / "checkpoint_epoch=2.pt").read_bytes()
    (tmp_path / "checkpoint_epoch=10.pt").write_bytes(whole[: len(whole) // 2])  # killed while saving
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
