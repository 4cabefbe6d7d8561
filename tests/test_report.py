"""Evidence reports: the JSON carries every provenance field, and the self-contained HTML
renders to a non-blank page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from lineage.batch import create_job, parse_manifest, run_job
from lineage.cli import main

pytestmark = pytest.mark.slow


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed: `make setup` installs it (apt-get install "
                "chromium)")


def test_report_provenance_and_html_renders(home_copy, small_zoo, zoo_manifest, tmp_path,
                                            capsys):
    sus = [m for m in zoo_manifest["models"] if m["role"] == "suspect"][:2]
    m = parse_manifest("defaults:\n  access: text\n  max_queries: 16\nsuspects:\n" + "".join(
        f"  - name: {x['name']}\n    model: {small_zoo / x['path']}\n" for x in sus))
    job, _ = create_job(home_copy, m, request_id="rep", source="test")
    run_job(home_copy, job.id)

    html_file = tmp_path / "report.html"
    assert main(["--home", str(home_copy), "report", job.id, "--html", str(html_file),
                 "--json", "-q"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kind"] == "batch" and rep["job"]["job_id"] == job.id
    assert len(rep["scans"]) == 2
    for s, x in zip(rep["scans"], sus):
        p = s["provenance"]
        assert s["name"] == x["name"]
        assert p["suite"]["name"] == "default" and re.fullmatch(r"[0-9a-f]{64}",
                                                                p["suite"]["hash"])
        assert p["suspect"]["kind"] == "local"
        assert re.fullmatch(r"[0-9a-f]{64}", p["suspect"]["weights_sha256"])
        assert p["suspect"]["path"] == str(small_zoo / x["path"])
        assert 8 <= p["queries"] <= 16 and p["access"] == "text"
        ts = p["timestamps"]
        assert ts["scanned_at"] and ts["job_created_at"] and ts["job_started_at"] \
            and ts["job_finished_at"]
        assert p["lineage_version"] == "0.1.0"
        assert [t["name"] for t in p["teachers"]] == [c["teacher"] for c in s["candidates"]]
        assert all(re.fullmatch(r"[0-9a-f]{64}", t["weights_sha256"]) for t in p["teachers"])
        assert all(len(c["evidence"]) >= 1 for c in s["candidates"])

    # one scan's report, by scan id
    assert main(["--home", str(home_copy), "report", rep["scans"][0]["scan_id"], "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["kind"] == "scan" and len(one["scans"]) == 1 and one["job"] is None

    page = html_file.read_text()
    assert page.count("data:image/png;base64,") == 4  # 2 plots per scan
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", page)  # self-contained

    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,1600",
                    html_file.as_uri()], check=True, capture_output=True, timeout=120)
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (1600, 1200)
    assert img.std() > 20  # not a blank page
    assert (img < 128).mean() > 0.01  # some dark ink: text and plot lines
