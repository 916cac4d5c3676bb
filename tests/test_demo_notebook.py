"""experiments/demo.ipynb runs top to bottom on a VOC image and a tiny checkpoint given by hub name,
read from an offline Hugging Face cache."""

import os
import pathlib

import nbformat
from nbclient import NotebookClient

from hub_cache import tiny_hub_cache

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "demo.ipynb"


def test_demo_notebook_executes(voc_root, tmp_path, monkeypatch):
  cache = tiny_hub_cache(tmp_path / "hf", "testorg/groupvit-tiny")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_CACHE", str(cache))
  monkeypatch.setenv("GROUPVIT_CHECKPOINT", "testorg/groupvit-tiny")
  monkeypatch.setenv("GROUPVIT_IMAGE", str(voc_root / "VOC2012" / "JPEGImages" / "2009_000573.jpg"))
  monkeypatch.setenv("GROUPVIT_CLASSES", "bicycle, house, road, tree")
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # compile time only
  repo = str(NOTEBOOK.parents[1])
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
  (tmp_path / "run").mkdir()
  nb = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path / "run")}}).execute()
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 3  # overlay, groups, second vocabulary
  assert (tmp_path / "run" / "mask.png").is_file()
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "image 513x513" in text and "checkpoint: testorg/groupvit-tiny" in text
