"""experiments/demo.ipynb runs top to bottom on a tiny random checkpoint and a VOC image."""

import os
import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "demo.ipynb"


def test_demo_notebook_executes(tiny_checkpoint, voc_root, tmp_path, monkeypatch):
  monkeypatch.setenv("GROUPVIT_CHECKPOINT", str(tiny_checkpoint))
  monkeypatch.setenv("GROUPVIT_IMAGE", str(voc_root / "VOC2012" / "JPEGImages" / "2009_000573.jpg"))
  monkeypatch.setenv("GROUPVIT_CLASSES", "bicycle, house, road, tree")
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # compile time only
  repo = str(NOTEBOOK.parents[1])
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 3  # overlay, groups, second vocabulary
  assert (tmp_path / "mask.png").is_file()
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "image 513x513" in text
