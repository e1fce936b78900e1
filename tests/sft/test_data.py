import json

import grain
import numpy as np
import pytest

from lnemo.data import ByteTokenizer, Problem, ProblemSource
from lnemo.sft import (
    MODE_OFF,
    MODE_ON,
    ChatRecord,
    paired_examples,
    parse_record,
    problem_example,
    read_post_training,
    record_example,
    sft_pipeline,
    system_turn_ids,
    token_modes,
)

TOK = ByteTokenizer()
P = Problem("arithmetic", 2, "What is (8-5)+3?", "8-5=3\n3+3=6", "6")


def test_problem_examples_match_the_documented_layout():
    on = TOK.decode(problem_example(P, TOK, thinking=True)["tokens"])
    off = TOK.decode(problem_example(P, TOK, thinking=False)["tokens"])
    assert on == ("<|system|>detailed thinking on<|end|><|user|>What is (8-5)+3?<|end|><|assistant|><think>8-5=3\n"
                  "3+3=6</think>Answer: 6<|end|>")
    assert off == "<|system|>detailed thinking off<|end|><|user|>What is (8-5)+3?<|end|><|assistant|>Answer: 6<|end|>"


def test_paired_examples_interleave_and_weights():
    problems = [P, Problem("counting", 1, "How many a in ab?", "a1 b1", "1")]
    ds = paired_examples(problems, TOK)
    texts = [TOK.decode(ds[i]["tokens"]) for i in range(4)]
    assert ["thinking on" in t for t in texts] == [True, False, True, False]
    assert "(8-5)" in texts[0] and "(8-5)" in texts[1] and "How many" in texts[2]
    only_on = paired_examples(problems, TOK, off_weight=0)
    assert len(only_on) == 2 and all("<think>" in TOK.decode(only_on[i]["tokens"]) for i in range(2))
    mixed = paired_examples(ProblemSource(size=300), TOK, on_weight=3, off_weight=1)
    share = np.mean(["thinking on" in TOK.decode(mixed[i]["tokens"]) for i in range(200)])
    assert share == pytest.approx(0.75, abs=0.02)
    with pytest.raises(ValueError, match="on_weight"):
        paired_examples(problems, TOK, on_weight=0, off_weight=0)


def test_token_modes_hand_value_and_split_segments():
    modes = token_modes(np.array([[9, 1, 2, 5, 3, 4, 0]]), np.array([[1, 1, 1, 2, 2, 3, 0]]), on_ids=[1, 2],
                        off_ids=[3])
    np.testing.assert_array_equal(modes, [[1, 1, 1, 0, 0, -1, -1]])


def test_pipeline_batches_carry_modes_and_assistant_only_loss():
    ds = sft_pipeline(paired_examples(ProblemSource(size=64), TOK), TOK, seq_len=128, batch_size=2,
                      shard=grain.sharding.NoSharding())
    batch = next(iter(ds))
    assert batch["mode"].shape == (2, 128) and batch["mode"].dtype == np.int32
    assert (batch["mode"] == MODE_ON).any() and (batch["mode"] == MODE_OFF).any()
    assert not (batch["loss_mask"] & (batch["segment_ids"] == 0)).any()
    # trained targets are assistant tokens: never the system or user markers
    targets = batch["targets"][batch["loss_mask"]]
    assert not np.isin(targets, [TOK.system_id, TOK.user_id, TOK.assistant_id]).any()
    assert np.isin(targets, [TOK.think_start_id]).any() and np.isin(targets, [TOK.end_id]).any()
    on_ids = system_turn_ids(TOK, thinking=True)
    assert TOK.decode(on_ids) == "<|system|>detailed thinking on<|end|>"


RECORD = {"input": [{"role": "user", "content": "What is 2+2?"}], "output": "<think>2+2=4</think>4",
          "reasoning": "on", "system_prompt": "detailed thinking on", "category": "math", "license": "cc-by-4.0",
          "generator": "DeepSeek-R1", "version": "v1", "used_in_training": ["Ultra", "Super"]}


def test_reads_the_post_training_schema(tmp_path):
    off = dict(RECORD, output="4", reasoning="off", system_prompt="detailed thinking off", category="chat",
               input="Say four")
    path = tmp_path / "post.jsonl"
    path.write_text(json.dumps(RECORD) + "\n\n" + json.dumps(off) + "\n")
    records = read_post_training(path)
    assert [r.thinking for r in records] == [True, False]
    assert records[0].extra["generator"] == "DeepSeek-R1" and records[1].messages == ({"role": "user", "content": "Say four"},)
    assert [r.category for r in read_post_training(path, categories=["math"])] == ["math"]
    assert len(read_post_training([path, path], thinking=False)) == 2
    ex = record_example(records[0], TOK)
    assert TOK.decode(ex["tokens"][ex["target_mask"]]) == "<think>2+2=4</think>4<|end|>"
    assert TOK.decode(ex["tokens"]).startswith("<|system|>detailed thinking on<|end|><|user|>What is 2+2?")


@pytest.mark.parametrize("change, message", [
    ({"input": []}, "field 'input'"),
    ({"input": [{"role": "bot", "content": "x"}]}, r"input\[0\]"),
    ({"output": 3}, "field 'output'"),
    ({"reasoning": "maybe"}, "field 'reasoning'"),
    ({"reasoning": None, "system_prompt": "hello"}, "neither 'reasoning'"),
])
def test_malformed_records_name_file_line_and_field(tmp_path, change, message):
    path = tmp_path / "bad.jsonl"
    bad = {k: v for k, v in dict(RECORD, **change).items() if v is not None}
    path.write_text(json.dumps(RECORD) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: .*{message}"):
        read_post_training(path)
    with pytest.raises(ValueError, match="no field 'output'"):
        parse_record({"input": "x"})
    assert isinstance(parse_record(RECORD), ChatRecord)
