"""Each bundle's README shows every setting of its inference run with the default its configs give
(scripts/bundle_defaults.py writes the table; here it must match the configs), and the configs a run reads are
the ones its README's command names."""
from __future__ import annotations

import importlib.util
import json

import pytest

from diffrecon.bundle import DEFAULTS_BEGIN, defaults_section, inference_configs, setting_defaults
from tests.bundles.conftest import BUNDLES, COMMON

WITH_INFERENCE = sorted(path.parents[1].name for path in BUNDLES.glob("*/configs/inference.json"))


@pytest.mark.parametrize("bundle", WITH_INFERENCE)
def test_readme_shows_every_default_of_the_configs(bundle):
    readme = (BUNDLES / bundle / "docs" / "README.md").read_text()
    assert DEFAULTS_BEGIN in readme, f"{bundle}: no defaults table; run scripts/bundle_defaults.py {bundle}"
    assert defaults_section(bundle) in readme, f"{bundle}: stale defaults table; run scripts/bundle_defaults.py"


def test_a_method_bundle_shows_the_shared_settings_and_its_own_over_them():
    defaults = setting_defaults("pet_lisch")
    assert defaults["num_samples"] == 4 and defaults["prior_bundle"] == "pet_fdg_prior"  # the shared config's
    assert defaults["steps"] == 8 and defaults["iterations"] == "auto"  # its own
    assert defaults["output_dir"] == "$os.path.join(os.getcwd(), 'outputs')"  # an expression, as written
    assert "method_name" not in defaults and "prior" not in defaults and "imports" not in defaults
    assert list(defaults).index("steps") > list(defaults).index("num_samples")
    section = defaults_section("pet_lisch")
    assert "| `iterations` | `\"auto\"` |" in section and "| `psf_fwhm` | `null` |" in section
    assert "(`../common/pet_inference.json`, `configs/inference.json`)" in section


@pytest.mark.parametrize("bundle", ["pet_classical", "pet_personalised"])
def test_a_bundle_whose_config_is_a_whole_run_reads_only_its_own_file(bundle):
    """As its README's command does: no shared config under it (no prior settings in pet_classical's table)."""
    own = BUNDLES / bundle / "configs" / "inference.json"
    assert [path.resolve() for path in inference_configs(BUNDLES / bundle)] == [own.resolve()]
    defaults = setting_defaults(bundle)
    assert defaults["method_name"] == json.loads(own.read_text())["method_name"]  # a setting users change here
    if bundle == "pet_classical":
        assert "prior_bundle" not in defaults and "num_samples" not in defaults


def test_method_bundles_still_run_on_their_shared_config():
    assert [path.name for path in inference_configs(BUNDLES / "dds_mri")] == ["mri_inference.json", "inference.json"]
    assert inference_configs(BUNDLES / "pet_dds")[0].resolve() == (COMMON / "pet_inference.json").resolve()


def test_the_script_appends_a_table_once_and_replaces_it_after(tmp_path):
    spec = importlib.util.spec_from_file_location("bundle_defaults", BUNDLES.parent / "scripts" / "bundle_defaults.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    first = script.with_section("# A bundle\n\ntext\n", defaults_section("pet_dds"))
    assert first.count("## Defaults") == 1 and first.endswith("<!-- end of defaults -->\n")
    assert script.with_section(first, defaults_section("pet_dds")) == first
    changed = script.with_section(first.replace("| `steps` | `8` |", "| `steps` | `9` |"), defaults_section("pet_dds"))
    assert changed == first
