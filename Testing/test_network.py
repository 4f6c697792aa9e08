"""The shared multi-domain network: shapes, domain-specific BN and heads, ImageNet loading."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from PediatricBoneSegLib.network import ENCODERS, FeatureScale, MultiDomainUNet, NetworkConfig, load_imagenet_encoder
from PediatricBoneSegLib.network.domain_norm import contiguous_runs

IMAGENET_MOBILENET = Path(__file__).parents[1] / "training" / "weights" / "mobilenet_v2_imagenet.safetensors"
SMALL_DECODER = (32, 16, 16, 8, 8)


def small_network(encoder: str, **kwargs) -> MultiDomainUNet:
    return MultiDomainUNet(NetworkConfig(encoder=encoder, decoder_channels=SMALL_DECODER, **kwargs))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_output_shapes_per_encoder_and_domain(encoder: str) -> None:
    torch.manual_seed(0)
    network = small_network(encoder, classes_per_domain=(4, 5, 3))
    output = network(torch.randn(6, 1, 64, 96), [0, 0, 1, 1, 2, 2], with_embeddings=True)
    assert {d: tuple(t.shape) for d, t in output.logits.items()} == {
        0: (2, 4, 64, 96),
        1: (2, 5, 64, 96),
        2: (2, 3, 64, 96),
    }
    assert set(output.embeddings) == {"enc4", "enc5", "dec1"}
    for embedding in output.embeddings.values():
        assert embedding.shape == (6, 128)
        torch.testing.assert_close(embedding.norm(dim=1), torch.ones(6))


def test_shared_variant_has_one_norm_set_and_one_union_head() -> None:
    network = small_network("resnet18", classes_per_domain=(9, 9, 9), shared=True)
    assert len(network.heads) == 1
    assert len(network.encoder.bn1.norms) == 1
    output = network(torch.randn(3, 1, 64, 64), [0, 1, 2])
    assert [t.shape[1] for t in output.logits.values()] == [9, 9, 9]


@pytest.mark.parametrize("text", ["enc1", "enc5", "dec1", "dec5"])
def test_feature_scale_text_round_trips(text: str) -> None:
    scale = FeatureScale.parse(text)
    assert str(scale) == text and scale == FeatureScale(text[:3], int(text[3]))  # type: ignore[arg-type]
    assert scale.pick(["e1", "e2", "e3", "e4", "e5"], ["d1", "d2", "d3", "d4", "d5"]) == text[0] + text[3]


@pytest.mark.parametrize(
    "text", ["enc0", "enc6", "dec10", "enc05", "Enc4", "mid2", "enc", "enc4 ", "features:enc5", ""]
)
def test_feature_scale_refuses_a_bad_text_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=f"feature scale {text!r} is not enc1..enc5 or dec1..dec5"):
        FeatureScale.parse(text)
    with pytest.raises(ValueError, match=f"projection scale {text!r} is not enc1..enc5 or dec1..dec5"):
        NetworkConfig(projection_scales=("enc4", text))


def test_feature_scale_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="is not enc1..enc5 or dec1..dec5"):
        FeatureScale("dec", 6)
    with pytest.raises(ValueError, match="is not enc1..enc5 or dec1..dec5"):
        FeatureScale("mid", 1)  # type: ignore[arg-type]


def test_config_keeps_the_scale_texts_and_parses_them() -> None:
    config = NetworkConfig(projection_scales=("dec2", "enc3"))
    assert config.feature_scales == (FeatureScale("dec", 2), FeatureScale("enc", 3))
    assert config.to_json()["projection_scales"] == ("dec2", "enc3")
    assert NetworkConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    network = small_network("resnet18", projection_scales=("dec2", "enc3"))
    assert list(network.projections) == ["dec2", "enc3"]
    output = network(torch.randn(2, 1, 64, 64), 0, with_embeddings=True)
    assert list(output.embeddings) == ["dec2", "enc3"]


def test_head_and_norm_set_of_each_domain() -> None:
    separate = NetworkConfig(classes_per_domain=(4, 5, 3))
    shared = NetworkConfig(classes_per_domain=(9, 9, 9), shared=True)
    assert [separate.head_of(d) for d in range(3)] == [separate.norm_set_of(d) for d in range(3)] == [0, 1, 2]
    assert [shared.head_of(d) for d in range(3)] == [shared.norm_set_of(d) for d in range(3)] == [0, 0, 0]
    for config in (separate, shared):
        for domain in (-1, 3):
            with pytest.raises(ValueError, match=rf"domain {domain} outside 0..2"):
                config.head_of(domain)
    with pytest.raises(ValueError, match=r"domain 3 outside 0..2"):
        small_network("resnet18")(torch.randn(2, 1, 64, 64), [0, 3])


def test_convolutions_shared_while_bn_statistics_differ_after_a_step() -> None:
    torch.manual_seed(0)
    network = small_network("resnet18", classes_per_domain=(3, 3))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    # two domains with different intensity statistics, one forward pass
    x = torch.cat([torch.randn(2, 1, 64, 64), 5 + 3 * torch.randn(2, 1, 64, 64)])
    output = network(x, [0, 0, 1, 1])
    sum(t.mean() for t in output.logits.values()).backward()
    optimizer.step()
    # convolutions exist once whatever the number of domains: the same tensors serve every domain
    single = small_network("resnet18", classes_per_domain=(3,))
    convs = [n for n, m in network.named_modules() if isinstance(m, torch.nn.Conv2d) and not n.startswith("heads")]
    assert convs == [
        n for n, m in single.named_modules() if isinstance(m, torch.nn.Conv2d) and not n.startswith("heads")
    ]
    bn = network.encoder.bn1
    assert not torch.allclose(bn.norms[0].running_mean, bn.norms[1].running_mean)
    assert not torch.allclose(bn.norms[0].running_var, bn.norms[1].running_var)
    assert network.encoder.conv1.weight.grad is not None  # both domains' samples trained it


def test_backward_on_domain_a_leaves_domain_b_untouched() -> None:
    torch.manual_seed(0)
    network = small_network("resnet18", classes_per_domain=(3, 4))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    output = network(torch.randn(4, 1, 64, 64), 0)
    output.logits[0].mean().backward()
    optimizer.step()
    after = network.state_dict()
    domain_b = [k for k in after if ".norms.1." in k or k.startswith("heads.1.")]
    domain_a = [k for k in after if (".norms.0." in k or k.startswith("heads.0.")) and "num_batches" not in k]
    assert domain_b and all(torch.equal(before[k], after[k]) for k in domain_b)
    assert any(not torch.equal(before[k], after[k]) for k in domain_a)
    assert not torch.equal(before["encoder.conv1.weight"], after["encoder.conv1.weight"])


def test_mixed_batch_equals_each_domain_forwarded_alone() -> None:
    """One forward of a batch stacking three domains' mini-batches gives each domain the logits,
    gradients and BN running statistics of that domain's mini-batch forwarded alone."""
    torch.manual_seed(0)
    mixed = small_network("mobilenet_v2", classes_per_domain=(4, 5, 3)).double()
    alone = copy.deepcopy(mixed)
    sizes = (2, 3, 1)
    batches = [
        shift + scale * torch.randn(n, 1, 64, 64, dtype=torch.float64)
        for n, shift, scale in zip(sizes, (0, 4, -2), (1, 3, 0.5))
    ]
    domains = [d for d, n in enumerate(sizes) for _ in range(n)]
    output = mixed(torch.cat(batches), domains)
    sum((t * t).mean() for t in output.logits.values()).backward()
    for domain, batch in enumerate(batches):
        logits = alone(batch, domain).logits[domain]
        torch.testing.assert_close(output.logits[domain], logits)
        (logits * logits).mean().backward()
    for (name, ours), (_, reference) in zip(mixed.named_parameters(), alone.named_parameters()):
        assert (ours.grad is None) == (reference.grad is None), name
        if ours.grad is not None:
            torch.testing.assert_close(ours.grad, reference.grad, msg=name)
    for name, buffer in alone.named_buffers():
        torch.testing.assert_close(mixed.get_buffer(name), buffer, msg=name)


def test_interleaved_domains_are_refused() -> None:
    network = small_network("resnet18", classes_per_domain=(3, 3))
    with pytest.raises(ValueError, match="contiguous"):
        network(torch.randn(3, 1, 64, 64), [0, 1, 0])
    assert contiguous_runs([2, 2, 0, 1, 1, 1]) == [(2, 2), (0, 1), (1, 3)]


def torchvision_named_state(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An encoder state dict renamed to torchvision's layout (one BN per layer, RGB first conv,
    a classifier) with different values, as a torchvision ImageNet file would be."""
    state = {}
    for key, value in encoder.state_dict().items():
        if ".norms." in key:
            prefix, rest = key.split(".norms.")
            domain, suffix = rest.split(".", 1)
            if domain != "0":
                continue
            key = f"{prefix}.{suffix}"
        state[key] = torch.rand_like(value.float()).to(value.dtype) if value.is_floating_point() else value
    first = "conv1.weight" if "conv1.weight" in state else "features.0.0.weight"
    state[first] = torch.rand(state[first].shape[0], 3, *state[first].shape[2:])
    state["fc.weight"], state["fc.bias"] = torch.rand(1000, 8), torch.rand(1000)
    return state


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
def test_torchvision_resnet_state_dict_maps_with_zero_unmatched_keys(encoder: str, tmp_path: Path) -> None:
    network = small_network(encoder)
    state = torchvision_named_state(network.encoder)
    # spot-check torchvision's own names
    expected = {
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer4.1.bn2.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
    }
    assert expected <= set(state)
    path = tmp_path / "imagenet.safetensors"
    save_file(state, str(path))
    report = load_imagenet_encoder(network.encoder, path)
    assert report.unmatched == [] and report.missing == []
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    for domain in range(3):
        torch.testing.assert_close(network.encoder.bn1.norms[domain].weight, state["bn1.weight"])
    torch.testing.assert_close(network.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))


def test_wrong_shaped_state_dict_is_refused(tmp_path: Path) -> None:
    network = small_network("resnet18")
    state = torchvision_named_state(network.encoder)
    state["layer1.0.conv1.weight"] = torch.rand(32, 64, 3, 3)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"wrong.safetensors.*layer1.0.conv1.weight"):
        load_imagenet_encoder(network.encoder, path)


def test_shipped_imagenet_mobilenet_maps_completely() -> None:
    network = small_network("mobilenet_v2")
    before = network.encoder.features[5].conv[1][0].weight.clone()
    report = load_imagenet_encoder(network.encoder, IMAGENET_MOBILENET)
    assert (report.unmatched, report.missing, report.ignored) == ([], [], [])
    assert not torch.equal(before, network.encoder.features[5].conv[1][0].weight)


def test_pickle_state_dict_read_with_restricted_loader_only(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(ValueError, match="evil.pth"):
        load_imagenet_encoder(small_network("resnet18").encoder, path)
