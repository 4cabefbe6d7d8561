"""The Ray executor on a local Ray (2 CPUs): a batch of the zoo's suspects gives the same
verdicts (and p-values) as scanning them one by one."""

from __future__ import annotations

import pytest

from lineage.batch import create_job, job_store, parse_manifest, run_job
from lineage.engine import Lineage

pytestmark = pytest.mark.slow


def test_ray_batch_matches_one_by_one_scans(home_copy, small_zoo, zoo_manifest, monkeypatch):
    from lineage.batch.ray_exec import RayExecutor

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sus = [m for m in zoo_manifest["models"] if m["role"] == "suspect"]
    m = parse_manifest("defaults:\n  access: text\n  max_queries: 32\nsuspects:\n" + "".join(
        f"  - name: {x['name']}\n    model: {small_zoo / x['path']}\n" for x in sus))
    job, _ = create_job(home_copy, m, request_id="ray-1", source="test")
    done = run_job(home_copy, job.id, executor=RayExecutor("local", num_cpus=2))
    assert (done.state, done.done, done.failed) == ("succeeded", len(sus), 0)

    eng = Lineage(home_copy)
    for it in job_store(home_copy).items(job.id):
        batch = eng.get_scan(it.scan_id)
        single = eng.scan(it.spec.model, access="text", max_queries=32)
        assert single.id != batch.id
        assert [(c.teacher, c.verdict) for c in batch.candidates] == \
            [(c.teacher, c.verdict) for c in single.candidates]
        assert [c.raw_p_value for c in batch.candidates] == \
            pytest.approx([c.raw_p_value for c in single.candidates], rel=1e-6, abs=1e-9)
        assert batch.queries == single.queries <= 32
    eng.close()
