"""The CLI under malformed configs and inputs: never exit 1 (the "unexpected error" code), never a traceback.

Each case is something a user gets wrong (a typo in the YAML, a missing
input, an output that is a file, Redis down, ...). Every one must end with a
documented exit code and one line that says what is wrong; exit 1 or a
traceback means an error escaped without a type. The cases run in process
through ``main`` (``tests.fault_tools.run_cli``), cheap ones first; the few
that reach Spark use the shared session.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import pytest
import yaml

from skol_spark import errors
from skol_spark.store.embedded import free_port
from skol_spark.store.model_store import ModelStore
from tests.helpers import LABELS
from tests.helpers import documents_table, make_documents, write_config, write_table
from tests.fault_tools import run_cli

MODEL = "fc"


@pytest.fixture(scope="module")
def ctx(redis_server, redis_client, closure_model, tmp_path_factory):
    """A published model and a good input: each case breaks one thing of an otherwise valid run."""
    prefix = f"fc{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    data = tmp_path_factory.mktemp("fc-input") / "lines"
    write_table(data, documents_table(make_documents("d", 4, seed=1)))
    return {"url": redis_server.url, "prefix": prefix, "input": data}


def good_config(tmp: Path, ctx, **sections) -> str:
    return write_config(tmp / "job.yaml", redis_url=ctx["url"], prefix=ctx["prefix"], model=MODEL,
                        input_path=ctx["input"], output_path=tmp / "out", **sections)


def raw_config(tmp: Path, text: str) -> str:
    (tmp / "job.yaml").write_text(text)
    return str(tmp / "job.yaml")


def edited(tmp: Path, ctx, edit: Callable[[dict], None]) -> str:
    conf = yaml.safe_load(Path(good_config(tmp, ctx)).read_text())
    edit(conf)
    return raw_config(tmp, yaml.safe_dump(conf))


def predict(conf: str, *extra: str) -> list[str]:
    return ["predict", "--conf", conf, "--quiet", *extra]


def _not_parquet(tmp: Path, ctx) -> list[str]:
    (tmp / "text").mkdir()
    (tmp / "text" / "part-0.parquet").write_text("doc_id,line_number\nd,0\n")
    return predict(good_config(tmp, ctx, input={"path": str(tmp / "text")}))


def _missing_column(tmp: Path, ctx) -> list[str]:
    table = documents_table(make_documents("m", 2, seed=2)).drop(["features"])
    write_table(tmp / "nofeatures", table)
    return predict(good_config(tmp, ctx, input={"path": str(tmp / "nofeatures")}))


def _output_is_a_file(tmp: Path, ctx) -> list[str]:
    (tmp / "out").write_text("a file")
    return predict(good_config(tmp, ctx), "--set", "output.mode=append")


CONFIG = errors.ConfigError.exit_code
CASES: dict[str, tuple[int, Callable[[Path, dict], list[str]]]] = {
    # argument and config parsing: no Spark, no Redis
    "unknown command": (2, lambda t, c: ["score"]),
    "predict without arguments": (CONFIG, lambda t, c: ["predict"]),
    "config file missing": (CONFIG, lambda t, c: predict(str(t / "nope.yaml"))),
    "config is a directory": (CONFIG, lambda t, c: predict(str(t))),
    "bad YAML": (CONFIG, lambda t, c: predict(raw_config(t, "model: {name: x\n  version: [1,"))),
    "YAML is a list": (CONFIG, lambda t, c: predict(raw_config(t, "- model\n- input\n"))),
    "YAML section is a string": (CONFIG, lambda t, c: predict(raw_config(t, "model: fc\n"))),
    "unknown section": (CONFIG, lambda t, c: predict(edited(t, c, lambda d: d.update(modle={"name": "x"})))),
    "unknown key": (CONFIG, lambda t, c: predict(edited(t, c, lambda d: d["output"].update(moed="append")))),
    "wrong type": (CONFIG, lambda t, c: predict(edited(t, c, lambda d: d["scoring"].update(batch_size="many")))),
    "list where a number goes": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "scoring.stride=[1, 2]")),
    "negative partitions": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "scoring.partitions=-1")),
    "bad output mode": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "output.mode=replace")),
    "yes/no as a mode": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "output.mode=yes")),
    "--set without =": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "output.mode")),
    "--set with a deep key": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "output.mode.x=1")),
    "--set of an unknown key": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "model.nmae=x")),
    "missing model name": (CONFIG, lambda t, c: predict(edited(t, c, lambda d: d["model"].pop("name")))),
    "empty config": (CONFIG, lambda t, c: predict(raw_config(t, ""))),
    "csv output": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "output.format=csv")),
    "password in the Redis URL": (CONFIG, lambda t, c: predict(good_config(t, c), "--set",
                                                               "redis.url=redis://127.0.0.1:1/0?password=x")),
    "watermark without a column": (CONFIG, lambda t, c: predict(edited(t, c, lambda d: d["input"].pop(
        "watermark_col", None)), "--watermark", "2026-01-01")),
    "zero timeout": (CONFIG, lambda t, c: predict(good_config(t, c), "--set", "redis.connect_timeout=0")),
    # the model store
    "Redis unreachable": (errors.RedisUnavailableError.exit_code, lambda t, c: predict(
        good_config(t, c), "--set", f"redis.url=redis://127.0.0.1:{free_port()}/0")),
    "unknown model": (errors.ModelNotFoundError.exit_code, lambda t, c: predict(good_config(t, c), "--set",
                                                                               "model.name=no-such-model")),
    "unknown version": (errors.ModelNotFoundError.exit_code, lambda t, c: predict(good_config(t, c), "--set",
                                                                                 "model.version=99")),
    # locations: refused before anything is written
    "output is the input": (CONFIG, lambda t, c: predict(good_config(t, c, output={"path": str(c["input"])}),
                                                         "--set", "output.mode=overwrite")),
    "output inside the input": (CONFIG, lambda t, c: predict(good_config(t, c, output={
        "path": f"{c['input']}/scored"}), "--set", "output.mode=append")),
    "output path is a file": (CONFIG, _output_is_a_file),
    "output name with a colon": (CONFIG, lambda t, c: predict(good_config(t, c, output={
        "path": str(t / "scored-T02:30")}))),
    "quarantine inside the output": (CONFIG, lambda t, c: predict(good_config(t, c, scoring={
        "bad_input": "quarantine", "quarantine_path": str(t / "out" / "bad")}))),
    # the input (Spark reads it)
    "input missing": (errors.InputContractError.exit_code, lambda t, c: predict(good_config(
        t, c, input={"path": str(t / "no-such-input")}))),
    "input not Parquet": (errors.InputContractError.exit_code, _not_parquet),
    "input format unknown": (errors.InputContractError.exit_code, lambda t, c: predict(good_config(
        t, c, input={"format": "no-such-format"}))),
    "input without the features column": (errors.InputContractError.exit_code, _missing_column),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_never_exits_1_or_prints_a_traceback(spark, tmp_path, ctx, case):
    expected, make_argv = CASES[case]

    result = run_cli(make_argv(tmp_path, ctx))

    assert result.code not in (0, errors.EXIT_UNEXPECTED), (case, result.code, result.text[-2000:])
    assert "Traceback" not in result.text, result.text[-3000:]
    assert result.code == expected, (case, result.code, result.text[-2000:])
    assert result.error_line or "usage: skol-spark" in result.err, result.err[-2000:]
    assert not (tmp_path / "out").is_dir() or not any((tmp_path / "out").iterdir())  # nothing published
