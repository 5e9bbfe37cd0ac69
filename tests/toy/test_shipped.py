"""The committed toy world: current with the code, installed from the package, regenerable."""

import time

from polaris_lib import toy
from polaris_lib.config.sections import ToyConfig
from polaris_lib.toy import build as toy_build


def test_shipped_world_matches_the_default_config():
    """Changing ToyConfig's defaults or toy.CODE_VERSION without re-shipping fails here.

    Fix: `python -m polaris_lib.toy --ship` (rebuilds with the kit's own code and replaces it).
    """
    shipped = sorted(p.name for p in toy_build.SHIPPED_DIR.glob("toy-*"))
    expected = {
        name: f"toy-{toy_build.config_hash(c)}" for name, c in toy_build.SHIPPED_WORLDS.items()
    }
    assert shipped == sorted(expected.values()), shipped
    assert expected["tiny"] == f"toy-{toy_build.config_hash(ToyConfig())}"
    for folder in shipped:
        stats = toy_build.warmstart_stats(toy_build.SHIPPED_DIR / folder)
        assert stats["code_version"] == toy.CODE_VERSION
    stats = toy_build.warmstart_stats(toy_build.SHIPPED_DIR / expected["tiny"])
    assert 0.2 <= stats["acc_T1"]["all"] <= 0.6  # the band at T=1.0


def test_cache_miss_installs_the_shipped_world_without_training(tmp_path):
    start = time.perf_counter()
    path = toy_build.build_toy_world(ToyConfig(), cache_dir=tmp_path)
    assert time.perf_counter() - start < 10  # a copy, not a 900-step warm start
    model, tok = toy_build.load_toy_world(ToyConfig(), cache_dir=tmp_path)
    assert path.parent == tmp_path and sum(p.numel() for p in model.parameters()) > 0
    assert tok.apply_chat_template([{"role": "user", "content": "1+2"}], tokenize=False)


def test_regeneration_is_one_command(tmp_path, monkeypatch):
    """`ship_toy_world` builds with the kit's code and replaces the shipped folder (tiny run)."""
    monkeypatch.setenv("POLARIS_CACHE", str(tmp_path / "cache"))
    cfg = ToyConfig(warmstart_steps=2, hidden_size=32, num_heads=2, num_kv_heads=1, max_terms=3)
    dest = tmp_path / "assets"
    (dest / "toy-stale").mkdir(parents=True)
    other = ToyConfig(seed=3)
    (dest / f"toy-{toy_build.config_hash(other)}").mkdir(parents=True)  # another current world
    out = toy_build.ship_toy_world(cfg, dest=dest, eval_per_difficulty=1, keep=(other,))
    assert out.name == f"toy-{toy_build.config_hash(cfg)}" and (out / "model.safetensors").exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [out.name, f"toy-{toy_build.config_hash(other)}"]
    )
