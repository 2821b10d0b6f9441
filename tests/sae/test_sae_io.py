"""Save/load in the SAELens layout: round trips and folders written the way SAELens writes them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from workbench.sae import AttentionSAE, SAEConfig, architectures


@pytest.mark.parametrize("architecture", architectures())
def test_round_trip(tmp_path, architecture):
    cfg = SAEConfig(d_in=12, d_sae=20, architecture=architecture, k=3 if architecture in ("topk", "batchtopk", "matryoshka") else None,
                    n_heads=3, hook_name="blocks.1.attn.hook_z", model_name="tiny-attn-2l", l1_coefficient=0.2)
    sae = AttentionSAE(cfg, seed=4)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sae.save(tmp_path)
    loaded = AttentionSAE.load(tmp_path)
    assert loaded.cfg == sae.cfg
    x = torch.randn(7, 12)
    assert torch.allclose(loaded(x), sae(x), atol=1e-6)
    doc = json.loads((tmp_path / "cfg.json").read_text())
    # the names SAELens' loader reads
    assert {"d_in", "d_sae", "architecture", "dtype", "apply_b_dec_to_input", "normalize_activations",
            "hook_name", "model_name", "reshape_activations"} <= set(doc)
    assert doc["reshape_activations"] == "hook_z"
    if architecture == "topk":
        assert doc["k"] == doc["activation_fn_kwargs"]["k"] == 3
        assert doc["rescale_acts_by_decoder_norm"] is False  # our native ranking leaves folded, as SAELens reads it
    if architecture == "batchtopk":  # saved the way SAELens saves a trained BatchTopK SAE
        assert doc["architecture"] == "jumprelu" and doc["workbench"]["architecture"] == "batchtopk"
        assert doc["workbench"]["k"] == 3
    if architecture == "matryoshka":  # also a trained BatchTopK SAE to SAELens; the prefixes are ours
        assert doc["architecture"] == "jumprelu" and doc["workbench"]["architecture"] == "matryoshka"
        assert doc["workbench"]["matryoshka_widths"] == [5, 10, 20] and loaded.cfg.matryoshka_widths == (5, 10, 20)


def _write(folder, cfg: dict, tensors: dict) -> None:
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, folder / "sae_weights.safetensors")


def test_loads_a_pre_6_saelens_hook_z_folder(tmp_path):
    """Flat config as in released GPT-2 small hook_z SAEs (hook_point, activation_fn_str, bool normalisation)."""
    gen = torch.Generator().manual_seed(0)
    tensors = {"W_enc": torch.randn(64, 256, generator=gen), "W_dec": torch.randn(256, 64, generator=gen),
               "b_enc": torch.randn(256, generator=gen), "b_dec": torch.randn(64, generator=gen),
               "scaling_factor": torch.ones(256)}
    cfg = {"model_name": "gpt2-small", "hook_point": "blocks.5.attn.hook_z", "hook_point_layer": 5,
           "hook_point_head_index": None, "d_in": 64, "d_sae": 256, "dtype": "torch.float32", "device": "cuda",
           "activation_fn_str": "relu", "normalize_activations": False, "context_size": 128,
           "sae_lens_training_version": None, "prepend_bos": True}
    _write(tmp_path / "sae", cfg, tensors)
    sae = AttentionSAE.load(tmp_path / "sae")
    assert (sae.cfg.architecture, sae.cfg.hook_name, sae.cfg.model_name) == ("standard", "blocks.5.attn.hook_z",
                                                                           "gpt2-small")
    x = torch.randn(5, 64, generator=gen)
    expected = torch.relu((x - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]) @ tensors["W_dec"] \
        + tensors["b_dec"]
    assert torch.allclose(sae(x), expected, atol=1e-4)


def test_loads_a_saelens_6_topk_and_jumprelu_folder(tmp_path):
    gen = torch.Generator().manual_seed(1)
    core = {"W_enc": torch.randn(8, 32, generator=gen), "W_dec": torch.randn(32, 8, generator=gen),
            "b_enc": torch.zeros(32), "b_dec": torch.zeros(8)}
    meta = {"metadata": {"hook_name": "blocks.0.attn.hook_z", "model_name": "m", "sae_lens_version": "6.5.0"}}
    _write(tmp_path / "topk", {"architecture": "topk", "d_in": 8, "d_sae": 32, "k": 5, "dtype": "float32",
                               "apply_b_dec_to_input": True, "normalize_activations": "none", **meta}, core)
    topk = AttentionSAE.load(tmp_path / "topk")
    assert (topk.cfg.k, topk.cfg.hook_name) == (5, "blocks.0.attn.hook_z")
    assert int((topk.encode(torch.randn(4, 8, generator=gen)) > 0).sum(-1).max()) <= 5
    threshold = torch.rand(32, generator=gen) + 0.5
    _write(tmp_path / "jump", {"architecture": "jumprelu", "d_in": 8, "d_sae": 32, "dtype": "float32",
                               "apply_b_dec_to_input": False, "normalize_activations": "none", **meta},
           {**core, "threshold": threshold})
    jump = AttentionSAE.load(tmp_path / "jump")
    x = torch.randn(6, 8, generator=gen)
    pre = x @ core["W_enc"]
    assert torch.allclose(jump.encode(x), pre * (pre > threshold), atol=1e-5)


def _core(d_in=8, d_sae=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=gen), "W_dec": torch.randn(d_sae, d_in, generator=gen),
            "b_enc": torch.randn(d_sae, generator=gen), "b_dec": torch.randn(d_in, generator=gen)}


def test_pre_6_topk_config_loads_as_topk(tmp_path):
    """activation_fn_str "topk" + activation_fn_kwargs.k, no architecture: a TopK SAE with that k (L0 8, not 32)."""
    t = _core(16, 32)
    _write(tmp_path / "s", {"d_in": 16, "d_sae": 32, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8},
                            "hook_point": "blocks.2.attn.hook_z", "normalize_activations": False}, t)
    sae = AttentionSAE.load(tmp_path / "s")
    assert (sae.cfg.architecture, sae.cfg.k, sae.cfg.hook_name) == ("topk", 8, "blocks.2.attn.hook_z")
    assert sae.cfg.apply_b_dec_to_input and sae.cfg.rescale_acts_by_decoder_norm is False
    x = torch.randn(50, 16)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    vals, idx = pre.topk(8, dim=-1)
    expected = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
    assert torch.allclose(sae.encode(x), expected, atol=1e-5)


@pytest.mark.parametrize("rescale", [False, True])
def test_topk_rescale_flag_is_honoured_and_written(tmp_path, rescale):
    t = _core()
    t["W_dec"] = t["W_dec"] * torch.linspace(0.1, 3.0, 16)[:, None]  # norms far apart: the flag changes the set
    meta = {"metadata": {"sae_lens_version": "6.5.0"}}
    _write(tmp_path / "s", {"architecture": "topk", "d_in": 8, "d_sae": 16, "k": 3,
                            "rescale_acts_by_decoder_norm": rescale, **meta}, t)
    sae = AttentionSAE.load(tmp_path / "s")
    assert sae.cfg.rescale_acts_by_decoder_norm is rescale
    x = torch.randn(40, 8)
    n = t["W_dec"].norm(dim=1)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    key = pre * n if rescale else pre
    vals, idx = key.topk(3, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
    assert torch.allclose(sae.encode(x), f, atol=1e-5)
    assert torch.allclose(sae.decode(f), (f / n if rescale else f) @ t["W_dec"] + t["b_dec"], atol=1e-4)
    sae.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "cfg.json").read_text())["rescale_acts_by_decoder_norm"] is rescale
    assert torch.equal(AttentionSAE.load(tmp_path / "again").encode(x), sae.encode(x))


def test_jumprelu_zero_thresholds_load_and_reload_bit_exact(tmp_path):
    t = _core()
    threshold = torch.rand(16) * 0.5
    threshold[:4] = 0.0
    _write(tmp_path / "s", {"architecture": "jumprelu", "d_in": 8, "d_sae": 16,
                            "metadata": {"sae_lens_version": "6.5.0"}}, {**t, "threshold": threshold})
    sae = AttentionSAE.load(tmp_path / "s")
    x = torch.randn(30, 8)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    assert torch.equal(sae.encode(x), pre.relu() * (pre > threshold))
    sae.save(tmp_path / "again")
    from safetensors.torch import load_file

    assert torch.equal(load_file(tmp_path / "again" / "sae_weights.safetensors")["threshold"], threshold)
    # a latent exactly at its threshold stays off after a reload (log storage moved thresholds by ~1e-7)
    at = torch.zeros(16)
    at[5] = 1.0
    x_at = (at * threshold[5] - t["b_enc"]) @ torch.linalg.pinv(t["W_enc"]) + t["b_dec"]
    reloaded = AttentionSAE.load(tmp_path / "again")
    assert torch.equal(reloaded.encode(x_at), sae.encode(x_at))
    assert AttentionSAE(SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", jumprelu_init_threshold=0.0)).encode(
        torch.ones(1, 4)).shape == (1, 8)
    _write(tmp_path / "neg", {"architecture": "jumprelu", "d_in": 8, "d_sae": 16,
                              "metadata": {"sae_lens_version": "6.5.0"}}, {**t, "threshold": threshold - 1})
    with pytest.raises(ValueError, match="threshold"):
        AttentionSAE.load(tmp_path / "neg")


@pytest.mark.parametrize("where", ["argument", "cfg", "scaler"])
def test_expected_average_only_in_folds_the_factor(tmp_path, where):
    t = _core()
    cfg = {"architecture": "standard", "d_in": 8, "d_sae": 16, "normalize_activations": "expected_average_only_in",
           "metadata": {"sae_lens_version": "6.5.0"}}
    if where == "cfg":
        cfg["norm_scaling_factor"] = 2.5
    _write(tmp_path / "s", cfg, t)
    if where == "scaler":
        (tmp_path / "s" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.5}))
    sae = AttentionSAE.load(tmp_path / "s") if where != "argument" else \
        __import__("workbench.sae", fromlist=["load_sae"]).load_sae(tmp_path / "s", norm_scaling_factor=2.5)
    x = torch.randn(20, 8)
    # the SAE was trained on 2.5 x: reconstruct 2.5 x, then undo the scaling
    expected = (torch.relu((2.5 * x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]) / 2.5
    assert torch.allclose(sae(x), expected, atol=1e-4)


def test_normalisation_without_factor_or_unknown_is_refused(tmp_path):
    core = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    _write(tmp_path / "s", {"d_in": 4, "d_sae": 8, "normalize_activations": "expected_average_only_in"}, core)
    with pytest.raises(ValueError, match="normalize_activations: 'expected_average_only_in'.*norm_scaling_factor"):
        AttentionSAE.load(tmp_path / "s")
    _write(tmp_path / "ln", {"d_in": 4, "d_sae": 8, "normalize_activations": "layer_norm"}, core)
    with pytest.raises(ValueError, match="normalize_activations='layer_norm'"):
        AttentionSAE.load(tmp_path / "ln")


def test_pre_6_finetuning_scaling_factor_scales_the_latents(tmp_path):
    t = _core()
    s = torch.rand(16) + 0.5
    _write(tmp_path / "s", {"d_in": 8, "d_sae": 16, "finetuning_scaling_factor": True},
           {**t, "scaling_factor": s})
    x = torch.randn(10, 8)
    f = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    assert torch.allclose(AttentionSAE.load(tmp_path / "s")(x), (f * s) @ t["W_dec"] + t["b_dec"], atol=1e-4)
    _write(tmp_path / "off", {"d_in": 8, "d_sae": 16}, {**t, "scaling_factor": s})
    with pytest.raises(ValueError, match="finetuning_scaling_factor"):
        AttentionSAE.load(tmp_path / "off")


def test_a_topk_folder_we_saved_before_the_flag_keeps_our_ranking(tmp_path):
    """Folders of earlier versions (our key, no flag) ranked by pre * ||W_dec[i]||; they still do."""
    t = _core()
    t["W_dec"] = t["W_dec"] * torch.linspace(0.1, 3.0, 16)[:, None]
    _write(tmp_path / "old", {"architecture": "topk", "d_in": 8, "d_sae": 16, "k": 3,
                              "workbench": {"version": "0.1.0"}}, t)
    sae = AttentionSAE.load(tmp_path / "old")
    assert sae.cfg.rescale_acts_by_decoder_norm is None
    x = torch.randn(40, 8)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    idx = (pre * t["W_dec"].norm(dim=1)).topk(3, dim=-1).indices
    assert torch.allclose(sae.encode(x), torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx).relu()), atol=1e-5)


def test_exact_thresholds_give_way_once_training_moves_them():
    from workbench.sae.jumprelu import set_thresholds, thresholds

    sae = AttentionSAE(SAEConfig(d_in=4, d_sae=3, architecture="jumprelu"))
    exact = torch.tensor([0.0, 0.1, 0.7])
    set_thresholds(sae, exact)
    assert thresholds(sae) is not None and torch.equal(thresholds(sae), exact)
    with torch.no_grad():
        sae.log_threshold.add_(0.5)  # what an optimiser step does
    assert torch.allclose(thresholds(sae), exact.clamp_min(torch.finfo(torch.float32).tiny) * torch.exp(
        torch.tensor(0.5)))


def test_bad_flag_and_threshold_values_are_refused():
    with pytest.raises(ValueError, match="rescale_acts_by_decoder_norm"):
        SAEConfig(d_in=4, d_sae=8, architecture="standard", rescale_acts_by_decoder_norm=True)
    with pytest.raises(ValueError, match="rescale_acts_by_decoder_norm"):
        SAEConfig(d_in=4, d_sae=8, k=2, rescale_acts_by_decoder_norm="yes")
    with pytest.raises(ValueError, match="jumprelu_init_threshold"):
        SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", jumprelu_init_threshold=-0.1)


def test_saved_without_a_hook_name_writes_a_string_saelens_can_read(tmp_path):
    """SAELens 6.54 crashes on ``"hook_name": null`` (its hook_z check iterates the name); we write ""."""
    import json

    from workbench.sae import AttentionSAE, SAEConfig, load_sae, save_sae

    save_sae(AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2)), tmp_path / "sae")
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["hook_name"] == ""
    assert load_sae(tmp_path / "sae").cfg.hook_name is None


def _save_many(folder, seed, n):
    import torch

    from workbench.sae import AttentionSAE, SAEConfig, save_sae

    torch.manual_seed(seed)
    for _ in range(n):
        save_sae(AttentionSAE(SAEConfig(d_in=16, d_sae=64, k=4)), folder)


def test_concurrent_saves_to_one_folder_all_succeed_and_leave_one_whole_save(tmp_path):
    """Threads and processes saving into one folder while others load it: no save fails, no load sees
    files from two saves, no temporary file is left (issue 16: 8 of 30 concurrent saves used to fail)."""
    import multiprocessing
    import threading

    from workbench.sae import load_sae

    folder = tmp_path / "sae"
    _save_many(folder, 0, 1)
    errors = []

    def guarded(fn, *args):
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(err))

    def loads():
        for _ in range(20):
            load_sae(folder)

    processes = [multiprocessing.get_context("spawn").Process(target=_save_many, args=(folder, s, 5)) for s in (1, 2)]
    threads = [threading.Thread(target=guarded, args=(_save_many, folder, s, 5)) for s in range(3, 7)]
    threads += [threading.Thread(target=guarded, args=(loads,)) for _ in range(2)]
    for worker in processes + threads:
        worker.start()
    for worker in processes + threads:
        worker.join(120)
    assert errors == [] and all(p.exitcode == 0 for p in processes), (errors, [p.exitcode for p in processes])
    assert load_sae(folder).cfg.d_sae == 64
    assert sorted(p.name for p in folder.iterdir()) == [".save.lock", "cfg.json", "sae_weights.safetensors"]
