"""The README's speed table is the one ``experiments/benchmarks/speed_table.py`` builds from the
result files (no number typed by hand), and the builder reads the numbers it is given."""

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "benchmarks"))
import speed_table  # noqa: E402


def test_readme_table_is_rebuilt_from_the_result_files():
  assert speed_table.main(["--check"]) == 0


def test_rows_carry_the_files_numbers_and_machine(tmp_path):
  row = {"part": "forward", "name": "image encoder forward, batch 8, 224 px", "dtype": "float32",
         "ours": {"min_s": 0.25, "median_s": 0.3}, "transformers": {"min_s": 0.5, "median_s": 0.45},
         "ratio": {"min": 2.0, "median": 1.5, "busy": True}}
  (tmp_path / "cpu_vs_torch.json").write_text(json.dumps(
      {"machine": {"cpu": "Test CPU", "cpu_count": 3, "load_average": [7.5, 1, 1]}, "rows": [row]}))
  lines = speed_table.table(str(tmp_path)).splitlines()
  assert len(lines) == 3
  cells = [c.strip() for c in lines[2].strip("|").split("|")]
  assert cells[1:4] == ["0.25 s", "0.5 s", "2.00x best, 1.50x median (machine busy)"]
  assert cells[4] == "Test CPU, 3 cores, CPU, load 7.5"
  assert cells[5] == "`results/cpu_vs_torch.json`"


def test_splice_replaces_only_between_the_markers():
  text = f"intro\n{speed_table.BEGIN}\nold\n{speed_table.END}\noutro\n"
  out = speed_table.splice(text, "| new |\n")
  assert out == f"intro\n{speed_table.BEGIN}\n| new |\n{speed_table.END}\noutro\n"
