"""Reading PyTorch-side weight files into numpy state dicts.

``.safetensors`` needs no torch. ``.pth``/``.bin`` pickles need torch only to unpickle; official
training checkpoints also pickle an OmegaConf config and optimizer state, which are skipped by a
restricted unpickler (only tensors and plain containers are built, so nothing else runs).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load_file as load_safetensors


class TorchMissingError(ImportError):
  pass


def _import_torch(path: str):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TorchMissingError(
        f"{path} is a PyTorch pickle; reading it needs torch (pip install torch==2.13.0, CPU is "
        "enough). torch is used only to unpickle the file; or convert it once elsewhere with "
        "`groupvit-jax convert` and load the result without torch.") from e
  return torch


class _Stub:
  """Stands in for any pickled object that is not a tensor or a plain container."""

  def __init__(self, *args, **kwargs):
    pass

  def __setstate__(self, state):
    pass

  def __call__(self, *args, **kwargs):
    return _Stub()


def _stub_pickle_module(torch):
  allowed_prefixes = ("torch", "collections", "numpy", "_codecs", "builtins")

  class Unpickler(pickle.Unpickler):

    def find_class(self, module, name):
      if module.split(".")[0] in allowed_prefixes:
        if module == "builtins" and name not in {"dict", "list", "tuple", "set", "frozenset",
                                                 "int", "float", "str", "bytes", "bool", "slice",
                                                 "complex", "bytearray", "object"}:
          return _Stub
        return super().find_class(module, name)
      return _Stub

  class Module:
    pass

  module = Module()
  module.Unpickler = Unpickler
  module.load = pickle.load
  module.__name__ = "groupvit_stub_pickle"
  return module


def _to_numpy(sd: Mapping) -> dict[str, np.ndarray]:
  out = {}
  for k, v in sd.items():
    if hasattr(v, "detach"):
      v = v.detach().cpu()
      if str(v.dtype) == "torch.bfloat16":
        v = v.float()
      out[k] = v.numpy()
    elif isinstance(v, np.ndarray):
      out[k] = v
  return out


def read_torch_file(path: str) -> dict[str, np.ndarray]:
  """State dict of a ``torch.save`` file (official ``{'model': ...}`` or a plain state dict)."""
  torch = _import_torch(path)
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError:
    obj = torch.load(path, map_location="cpu", weights_only=False,
                     pickle_module=_stub_pickle_module(torch))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint ({e})") from e
  for key in ("model", "state_dict"):
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
      break
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path}: expected a state dict (or {{'model': state_dict}}), got "
                     f"{type(obj).__name__}")
  sd = _to_numpy(obj)
  sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
  if not sd:
    raise ValueError(f"{path}: holds no tensors")
  return sd


def read_weights_file(path: str) -> dict[str, np.ndarray]:
  """``.safetensors`` (no torch needed) or a torch pickle (``.pth``, ``.pt``, ``.bin``)."""
  if path.endswith(".safetensors"):
    try:
      return dict(load_safetensors(path))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
  return read_torch_file(path)


def read_hf_weights(directory: str) -> dict[str, np.ndarray]:
  """Weights of a transformers directory: model.safetensors (maybe sharded) or pytorch_model.bin."""
  for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
    index = os.path.join(directory, index_name)
    if os.path.exists(index):
      with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
      sd = {}
      for shard in shards:
        sd.update(read_weights_file(os.path.join(directory, shard)))
      return sd
  for name in ("model.safetensors", "pytorch_model.bin"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return read_weights_file(path)
  raise FileNotFoundError(
      f"{directory}: a transformers directory needs model.safetensors or pytorch_model.bin next "
      "to config.json; found " + ", ".join(sorted(os.listdir(directory))))
