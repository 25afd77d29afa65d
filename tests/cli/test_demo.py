import json
import subprocess
import sys


def test_demo_prints_tables_and_writes_report(cli, tmp_path):
    report, out = tmp_path / "demo.html", tmp_path / "demo.json"
    result = cli("demo", "--n", 40, "--report", report, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "zero-shot accuracy" in result.stdout and "caption retrieval" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["model"] == "cliplab:shapes-tiny" and figures["precision"] in ("fp32", "bf16")
    assert set(figures["zeroshot_accuracy"]) == {"shape", "color", "size", "position", "background"}
    assert 0 <= figures["retrieval"]["image_retrieval_recall@1"] <= figures["retrieval"]["image_retrieval_recall@5"] <= 1
    html = report.read_text()
    for attribute in ("shape", "color", "size", "position", "background"):  # one confusion matrix each
        assert f"Confusion matrix: {attribute}" in html
    assert html.count("data:image/png;base64") == 6  # five matrices and the retrieval grid


def test_demo_rejects_unknown_split(cli, tmp_path):
    result = cli("demo", "--n", 10, "--split", "validation", "--report", tmp_path / "r.html")
    assert result.exit_code == 2 and "validation" in result.output


def test_console_script_lists_every_command():
    result = subprocess.run([sys.executable, "-c", "from cliplab.cli import main; main()", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("demo", "data", "embed", "classify", "eval"):
        assert command in result.stdout
