"""The README's speed table is the one ``experiments/benchmarks/speed_table.py`` builds from the
result files (no number typed by hand), and the builder reads the numbers it is given."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmarks" / "speed_table.py"
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"


def speed_table(*args):
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120)


def test_readme_table_is_rebuilt_from_the_result_files():
  proc = speed_table("--check")
  assert proc.returncode == 0, proc.stderr


def test_rows_carry_the_files_numbers_and_machine_and_only_the_table_changes(tmp_path):
  row = {"part": "forward", "name": "image encoder forward, batch 8, 224 px", "dtype": "float32",
         "ours": {"min_s": 0.25, "median_s": 0.3}, "transformers": {"min_s": 0.5, "median_s": 0.45},
         "ratio": {"min": 2.0, "median": 1.5, "busy": True}}
  results = tmp_path / "results"
  results.mkdir()
  (results / "cpu_vs_torch.json").write_text(json.dumps(
      {"machine": {"cpu": "Test CPU", "cpu_count": 3, "cores_used": 1,
                   "load_average": [7.5, 1, 1]}, "rows": [row]}))
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
  assert speed_table("--check", "--readme", str(readme), "--results", str(results)).returncode == 1
  proc = speed_table("--readme", str(readme), "--results", str(results))
  assert proc.returncode == 0, proc.stderr
  text = readme.read_text()
  assert text.startswith(f"intro\n{BEGIN}\n") and text.endswith(f"{END}\noutro\n")
  lines = text.split(BEGIN)[1].split(END)[0].strip().splitlines()
  assert len(lines) == 3
  cells = [c.strip() for c in lines[2].strip("|").split("|")]
  assert cells[1:4] == ["0.25 s", "0.5 s", "2.00x best, 1.50x median (machine busy)"]
  assert cells[4] == "Test CPU, 3 cores (1 used), CPU, load 7.5"
  assert cells[5] == "`results/cpu_vs_torch.json`"
  assert speed_table("--check", "--readme", str(readme), "--results", str(results)).returncode == 0
