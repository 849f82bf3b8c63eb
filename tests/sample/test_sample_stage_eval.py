"""The sample stage, evaluation (loss, bits per byte, few-shot) and the sample/eval/export CLIs."""

from __future__ import annotations

import json
import math

import torch

from lmforge.cli import main
from lmforge.sample.engine import load_model
from lmforge.sample.evaluate import (evaluate_text, evaluate_val, few_shot_accuracy, few_shot_answer_nats,
                                     few_shot_prompts, few_shot_report)
from lmforge.sample.stage import run_stage

from lmf_sample_run import TEXT, run_config


def test_stage_writes_samples_json(trained_run):
    rd, _ = trained_run
    printed = []
    stats = run_stage(run_config(rd.root), rd, log=printed.append)
    data = json.loads(rd.samples.read_text())
    assert data["settings"]["num_samples"] == 2 and data["settings"]["temperature"] == 0.8
    assert [p["prompt"] for p in data["prompts"]] == ["def ", "The list"]
    assert all(len(p["samples"]) == 2 and all(isinstance(s, str) for s in p["samples"]) for p in data["prompts"])
    # the texts are shown once, by the run's summary, not also as the stage goes
    assert stats["samples"] == 4 and printed == [f"[sample] 4 continuations of 2 prompts -> {rd.samples}"]
    again = run_stage(run_config(rd.root), rd, log=lambda *_: None)  # seeded: the same text again
    assert json.loads(rd.samples.read_text()) == data and again == stats


def test_run_summary_shows_every_prompt_first(trained_run, capsys):
    from lmforge.cli import _print_summary

    rd, _ = trained_run
    stats = run_stage(run_config(rd.root), rd, log=lambda *_: None)
    data = json.loads(rd.samples.read_text())
    _print_summary(rd)
    assert "sampled" not in capsys.readouterr().out  # not marked complete: maybe an older model's
    rd.mark_complete("sample", stats)
    _print_summary(rd)
    out = capsys.readouterr().out
    assert f"sampled continuations (3 of 4; all in {rd.samples}):" in out
    first, second = (p["prompt"] + p["samples"][0] for p in data["prompts"])
    assert f"--- 1 ---\n{first}" in out and f"--- 2 ---\n{second}" in out


def test_trained_model_continues_its_training_text(trained_run):
    rd, tok = trained_run
    model, tok = load_model(rd.root)
    from lmforge.sample.engine import Engine

    out = Engine(model, {tok.bos_id}).generate([tok.bos_id, *tok.encode("def add(a, b):\n")], 6, temperature=0)
    assert tok.decode(list(out)).startswith("    return")


def test_val_loss_and_bits_per_byte(trained_run):
    rd, tok = trained_run
    model, tok = load_model(rd.root)
    result = evaluate_val(model, tok, rd.root, batch_size=2, max_batches=4)
    assert result["loss"] < 0.5 * math.log(tok.vocab_size)  # learned: far below uniform
    assert 0 < result["bpb"] < result["loss"] / math.log(2)  # a token holds more than one byte
    train_log = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    assert train_log[-1]["kind"] == "val" and train_log[-1]["val_bpb"] > 0


def test_text_bits_per_byte_is_the_loss_over_the_bytes(trained_run):
    rd, _ = trained_run
    model, tok = load_model(rd.root)
    text = TEXT[:90]
    result = evaluate_text(model, tok, text)
    ids = [tok.bos_id, *tok.encode(text)]
    assert len(ids) - 1 <= model.config.seq_len  # one window: the reference is one forward pass
    with torch.no_grad():
        logits, loss = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    assert result["tokens"] == len(ids) - 1 and abs(result["loss"] - loss.item()) < 1e-5
    assert abs(result["bpb"] - loss.item() * (len(ids) - 1) / math.log(2) / len(text.encode())) < 1e-4
    long_text = TEXT[:1000]  # several windows of seq_len: every token is still scored once
    assert evaluate_text(model, tok, long_text)["tokens"] == len(tok.encode(long_text))


def test_few_shot_prompts_and_probe(trained_run):
    pairs = few_shot_prompts("upper", shots=2, count=3, seed=0)
    prompt, answer = pairs[0]
    lines = prompt.split("\n")
    assert len(lines) == 3 and lines[0].split(" -> ")[1] == lines[0].split(" -> ")[0].upper()
    assert lines[2].endswith(" ->") and answer == lines[2][:-3].upper()
    rd, _ = trained_run
    model, tok = load_model(rd.root)
    assert 0.0 <= few_shot_accuracy(model, tok, "copy", shots=2, count=3) <= 1.0
    report = few_shot_report(model, tok, shots=2, count=3)
    assert set(report) == {"copy", "upper"}
    assert set(report["copy"]) == {"0-shot", "2-shot", "0-shot_answer_nats", "2-shot_answer_nats"}
    assert 0 < report["copy"]["2-shot_answer_nats"] < 3 * math.log(tok.vocab_size)


def test_answer_nats_scores_only_the_answer_tokens(trained_run):
    """Known answer: the loss of the answer tokens, computed here by hand for one prompt."""
    rd, _ = trained_run
    model, tok = load_model(rd.root)
    (prompt, answer), = few_shot_prompts("copy", shots=1, count=1, seed=5)
    head = [tok.bos_id, *tok.encode(prompt)]
    full = [tok.bos_id, *tok.encode(f"{prompt} {answer}\n")]
    with torch.no_grad():
        logits = model(torch.tensor([full[:-1]]))[0][0]
    nats = torch.nn.functional.cross_entropy(logits, torch.tensor(full[1:]), reduction="none")
    expected = float(nats[len(head) - 1:].mean())
    assert abs(few_shot_answer_nats(model, tok, "copy", shots=1, count=1, seed=5) - expected) < 1e-5


def test_sample_cli_streams_n_continuations(trained_run, capsys):
    rd, _ = trained_run
    args = ["sample", str(rd.root), "--prompt", "def ", "-n", "2", "--max-new-tokens", "8", "--seed", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2 and "def " in out
    assert main(args) == 0 and capsys.readouterr().out == out  # seeded


def test_sample_cli_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "none")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_eval_cli(trained_run, tmp_path, capsys):
    rd, _ = trained_run
    text = tmp_path / "t.txt"
    text.write_text(TEXT[:500])
    assert main(["eval", str(rd.root), "--text", str(text)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["loss"] > 0 and result["bpb"] > 0


def test_export_hf_loads_in_transformers(trained_run, tmp_path, capsys):
    from transformers import LlamaForCausalLM

    rd, _ = trained_run
    assert main(["export-hf", str(rd.root), str(tmp_path / "hf")]) == 0
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    model, tok = load_model(rd.root)
    ids = torch.tensor([[tok.bos_id, *tok.encode("def add")]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids)[0], atol=1e-4, rtol=1e-4)
