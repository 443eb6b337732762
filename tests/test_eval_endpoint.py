"""Evaluation runners against a served model (issue 13, items 3-6).

Server tests run a real ``transformers serve`` on 127.0.0.1 with the embedded demo model
(the session fixture ``served_demo``, and short-lived servers of this file for the
kill-and-restart test); the runners then ask it the questions of a few synthetic images
(:func:`omniad_train.synthetic.generate`) and are compared with the same runners in
process.  The protocol tests (held-out split, split file, training-set leakage) and the
failed-line tests need no server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from omniad_core import Inspector  # noqa: E402
from omniad_core.checkpoint import demo_model_path  # noqa: E402
from omniad_train.evaluation import build_report, read_jsonl, run_detection, run_mmad  # noqa: E402
from omniad_train.evaluation.cli import EXIT_FAILED_REQUESTS, detection_main, mmad_main  # noqa: E402
from omniad_train.evaluation.mmad_runner import _MMADTask, collect_mmad_items  # noqa: E402
from omniad_train.evaluation.model import Endpoint, load_inspector, model_settings  # noqa: E402
from omniad_train.evaluation.protocol import (  # noqa: E402
    EvalProtocol,
    TrainingOverlapError,
    split_value,
)
from omniad_train.evaluation.runfiles import RunConfigError  # noqa: E402
from omniad_train.evaluation.schema import check_line, is_finished  # noqa: E402

DEMO = demo_model_path()
#: The demo checkpoint's own settings: a served model has no omniad.json to read them from.
SERVED = ["--grid", "8", "--image_size", "224"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A few synthetic images in MVTec layout plus their MMAD-style mmad.json."""
    from omniad_train.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("synth") / "data",
        n_train_good=1,
        n_test_good=1,
        n_test_defect_per_type=1,
        categories=["fabric", "tile"],
        image_size=64,
        progress=False,
    )


@pytest.fixture(scope="module")
def demo_inspector():
    return Inspector.from_pretrained(DEMO)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --------------------------------------------------------------------------- a real server
def test_endpoint_answers_and_masks_match_in_process(served_demo, synth, demo_inspector, tmp_path):
    url, name = served_demo
    few = {"limit_per_category": 6, "progress": False}
    local = run_mmad(demo_inspector, synth.mmad_json, out=tmp_path / "ip", **few)
    served = run_mmad(
        None,
        synth.mmad_json,
        out=tmp_path / "ep",
        limit_per_category=6,
        endpoint=url,
        served_model=name,
        concurrency=4,
        grid=8,
        image_size=224,
        progress=False,
    )
    a, b = _lines(local.results), _lines(served.results)
    assert len(a) == len(b) == local.n_items > 8
    for x, y in zip(a, b, strict=True):
        assert x["id"] == y["id"] and x["status"] == y["status"] == "ok"
        assert y["response"] == x["response"] and y["seg"] == x["seg"]
        assert y["predicted"] == x["predicted"]
        # transformers serve splits the reply; the client rebuilt it, seg included
        assert y["seg_stripped"] is False and y["served"]["reasoning_content"]
    assert served.report["accuracy"] == local.report["accuracy"]
    assert served.report["served"]["seg_stripped"] == 0
    run = json.loads((tmp_path / "ep" / "run.json").read_text())["fingerprint"]
    assert (run["backend"], run["model"], run["endpoint"]) == ("endpoint", name, url)

    det_ip = run_detection(demo_inspector, synth.mvtec_root, out=tmp_path / "dip", progress=False)
    det_ep = run_detection(
        None,
        synth.mvtec_root,
        out=tmp_path / "dep",
        endpoint=Endpoint(url, name, concurrency=3),
        grid=8,
        image_size=224,
        progress=False,
    )
    a, b = _lines(det_ip.results), _lines(det_ep.results)
    assert len(a) == len(b) > 3
    for x, y in zip(a, b, strict=True):
        assert (y["pixel"], y["seg"], y["predicted"]) == (x["pixel"], x["seg"], x["predicted"])
    assert det_ep.report["rows"] == det_ip.report["rows"]


def test_endpoint_runs_resume_and_shard_like_in_process(served_demo, synth, tmp_path, capsys):
    url, name = served_demo
    base = ["--endpoint", url, "--served-model", name, *SERVED, "--mmad_json"]
    base += [str(synth.mmad_json), "--limit_per_category", "4", "--no_progress"]
    one = [*base, "--out", str(tmp_path / "one")]
    assert mmad_main([*one, "--limit", "3"]) == 0  # a quick look first, then the rest
    assert mmad_main([*one, "--concurrency", "2"]) == 0  # concurrency is no setting
    assert "(5 new)" in capsys.readouterr().err
    single = _lines(tmp_path / "one" / "results.jsonl")
    assert len(single) == len({d["id"] for d in single}) == 8
    assert mmad_main([*one, "--image_size", "112"]) == 1  # another setting: refused
    assert "other settings" in capsys.readouterr().err
    sharded = [*base, "--out", str(tmp_path / "sh")]
    assert mmad_main([*sharded, "--shard_index", "0", "--num_shards", "2"]) == 0
    assert mmad_main([*sharded, "--shard-index", "1", "--num-shards", "2"]) == 0
    merged = _lines(tmp_path / "sh" / "results.jsonl")
    assert [(d["id"], d["response"]) for d in merged] == [(d["id"], d["response"]) for d in single]
    report = json.loads((tmp_path / "sh" / "report.json").read_text())
    assert report["status"]["state"] == "complete" and report["counts"]["answered"] == 8


@pytest.mark.parametrize("case", ["key", "url", "name"])
def test_endpoint_errors_are_one_line_before_any_work(served_demo, synth, tmp_path, case, capsys):
    url, name = served_demo
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    extra = {
        "key": ["--endpoint", url, "--served_model", name, "--api_key_env", "OMNIAD_NO_SUCH_KEY"],
        "url": ["--endpoint", dead, "--served_model", name],
        "name": ["--endpoint", url, "--served_model", "no-such-model"],
    }[case]
    os.environ.pop("OMNIAD_NO_SUCH_KEY", None)
    out = tmp_path / "run"
    code = mmad_main([*extra, "--mmad_json", str(synth.mmad_json), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert {"key": "OMNIAD_NO_SUCH_KEY", "url": "cannot reach", "name": "no-such-model"}[case] in (
        err[0]
    )
    assert not out.exists()  # nothing read, nothing written


def test_fingerprint_has_url_and_name_never_the_key(served_demo, synth, tmp_path, monkeypatch):
    url, name = served_demo
    monkeypatch.setenv("OMNIAD_TEST_KEY", "sk-do-not-write-me-1234")
    out = tmp_path / "k"
    code = mmad_main(
        [
            *("--endpoint", url, "--served_model", name, "--api-key-env", "OMNIAD_TEST_KEY"),
            *SERVED,
            *("--mmad_json", str(synth.mmad_json), "--out", str(out), "--limit", "2"),
        ]
    )
    assert code == 0
    for f in out.iterdir():
        if f.is_file():
            assert "sk-do-not-write-me" not in f.read_text(errors="replace"), f.name
    fp = json.loads((out / "run.json").read_text())["fingerprint"]
    assert fp["model"] == name and fp["endpoint"] == url
    # the served name is the checkpoint folder (transformers serve): its omniad.json counts
    assert fp["settings_source"]["system_prompt"] == "omniad.json of the served checkpoint"
    assert fp["settings_source"]["grid"] == "given"


def test_a_served_checkpoint_folder_gives_its_settings_like_omniad_inspect(
    served_demo, synth, demo_inspector, tmp_path
):
    """No --grid, --image_size: ``transformers serve`` names the model by its folder, so
    eval reads that folder's omniad.json (8 x 8, 224 px), as ``omniad inspect
    --endpoint`` and ``Inspector.from_endpoint`` do; the masks equal the in-process run's."""
    url, name = served_demo
    assert Path(name).resolve() == Path(DEMO).resolve()
    local = run_detection(demo_inspector, synth.mvtec_root, out=tmp_path / "ip", progress=False)
    served = run_detection(
        None, synth.mvtec_root, out=tmp_path / "ep", endpoint=url, served_model=name, progress=False
    )
    fp = json.loads((tmp_path / "ep" / "run.json").read_text())["fingerprint"]
    assert (fp["grid"]["rows"], fp["grid"]["cols"], fp["image_size"]) == (8, 8, 224)
    assert set(fp["settings_source"].values()) == {"omniad.json of the served checkpoint"}
    a, b = _lines(local.results), _lines(served.results)
    assert [(x["pixel"], x["predicted"]) for x in a] == [(y["pixel"], y["predicted"]) for y in b]


def test_spec_names_the_served_checkpoint_and_a_wrong_one_fails_before_any_work(
    served_demo, synth, tmp_path, capsys
):
    url, name = served_demo
    # a served name that is no folder (a hosted model's): --spec gives the settings
    settings = model_settings(None, {}, endpoint=Endpoint(url, "omniad-7b", spec=str(DEMO)))
    assert (settings["grid"]["rows"], settings["image_size"]) == (8, 224)
    plain = model_settings(None, {}, endpoint=Endpoint(url, "omniad-7b"))
    assert plain["grid"]["rows"] == 24 and "pass --spec" in plain["settings_source"]["grid"]
    from omniad_core.backends import EndpointError

    with pytest.raises(EndpointError, match="needs the served model's name"):
        model_settings(None, {}, endpoint=Endpoint(url, None))  # before Path(None) fails
    out = tmp_path / "bad"
    missing = tmp_path / "no-such-checkpoint"
    code = detection_main(
        [
            "--endpoint",
            url,
            "--served_model",
            name,
            "--spec",
            str(missing),
            "--root",
            str(synth.mvtec_root),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no-such-checkpoint" in err[0], err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        detection_main(["--spec", str(DEMO), "--root", str(synth.mvtec_root)])
    assert exc.value.code == 2
    assert "--spec need --endpoint URL" in capsys.readouterr().err


# --------------------------------------------------------------------------- kill, restart
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, log: Path) -> subprocess.Popen:
    """`transformers serve` of the demo model on a given port (so a restart keeps the URL)."""
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "transformers.cli.transformers"]
    cmd += ["serve", str(DEMO), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-1500:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"transformers serve did not start: {log.read_text(errors='replace')[-1500:]}")


def test_killed_server_gives_failed_lines_and_a_rerun_completes_them(synth, tmp_path, capsys):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    out = tmp_path / "run"
    args = ["--endpoint", url, "--served_model", str(DEMO), *SERVED, "--concurrency", "2"]
    args += ["--retries", "0", "--mmad_json", str(synth.mmad_json), "--out", str(out)]
    args += ["--no_progress"]
    server = _serve(port, tmp_path / "a.log")
    code: list[int] = []
    worker = threading.Thread(target=lambda: code.append(mmad_main(args)))
    try:
        worker.start()
        results = out / "results.jsonl"
        while not results.exists() or len(results.read_text().splitlines()) < 3:
            assert worker.is_alive() or code, "the run ended before the server was killed"
            time.sleep(0.05)
        server.kill()  # mid-run: requests in flight and queued ones fail
        server.wait()
        worker.join(120)
    finally:
        server.kill()
    assert code == [EXIT_FAILED_REQUESTS]
    assert "re-run the same command to retry" in capsys.readouterr().err
    first = _lines(out / "results.jsonl")
    status = Counter(d["status"] for d in first)
    assert status["failed"] > 0 and status["ok"] >= 3
    assert status["failed"] + status["ok"] == synth.n_questions
    report = json.loads((out / "report.json").read_text())
    assert report["status"]["state"] == "incomplete_with_failures"
    assert report["failures"]["count"] == status["failed"]
    assert report["counts"]["answered"] == status["ok"]  # failures are not unanswerable
    assert report["counts"]["unanswerable"] == sum(
        1 for d in first if d["status"] == "ok" and d["predicted"] is None
    )
    assert "INCOMPLETE WITH FAILURES" in (out / "report.md").read_text()
    answered = {d["id"]: d["response"] for d in first if d["status"] == "ok"}

    server = _serve(port, tmp_path / "b.log")  # restarted, same URL: same settings
    try:
        assert mmad_main(args) == 0
    finally:
        server.kill()
        server.wait()
    final = _lines(out / "results.jsonl")
    assert len(final) == len({d["id"] for d in final}) == synth.n_questions  # each once
    assert all(d["status"] == "ok" for d in final)
    assert {d["id"]: d["response"] for d in final if d["id"] in answered} == answered
    report = json.loads((out / "report.json").read_text())
    assert report["status"]["state"] == "complete" and report["failures"]["count"] == 0


# --------------------------------------------------------------------------- failed lines
def test_failed_lines_are_valid_not_done_and_counted_apart(demo_inspector, synth, tmp_path):
    out = tmp_path / "f"
    first = run_mmad(demo_inspector, synth.mmad_json, out=out, limit=6, progress=False)
    lines = _lines(first.results)
    failed_ids = {lines[1]["id"], lines[4]["id"]}
    for d in lines:
        if d["id"] in failed_ids:
            for k in list(d):
                if k not in ("id", "index", "dataset", "category", "image"):
                    del d[k]
            d.update(status="failed", reason="HTTP 503 from /chat/completions (after 5 attempts)")
            assert check_line("mmad", d) is None and not is_finished(d)
    first.results.write_text("".join(json.dumps(d) + "\n" for d in lines))
    report = build_report(out)
    assert report["failures"]["count"] == 2 and report["status"]["state"] == (
        "incomplete_with_failures"
    )
    assert report["counts"]["answered"] == 4 and report["counts"]["unanswerable"] == 0
    again = run_mmad(demo_inspector, synth.mmad_json, out=out, limit=6, progress=False)
    assert again.n_new == 2 and again.n_failed == 0  # only the failed ones were redone
    final = _lines(again.results)
    assert [d["id"] for d in final] == [d["id"] for d in lines]
    assert again.report["status"]["state"] == "complete"


# --------------------------------------------------------------------------- prompts
def test_mmad_prompt_asks_the_letter_without_a_system_turn(demo_inspector, synth):
    item = collect_mmad_items(synth.mmad_json, limit=2)[1]
    task = _MMADTask(0, "similar", "mmad")
    image, question, options, ref = task.request(task.prepare(item))
    rec = item.record
    assert options is None and ref is None
    assert question.splitlines()[0] == rec.question
    assert question.splitlines()[1:-1] == [f"{k}: {v}" for k, v in rec.options.items()]
    assert question.splitlines()[-1] == "Answer with the option's letter only."
    insp = load_inspector(demo_inspector, {}, prompt="mmad")
    assert insp is not demo_inspector and demo_inspector.system_prompt is not None
    messages = insp._prepare_messages(image, question, None, None)[0]
    assert [m["role"] for m in messages] == ["user"]


def test_mmad_prompt_is_recorded_and_detection_refuses_it(demo_inspector, synth, tmp_path):
    res = run_mmad(
        demo_inspector, synth.mmad_json, out=tmp_path / "m", prompt="mmad", limit=3, progress=False
    )
    fp = json.loads((tmp_path / "m" / "run.json").read_text())["fingerprint"]
    assert fp["prompt"] == "mmad" and fp["system_prompt_sha256"] is None
    assert res.report["prompt"] == "mmad" and "| mmad |" in res.report_md.read_text()
    with pytest.raises(ValueError, match="mask"):
        run_detection(demo_inspector, synth.mvtec_root, out=tmp_path / "d", prompt="mmad")
    with pytest.raises(SystemExit) as exc:
        detection_main(["--model", str(DEMO), "--root", str(synth.mvtec_root), "--prompt", "mmad"])
    assert exc.value.code == 2 and not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- protocol
def _keys(items) -> list[str]:
    return [it.extra["image"] for it in items]


def test_holdout_split_is_by_image_seeded_and_independent_of_filters(synth):
    every = collect_mmad_items(synth.mmad_json)
    kept = collect_mmad_items(
        synth.mmad_json, protocol=EvalProtocol(holdout_fraction=0.5, split_seed=3)
    )
    rest = [it for it in every if it.id not in {k.id for k in kept}]
    expected = {k for k in _keys(every) if split_value(k, 3) < 0.5}
    assert set(_keys(kept)) == expected and not expected & set(_keys(rest))  # by image
    assert 0 < len(kept) < len(every)
    again = collect_mmad_items(
        synth.mmad_json, protocol=EvalProtocol(holdout_fraction=0.5, split_seed=3)
    )
    assert [i.id for i in again] == [i.id for i in kept]  # deterministic
    other = collect_mmad_items(
        synth.mmad_json, protocol=EvalProtocol(holdout_fraction=0.5, split_seed=4)
    )
    assert [i.id for i in other] != [i.id for i in kept]
    one_cat = collect_mmad_items(
        synth.mmad_json,
        categories="fabric",
        limit=3,
        protocol=EvalProtocol(holdout_fraction=0.5, split_seed=3),
    )
    assert [i.id for i in one_cat] == [i.id for i in kept][:3]


def test_split_file_selects_its_images_and_says_what_it_missed(synth, tmp_path):
    every = collect_mmad_items(synth.mmad_json)
    chosen = sorted(set(_keys(every)))[:2]
    split = tmp_path / "split.txt"
    split.write_text(f"# held out\n{chosen[0]}\n./{chosen[1]}\n\nnot/in/mmad.png\n")
    proto = EvalProtocol(split_file=split)
    kept = collect_mmad_items(synth.mmad_json, protocol=proto)
    assert set(_keys(kept)) == set(chosen)
    assert proto.summary(len(kept))["split_file_entries_not_found"] == 1
    split.write_text("nothing/here.png\n")
    proto = EvalProtocol(split_file=split)
    collect_mmad_items(synth.mmad_json, protocol=proto)
    with pytest.raises(ValueError, match="no image of the split file"):
        proto.check_split_found()
    with pytest.raises(ValueError, match="not both"):
        EvalProtocol(holdout_fraction=0.8, split_file=split)


@pytest.fixture(scope="module")
def prepared(synth, tmp_path_factory):
    """A training set from the synthetic mmad.json (70% of its images: eval_fraction
    0.3) and from a *copy* of the image folder, so MMAD's images reach it by key, by
    path and by content only."""
    from omniad_train.data import prepare

    root = tmp_path_factory.mktemp("prep")
    copy = root / "copy"
    shutil.copytree(synth.mvtec_root, copy)
    prep = root / "prepared"
    prepare(
        prep,
        mmad_json=str(synth.mmad_json),
        mvtec_root=str(copy),
        grid=8,
        image_size=64,
        eval_fraction=0.3,
        verbose=False,
    )
    return prep


def _trained_on(prep: Path, mvtec_root: Path) -> tuple[set[str], set[str]]:
    """The MMAD keys of the images a prepared set trains on, read from its datasets:
    those of its MMAD rows, and those its copied image folder holds."""
    import datasets

    by_mmad, by_copy = set(), set()
    for kind in ("sft", "grpo"):
        train = datasets.load_from_disk(str(prep / kind))["train"]
        for rid, path in zip(train["id"], train["image_path"], strict=True):
            if rid.startswith("mmad:"):
                by_mmad.add(rid[5:].rpartition("#")[0])
            else:  # a copy of an image folder: the same relative path under it
                rel = Path(path).relative_to(prep.parent / "copy")
                by_copy.add(f"{mvtec_root.name}/{rel.as_posix()}")
    return by_mmad, by_copy


def test_exclude_training_leaves_out_every_trained_image(synth, prepared):
    every = collect_mmad_items(synth.mmad_json)
    by_mmad, by_copy = _trained_on(prepared, synth.mvtec_root)
    trained = (by_mmad | by_copy) & set(_keys(every))
    assert trained and trained < set(_keys(every))
    assert (by_copy - by_mmad) & trained  # some reach the training set as copies only
    proto = EvalProtocol(exclude_training=[prepared])
    kept = collect_mmad_items(synth.mmad_json, protocol=proto)
    assert set(_keys(kept)) == set(_keys(every)) - trained
    s = proto.summary(len(kept))
    assert s["excluded_training_images"] == len(trained)
    assert s["excluded_training_questions"] == len(every) - len(kept)


def test_refuse_training_overlap_stops_before_any_work(synth, prepared, tmp_path, capsys):
    out = tmp_path / "r"
    with pytest.raises(TrainingOverlapError, match="training images"):
        run_mmad(str(DEMO), synth.mmad_json, out=out, refuse_training=[prepared])
    code = mmad_main(
        [
            *("--model", str(DEMO), "--mmad_json", str(synth.mmad_json), "--out", str(out)),
            *("--refuse_training_overlap", str(prepared)),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--exclude_training" in err[0]
    assert not out.exists()
    with pytest.raises(ValueError, match=r"manifest\.json"):
        EvalProtocol(exclude_training=[tmp_path])


def test_protocol_is_recorded_printed_and_guarded(demo_inspector, synth, prepared, tmp_path):
    out = tmp_path / "p"
    kw = dict(out=out, holdout_fraction=0.8, split_seed=1, exclude_training=[prepared])
    res = run_mmad(demo_inspector, synth.mmad_json, progress=False, **kw)
    run = json.loads((out / "run.json").read_text())
    proto = run["fingerprint"]["protocol"]
    assert proto["split"] == "holdout" and proto["holdout_fraction"] == 0.8
    assert proto["exclude_training"][0]["folder"] == str(prepared.resolve())
    counts = run["config"]["protocol"]
    assert counts["excluded_training_questions"] > 0
    assert counts["evaluated_questions"] == res.n_items
    md = res.report_md.read_text()
    assert "held-out split" in md and "excluded" in md
    with pytest.raises(RunConfigError, match="protocol"):
        run_mmad(demo_inspector, synth.mmad_json, out=out, holdout_fraction=0.7, progress=False)
    full = run_mmad(demo_inspector, synth.mmad_json, out=tmp_path / "full", limit=2, progress=False)
    assert "full benchmark" in full.report_md.read_text()
    assert (
        json.loads((tmp_path / "full" / "run.json").read_text())["config"]["protocol"]["split"]
        == "full"
    )
    assert read_jsonl(full.results)[1].clean
